r"""Nonlinear full approximation scheme (FAS, Sec. 5.1) for one implicit diffusion step.

The nonlinear system is ``A(x) = b`` with (Eq. 22 rewritten)

.. math:: A_h(x) = x + \tau K_h^\top \Phi(K_h x), \qquad K_h = D / h,

on a grid of size ``h``; the coarse grid ``H = 2h`` rediscretises the same operator. Pieces:

* smoother: damped nonlinear Jacobi with lagged diffusivity. Since ``Phi(s) = g(s^2) s``,
  ``A(x) = M(x) x`` with ``M(x) = I + tau K^T G(x) K``; one sweep is
  ``x <- x + omega (rhs - A(x)) / diag(M(x))``. The fixed-point iteration of Eq. (23) is
  available as ``smoother="fixed_point"`` (a contraction only for ``tau L ||K||^2 < 1``);
* restriction: averaging of pairs; prolongation: nearest neighbour or linear (cell-centred);
* two-grid cycle (steps 1--6 of Sec. 5.1): presmoothing, restriction of the approximation
  ``y^H = R x`` and of the residual ``b^H = R (b - A_h(x))``, coarse problem
  ``A_H(x^H) = A_H(y^H) + b^H`` (Eq. 25), correction ``x + P(x^H - y^H)`` (Eq. 26),
  postsmoothing; V-cycles by recursion (Sec. 6.1).

Every function solves the general form ``A(x) = A(y) + b`` used by the U-net translation of
Sec. 6; with ``y = 0`` (and ``A(0) = 0``) that is ``A(x) = b``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from numnet.nn.activations import Flux
from numnet.nn.stencil import apply_k, apply_kt, forward_difference

__all__ = ["DiffusionOperator", "smooth", "restrict", "prolong", "fas_cycle", "hierarchy"]


@dataclass
class DiffusionOperator:
    """``A(x) = x + tau K^T Phi(K x)`` with ``K = D / h`` (forward difference, reflecting boundaries)."""

    flux: Flux
    tau: float
    h: float = 1.0

    @property
    def kernel(self) -> torch.Tensor:
        return forward_difference(self.h, torch.float64)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        w = self.kernel.to(x.dtype)
        return x + self.tau * apply_kt(self.flux(apply_k(x, w)), w)

    def diagonal(self, x: torch.Tensor) -> torch.Tensor:
        """Diagonal of ``M(x) = I + tau D^T G(x) D / h^2``: ``1 + tau (g_{i-1/2} + g_{i+1/2}) / h^2``."""
        w = self.kernel.to(x.dtype)
        g = self.flux.diffusivity(apply_k(x, w))[..., :-1]  # edge i+1/2; the last row of D is zero
        left = F.pad(g, (1, 0))
        right = F.pad(g, (0, 1))
        return 1.0 + self.tau * (left + right) / self.h**2

    def coarse(self) -> "DiffusionOperator":
        return DiffusionOperator(self.flux, self.tau, 2.0 * self.h)


def smooth(op: DiffusionOperator, x: torch.Tensor, rhs: torch.Tensor, sweeps: int, smoother: str = "jacobi",
           omega: float = 2.0 / 3.0) -> torch.Tensor:
    """``sweeps`` relaxation sweeps for ``A(x) = rhs``."""
    for _ in range(sweeps):
        if smoother == "jacobi":
            x = x + omega * (rhs - op(x)) / op.diagonal(x)
        elif smoother == "fixed_point":
            x = x + (rhs - op(x))  # x <- rhs - tau K^T Phi(K x), Eq. (23)
        else:
            raise ValueError(f"unknown smoother {smoother!r}; choose 'jacobi' or 'fixed_point'")
    return x


def restrict(x: torch.Tensor) -> torch.Tensor:
    """Average of pairs ``(x_{2i} + x_{2i+1}) / 2`` (needs an even length)."""
    if x.shape[-1] % 2:
        raise ValueError(f"restriction needs an even length, got {x.shape[-1]}")
    return 0.5 * (x[..., 0::2] + x[..., 1::2])


def prolong(x: torch.Tensor, kind: str = "nearest") -> torch.Tensor:
    """Nearest-neighbour or linear (cell-centred, reflecting) interpolation to twice the length."""
    if kind == "nearest":
        return x.repeat_interleave(2, dim=-1)
    if kind == "linear":
        left = torch.cat([x[..., :1], x[..., :-1]], dim=-1)
        right = torch.cat([x[..., 1:], x[..., -1:]], dim=-1)
        even = 0.75 * x + 0.25 * left
        odd = 0.75 * x + 0.25 * right
        return torch.stack([even, odd], dim=-1).flatten(start_dim=-2)
    raise ValueError(f"unknown prolongation {kind!r}; choose 'nearest' or 'linear'")


def hierarchy(op: DiffusionOperator, levels: int) -> list[DiffusionOperator]:
    """Operators on grids ``h, 2h, 4h, ...`` (``levels`` of them)."""
    ops = [op]
    for _ in range(levels - 1):
        ops.append(ops[-1].coarse())
    return ops


def fas_cycle(
    ops: list[DiffusionOperator],
    x: torch.Tensor,
    y: torch.Tensor,
    b: torch.Tensor,
    pre: int = 2,
    post: int = 2,
    coarsest: int = 50,
    prolongation: str = "nearest",
    coarse_init: str = "restricted",
    smoother: str = "jacobi",
) -> torch.Tensor:
    """One FAS V-cycle over ``ops`` (two-grid cycle for two operators) for ``A(x) = A(y) + b``.

    ``coarse_init``: ``"restricted"`` starts the coarse solver from ``y^H = R x`` (the usual FAS
    choice), ``"zero"`` from 0 (the choice of Sec. 6). The coarsest grid gets ``coarsest`` sweeps.
    """
    op = ops[0]
    rhs = op(y) + b
    if len(ops) == 1:
        return smooth(op, x, rhs, coarsest, smoother)
    x = smooth(op, x, rhs, pre, smoother)                      # 1. presmoothing
    r = rhs - op(x)
    y_c, b_c = restrict(x), restrict(r)                         # 2. restriction
    x_c = y_c.clone() if coarse_init == "restricted" else torch.zeros_like(y_c)
    x_c = fas_cycle(ops[1:], x_c, y_c, b_c, pre, post, coarsest, prolongation, coarse_init, smoother)  # 3.
    x = x + prolong(x_c - y_c, prolongation)                    # 4.-5. prolongation and correction
    return smooth(op, x, rhs, post, smoother)                   # 6. postsmoothing
