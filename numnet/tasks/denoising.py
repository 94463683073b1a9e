"""LightningModule for 1D denoising (Sec. 7.1): MSE loss, Adam, PSNR with data range 255.

The loss adds the model's smoothness regulariser (Eq. 27) where it has one (own weights per
block, ``model.beta > 0``); ``train/loss`` logs the MSE alone.

Wraps any ``numnet.models`` denoiser. Metrics are logged once per epoch (``train/loss``,
``val/psnr``, ``test/psnr``); nothing in a training step reads a value back to the host.
The weights of the best validation epoch are kept in memory and restored at the end of
``fit``, so ``test`` evaluates the model that the validation set selected.
"""
from __future__ import annotations

import copy
import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from numnet.metrics import psnr

__all__ = ["DenoisingTask"]


class DenoisingTask(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, lr: float = 1e-3, data_range: float = 255.0,
                 batch_size: int | None = None) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"task.lr must be > 0, got {lr}")
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
        self._val_sum: torch.Tensor | None = None
        self._val_n = 0
        self.history: list[dict] = []
        self._train_sum: torch.Tensor | None = None
        self._train_n = 0
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
        for x, y in zip(noisy.split(size), clean.split(size)):
            loss = F.mse_loss(self.model(x), y)
            reg = self.model.regulariser() if hasattr(self.model, "regulariser") else None
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss if reg is None else loss + reg)
            opt.step()
            d = loss.detach() * x.shape[0]
            self._train_sum = d if self._train_sum is None else self._train_sum + d
            self._train_n += x.shape[0]
        return loss

    def on_train_epoch_end(self) -> None:
        if self._train_sum is not None:
            mean = self._train_sum / self._train_n
            self.log("train/loss", mean, on_epoch=True, prog_bar=True)
            if self.history:
                self.history[-1]["train_loss"] = float(mean)
            if not torch.isfinite(mean):
                raise FloatingPointError(f"training loss is {float(mean)} at epoch {self.current_epoch}")
        self._train_sum, self._train_n = None, 0

    # -- validation -------------------------------------------------------------------------
    def _psnr_sum(self, batch) -> tuple[torch.Tensor, int]:
        noisy, clean = batch
        values = psnr(self.model(noisy), clean, self.data_range)
        return values.sum(), values.shape[0]

    def validation_step(self, batch, batch_idx):
        s, n = self._psnr_sum(batch)
        self._val_sum = s if self._val_sum is None else self._val_sum + s
        self._val_n += n

    def on_validation_epoch_end(self) -> None:
        if self._val_sum is None:
            return
        value = self._val_sum / self._val_n
        self._val_sum, self._val_n = None, 0
        self.log("val/psnr", value, on_epoch=True, prog_bar=True)
        if self.trainer.sanity_checking:
            return
        v = float(value)  # one host read per epoch
        self.history.append({"epoch": self.current_epoch, "val_psnr": v})
        if v > self.best_val:
            self.best_val, self.best_epoch = v, self.current_epoch
            self._best_state = copy.deepcopy(self.model.state_dict())

    def on_fit_end(self) -> None:
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    # -- test -------------------------------------------------------------------------------
    def test_step(self, batch, batch_idx):
        s, n = self._psnr_sum(batch)
        self.log("test/psnr", s / n, on_epoch=True, batch_size=n, reduce_fx="mean")
