"""LightningModule for 1D denoising (Sec. 7.1): MSE loss, Adam, PSNR with data range 255.

The loss adds the model's smoothness regulariser (Eq. 27) where it has one (own weights per
block, ``model.beta > 0``); ``train/loss`` logs the MSE alone.

Wraps any ``numnet.models`` denoiser. Metrics are logged once per epoch (``train/loss``,
``val/psnr``, ``test/psnr``); nothing in a training step reads a value back to the host (the
fused CPU step returns its loss as a float; it runs on the host anyway).
The weights of the best validation epoch are kept in memory and restored at the end of
``fit``, so ``test`` evaluates the model that the validation set selected.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from numnet.metrics import psnr

__all__ = ["DenoisingTask", "loss_and_grads", "train_step"]


def loss_and_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, backward=None) -> float | torch.Tensor:
    """The MSE of ``model`` on the minibatch ``(x, y)``, with the gradient of the MSE plus the model's
    regulariser (Eq. 27) where it has one written into every parameter's ``.grad``. Where the model has a
    fused step (``fused_mse_step``: one compiled call for forward, loss, regulariser and backward of a
    one-channel network on the CPU) it is used and the MSE is a float; otherwise autograd runs and the
    MSE is a detached tensor (no host read). ``backward``: how to run backward
    (``LightningModule.manual_backward``; default ``Tensor.backward``)."""
    fused = getattr(model, "fused_mse_step", None)
    loss = fused(x, y, accumulate=False) if fused is not None else None  # sets every gradient, Eq. (27) included
    if loss is None:
        reg = model.regulariser() if hasattr(model, "regulariser") else None
        for p in model.parameters():
            p.grad = None
        mse = F.mse_loss(model(x), y)
        (backward or torch.Tensor.backward)(mse if reg is None else mse + reg)
        loss = mse.detach()
    return loss


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               backward=None) -> float | torch.Tensor:
    """One Adam step on the minibatch ``(x, y)`` (:func:`loss_and_grads`, then ``opt.step()``); returns the MSE."""
    loss = loss_and_grads(model, x, y, backward)
    opt.step()
    return loss


class DenoisingTask(pl.LightningModule):
    """Training by Lightning; validation by the task itself on in-memory signals ``val_data = (noisy,
    clean)`` at the end of every ``val_every``-th training epoch (as ``check_val_every_n_epoch``).
    Lightning's evaluation loop costs about 2.5 ms per epoch in hooks and bookkeeping, measured
    against a plain loop; a validation set that fits in memory needs one forward pass."""

    def __init__(self, model: torch.nn.Module, lr: float = 1e-3, data_range: float = 255.0,
                 batch_size: int | None = None, val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                 val_every: int = 1, patience: int = 0) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"task.lr must be > 0, got {lr}")
        if isinstance(val_every, bool) or not isinstance(val_every, int) or val_every < 1:
            raise ValueError(f"profile.val_every must be an integer >= 1, got {val_every!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"profile.patience must be an integer >= 0 (0: no early stop), got {patience!r}")
        self.val_data = val_data
        self.val_every = val_every
        #: stop when the validation PSNR has not improved for this many epochs (0: never)
        self.patience = patience
        self.stopped_early = False
        #: Adam steps are taken on minibatches of this size; a batch from the loader may hold several
        #: (a chunk), which spreads Lightning's per-batch overhead over several steps without changing
        #: the sequence of minibatches and steps. ``None``: one step per loader batch.
        self.batch_size = batch_size
        self.model = model
        self.lr = lr
        self.data_range = data_range
        self.best_val = -math.inf
        self.best_epoch = -1
        self._best_state: dict | None = None
        self.history: list[dict] = []
        #: running sum of the training MSE over the epoch's signals, and their number
        self._train_acc: list = [0.0, 0]
        #: the latest value of each per-epoch metric (shown by the progress bar)
        self.epoch_metrics: dict[str, float] = {}
        # manual optimisation: one backward and one Adam step per batch without Lightning's closure
        # machinery, which costs about a millisecond per step (a third of a fused 20-block step)
        self.automatic_optimization = False

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.model(f)

    def configure_optimizers(self):
        # fused: one kernel for all parameters instead of about ten small operations per parameter
        # (a third of the per-step overhead of a 1-channel network); the same update up to rounding
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, fused=True)

    # -- training ---------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        noisy, clean = batch
        opt = self.optimizers(use_pl_optimizer=False)
        size = self.batch_size or noisy.shape[0]
        acc = self._train_acc  # mutated in place: a LightningModule attribute write costs microseconds
        for x, y in zip(noisy.split(size), clean.split(size)):
            loss = train_step(self.model, opt, x, y, self.manual_backward)
            acc[0] = acc[0] + loss * x.shape[0]
            acc[1] += x.shape[0]

    def on_train_epoch_end(self) -> None:
        total, n = self._train_acc
        self._train_acc[:] = [0.0, 0]
        if n and self.end_epoch(self.current_epoch, float(total / n)):  # one host read per epoch
            self.trainer.should_stop = True

    def end_epoch(self, epoch: int, mean: float) -> bool:
        """The bookkeeping after training epoch ``epoch`` with mean training MSE ``mean``: log it, validate
        every ``val_every`` epochs, keep the best validation epoch's weights; returns whether the patience
        ran out (:attr:`stopped_early`). A non-finite loss raises ``FloatingPointError``."""
        if not math.isfinite(mean):
            raise FloatingPointError(f"training loss is {mean} at epoch {epoch}")
        self.log_epoch({"train/loss": mean}, epoch)
        if self.val_data is not None and (epoch + 1) % self.val_every == 0:
            v = self.validate()
            self.log_epoch({"val/psnr": v}, epoch)
            self.history.append({"epoch": epoch, "val_psnr": v, "train_loss": mean})
            if v > self.best_val:
                self.best_val, self.best_epoch = v, epoch
                self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            elif self.patience and epoch - self.best_epoch >= self.patience:
                self.stopped_early = True
        return self.stopped_early

    # -- resume (numnet.tasks.checkpoint.ResumeCheckpoint) ---------------------------------------
    _RESUME_KEYS = ("best_val", "best_epoch", "_best_state", "history", "stopped_early")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["numnet_task"] = {k: getattr(self, k) for k in self._RESUME_KEYS}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        for k, v in checkpoint["numnet_task"].items():
            setattr(self, k, v)

    def log_epoch(self, metrics: dict[str, float], epoch: int | None = None) -> None:
        """Per-epoch metrics straight to the loggers at step = epoch, and to the progress bar
        (:attr:`epoch_metrics`). Lightning's ``self.log`` rebuilds its result objects every epoch,
        measured at about 2 ms a call: the largest part of its per-epoch cost on these models."""
        self.epoch_metrics.update(metrics)
        epoch = self.current_epoch if epoch is None else epoch
        for logger in self.loggers:
            logger.log_metrics({**metrics, "epoch": epoch}, step=epoch)
            logger.save()

    # -- validation -------------------------------------------------------------------------
    def _psnr_sum(self, batch) -> tuple[torch.Tensor, int]:
        noisy, clean = batch
        values = psnr(self.model(noisy), clean, self.data_range)
        return values.sum(), values.shape[0]

    @torch.no_grad()
    def validate(self, chunk: int = 1000) -> float:
        """Mean PSNR of the model on ``val_data`` (in chunks of ``chunk`` signals, on the model's device)."""
        noisy, clean = self.val_data
        training = self.model.training
        self.model.eval()
        total = sum(self._psnr_sum((x.to(self.device), y.to(self.device)))[0]
                    for x, y in zip(noisy.split(chunk), clean.split(chunk)))
        self.model.train(training)
        return float(total / noisy.shape[0])

    def on_fit_end(self) -> None:
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    # -- test -------------------------------------------------------------------------------
    def test_step(self, batch, batch_idx):
        s, n = self._psnr_sum(batch)
        self.log("test/psnr", s / n, on_epoch=True, batch_size=n, reduce_fx="mean")
