"""LightningModule for learned EED inpainting (Sec. 7.2.2).

The loss is the mean absolute residual of the discretised Eq. (29) of the network's output (Sec. 7.2.2);
the ground truth never enters it. The first ``squared_warmup`` steps minimise the mean squared residual
instead: at a start with many pixels of residual exactly 0 (the FMG net's piecewise-constant
prolongations) the absolute value has a kink that gradient steps do not leave; the square has none. A fresh random mask of the profile's density is drawn for every
training crop and step. Validation uses fixed crops and masks from held-out images and logs the
mean residual (the quantity trained for) and the PSNR against the uncorrupted crops; the weights
of the best validation residual are restored at the end of ``fit``.
"""
from __future__ import annotations

import copy
import math

import pytorch_lightning as pl
import torch

from numnet.data.images import random_masks
from numnet.schemes.eed import EEDParams, eed_residual, mean_abs_residual

__all__ = ["InpaintingTask"]


class InpaintingTask(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, lr: float = 1e-3, density: float = 0.2,
                 eed: EEDParams | None = None, squared_warmup: int = 0) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
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
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)  # standard settings (Sec. 7.2.2)

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

    def on_fit_end(self) -> None:
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
