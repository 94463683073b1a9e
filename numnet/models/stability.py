"""Empirical stability of trained denoisers (beyond the paper): ``results/stability/``.

For a trained network ``N`` and test inputs ``f`` this measures

* ``||N(f)|| / ||f||`` -- Theorem 2 promises at most 1 for the symmetric ResNet (no bias, Eq. 14);
* the Lipschitz ratio ``||N(f + delta) - N(f)|| / ||delta||`` for random perturbations of relative
  size ``eps`` (``||delta|| = eps ||f||``) and for the worst perturbation found by normalised gradient
  ascent on that ratio over the same sphere, from several starts. A search finds a lower bound of the
  largest ratio, never the largest itself: a longer search can find more. No theorem bounds this
  ratio for a nonmonotone flux (Perona-Malik), so it is measured, not asserted.
"""
from __future__ import annotations

import torch

__all__ = ["norm_ratio", "lipschitz_ratios"]


def _norms(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


@torch.no_grad()
def norm_ratio(model: torch.nn.Module, f: torch.Tensor) -> torch.Tensor:
    """``||N(f)|| / ||f||`` per signal."""
    return _norms(model(f)) / _norms(f)


def lipschitz_ratios(model: torch.nn.Module, f: torch.Tensor, eps: float, n_random: int = 8,
                     ascent_steps: int = 10, step: float = 0.5, seed: int = 0, restarts: int = 1) -> dict[str, torch.Tensor]:
    """Per signal: the largest ratio over ``n_random`` random perturbations, and the largest ratio met by
    ``restarts`` runs of ``ascent_steps`` steps of projected gradient ascent, the first started from the best
    random perturbation, the others from fresh random ones (a lower bound of the largest ratio)."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    gen = torch.Generator().manual_seed(seed)
    radius = (eps * _norms(f)).view(-1, 1, 1)

    def project(d: torch.Tensor) -> torch.Tensor:
        return d * (radius / _norms(d).view(-1, 1, 1).clamp_min(1e-30))

    with torch.no_grad():
        base = model(f)
        best = torch.zeros(f.shape[0])
        best_d = torch.zeros_like(f)
        for _ in range(n_random):
            d = project(torch.randn(f.shape, generator=gen))
            r = _norms(model(f + d) - base) / _norms(d)
            better = r > best
            best = torch.where(better, r, best)
            best_d[better] = d[better]
    random_best = best.clone()
    for k in range(max(1, restarts)):
        d = best_d.clone() if k == 0 else project(torch.randn(f.shape, generator=gen))
        for _ in range(ascent_steps):
            d.requires_grad_(True)
            ratio = _norms(model(f + d) - base) / _norms(d)
            (g,) = torch.autograd.grad(ratio.sum(), d)
            with torch.no_grad():
                d = project(d + step * radius * g / _norms(g).view(-1, 1, 1).clamp_min(1e-30))
                r = _norms(model(f + d) - base) / _norms(d)
                best = torch.maximum(best, r)
    return {"random": random_best, "worst_found": best}
