"""LightningModule for learned EED inpainting (Sec. 7.2.2).

The loss is the mean absolute residual of the discretised Eq. (29) of the network's output (Sec. 7.2.2);
the ground truth never enters it. The first ``squared_warmup`` steps minimise the mean squared residual
instead: at a start with many pixels of residual exactly 0 (the FMG net's piecewise-constant
prolongations) the absolute value has a kink that gradient steps do not leave; the square has none. A fresh random mask of the profile's density is drawn for every
training crop and step. Validation uses fixed crops and masks from held-out images and logs the
mean residual (the quantity trained for) and the PSNR against the uncorrupted crops; the weights
of the best validation residual are restored at the end of ``fit``.

Adam's step size is constant (``lr_schedule="constant"``, the paper's standard settings) or, with
``lr_schedule="cosine"``, falls from ``lr`` to 0 along half a cosine over the trainer's ``max_steps``: a constant
step size leaves the validation residual wandering at the end of a long run (the U-net's at 1e-2 moved
between 0.467 and 0.564 over its last 4000 of 12000 steps), a decaying one lets it settle.
"""
from __future__ import annotations

import copy
import math

import pytorch_lightning as pl
import torch

from numnet.data.images import random_masks
from numnet.schemes.eed import EEDParams, eed_residual, mean_abs_residual

__all__ = ["InpaintingTask", "LR_SCHEDULES", "cosine_factor"]

#: Adam's step-size schedules (module docstring)
LR_SCHEDULES = ("constant", "cosine")


def cosine_factor(step: int, total: int) -> float:
    """The factor on the initial step size at ``step`` of ``total``: ``(1 + cos(pi step / total)) / 2``, 0 after."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


class InpaintingTask(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, lr: float = 1e-3, density: float = 0.2,
                 eed: EEDParams | None = None, squared_warmup: int = 0, lr_schedule: str = "constant") -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {lr_schedule!r}")
        self.lr_schedule = lr_schedule
        if not 0 < density <= 1:
            raise ValueError(f"mask density must lie in (0, 1], got {density}")
        if squared_warmup < 0:
            raise ValueError(f"squared_warmup must be >= 0 steps, got {squared_warmup}")
        self.squared_warmup = int(squared_warmup)
        self.model, self.lr, self.density = model, lr, density
        self.eed = eed or EEDParams()
        self.best_val, self.best_step = math.inf, -1
        self._best_state: dict | None = None
        self.history: list[dict] = []
        self._sum: torch.Tensor | None = None
        self._n = 0

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)  # standard settings (Sec. 7.2.2)
        if self.lr_schedule == "constant":
            return opt
        total = self.trainer.max_steps
        if total is None or total < 1:
            raise ValueError("lr_schedule='cosine' needs the trainer's max_steps")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_factor(step, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, clean, batch_idx):
        mask = random_masks(clean.shape, self.density).to(clean.device)
        f = clean * mask
        r = eed_residual(self.model(f, mask), f, mask, self.eed)
        absolute = r.abs().mean()  # the paper's loss, logged also during the warm-up
        d = absolute.detach()
        loss = (r ** 2).mean() if self.global_step < self.squared_warmup else absolute
        self._sum = d if self._sum is None else self._sum + d
        self._n += 1
        return loss

    def on_train_epoch_end(self) -> None:
        if self._sum is not None:
            mean = self._sum / self._n
            self.log("train/residual", mean, prog_bar=True)
            if not torch.isfinite(mean):
                raise FloatingPointError(f"training residual is {float(mean)} at epoch {self.current_epoch}")
        self._sum, self._n = None, 0

    def validation_step(self, batch, batch_idx):
        clean, mask = batch
        f = clean * mask
        u = self.model(f, mask)
        res = float(mean_abs_residual(u, f, mask, self.eed))  # one host read per validation
        mse = ((u - clean) ** 2).mean(dim=(1, 2, 3))
        psnr = float((10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-12))).mean())
        self.log("val/residual", res, prog_bar=True)
        self.log("val/psnr", psnr)
        if self.trainer.sanity_checking:
            return
        self.history.append({"step": int(self.global_step), "val_residual": res, "val_psnr": psnr})
        name = getattr(self.model, "name", "model")
        print(f"[numnet] {name} step {int(self.global_step)}/{self.trainer.max_steps}: val residual {res:.4f}, "
              f"val PSNR {psnr:.2f} dB", flush=True)
        if res < self.best_val:
            self.best_val, self.best_step = res, int(self.global_step)
            self._best_state = copy.deepcopy(self.model.state_dict())

    #: what a resumed run needs besides the weights, Adam's state and the loop's position (Lightning's own)
    _RESUME_KEYS = ("best_val", "best_step", "_best_state", "history")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Also the validation record and the generator the training masks come from (the global one), so that a
        resumed run computes the same numbers as an uninterrupted one (:mod:`numnet.tasks.checkpoint`)."""
        checkpoint["numnet_task"] = {k: getattr(self, k) for k in self._RESUME_KEYS}
        checkpoint["numnet_task"]["mask_rng"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = dict(checkpoint["numnet_task"])
        torch.set_rng_state(state.pop("mask_rng"))
        for k, v in state.items():
            setattr(self, k, v)

    def on_fit_end(self) -> None:
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
