"""The learned kernels of the standard ResNet against Theorem 1 (Sec. 7.1.3): the paper's printed kernels and
the measures of ``results/kernels``.

Kernels are written as ``(w_-1, w_0, w_+1)``: ``(K u)_i = w_-1 u_{i-1} + w_0 u_i + w_+1 u_{i+1}``; then
``W2 = -W1^T`` means ``k2 = -mirror(k1)`` (Theorem 1).
"""
from __future__ import annotations

from pathlib import Path

import torch

from numnet.summary import RunSummary

__all__ = ["PAPER", "LIMIT", "best_run", "kernel_measures"]

#: the paper's learned kernels and biases (Sec. 7.1.3), labelled as the paper's wherever they are printed
PAPER = {"k1": (0.922, -0.917, 0.006), "k2": (0.051, 0.437, -0.489), "b1": 1.6e-1, "b2": 1.2e-5,
         "k2_over_limit": (0.102, 0.874, -0.978)}
#: the time step limit ``2 / (L ||D||^2)`` for the forward difference ``D``, ``L = 1``
LIMIT = 0.5


def kernel_measures(k1: torch.Tensor, k2: torch.Tensor) -> dict:
    """Symmetry measure ``||k2 / LIMIT + mirror(k1)|| / ||k1||`` and the least-squares ``tau`` of
    ``k2 ~ -tau mirror(k1)`` with its relative residual."""
    mirror = k1.flip(0)
    tau = float(-(k2 @ mirror) / (mirror @ mirror))
    return {
        "symmetry": float((k2 / LIMIT + mirror).norm() / k1.norm()),
        "tau_fit": tau,
        "fit_residual": float((k2 + tau * mirror).norm() / k2.norm()),
    }


def best_run(runs: list[Path]) -> tuple[Path, RunSummary] | None:
    """The complete run among the folders ``runs`` with the best validation PSNR, with its summary (Sec. 7.1.1:
    best of the seeds on validation); ``None`` when none is complete."""
    best = None
    for run in runs:
        try:
            s = RunSummary.read(run / "summary.json")
        except (OSError, ValueError):
            continue
        if s.complete and (best is None or s.metrics["val_psnr"] > best[1].metrics["val_psnr"]):
            best = (run, s)
    return best
