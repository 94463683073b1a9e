"""Image-quality measures."""
from __future__ import annotations

import math

import torch

__all__ = ["psnr", "pooled_psnr"]


def psnr(estimate: torch.Tensor, target: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    r"""Peak signal-to-noise ratio per signal, :math:`10 \log_{10}(R^2 / \mathrm{MSE})`, in dB.

    The mean squared error is taken over the last dimension (one signal); callers average the
    per-signal values (the mean PSNR, the headline number of every table; :func:`pooled_psnr` is the other
    common reading).
    """
    mse = (estimate - target).pow(2).flatten(start_dim=-1).mean(dim=-1)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


def pooled_psnr(estimate: torch.Tensor, target: torch.Tensor, data_range: float = 255.0) -> float:
    r"""PSNR of a whole set, :math:`10 \log_{10}(R^2 / \mathrm{MSE})` with the mean squared error over all
    signals and samples. By Jensen's inequality it is at most the mean of the per-signal PSNRs."""
    mse = float((estimate - target).double().pow(2).mean())
    return 10.0 * math.log10(data_range**2 / max(mse, 1e-20))
