"""A TQDM progress bar with one line per training epoch and no separate validation bars.

TQDM (not Rich) so that it stays readable when written to a file (cluster logs); the refresh
rate is explicit.
"""
from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar

__all__ = ["EpochProgressBar"]


class EpochProgressBar(TQDMProgressBar):
    def get_metrics(self, trainer, pl_module):
        """Lightning's metrics plus the task's per-epoch metrics, which it logs without ``self.log``."""
        return {**super().get_metrics(trainer, pl_module), **getattr(pl_module, "epoch_metrics", {})}

    def init_validation_tqdm(self):
        bar = super().init_validation_tqdm()
        bar.disable = True
        return bar

    def init_test_tqdm(self):
        bar = super().init_test_tqdm()
        bar.disable = True
        return bar
