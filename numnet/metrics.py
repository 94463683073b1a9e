"""Image-quality measures."""
from __future__ import annotations

import torch

__all__ = ["psnr"]


def psnr(estimate: torch.Tensor, target: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    r"""Peak signal-to-noise ratio per signal, :math:`10 \log_{10}(R^2 / \mathrm{MSE})`, in dB.

    The mean squared error is taken over the last dimension (one signal); callers average the
    per-signal values (the mean PSNR reported in all tables).
    """
    mse = (estimate - target).pow(2).flatten(start_dim=-1).mean(dim=-1)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))
