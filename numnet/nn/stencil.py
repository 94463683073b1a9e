r"""Width-3 stencil operator ``K`` and its exact adjoint ``K^T`` (Sec. 3, Eq. 10--13).

Signals are shaped ``(N, C, n)``. ``K`` is a ``C x C`` block convolution with kernels
``w[a, b] = (w_{-1}, w_0, w_{+1})`` applied to the signal extended by reflection
(homogeneous Neumann boundaries, ghost values ``u_{-1} = u_0`` and ``u_n = u_{n-1}``):

.. math::
    (K u)_{a,i} = \sum_b \sum_{t \in \{-1,0,1\}} w_{a,b,t}\, u_{b,\,r(i+t)}, \qquad
    r(-1) = 0,\; r(n) = n-1.

``K = C P`` with ``P`` the reflecting extension and ``C`` a valid correlation, hence
``K^T = P^T C^T``: the transposed (full) convolution with the mirrored kernel, whose two
ghost entries are folded back onto the boundary samples. This is the exact matrix
transpose, so ``<K u, v> = <u, K^T v>`` holds to rounding.

Two implementations of ``K`` / ``K^T`` exist: a slicing path for one channel (a handful
of fused elementwise operations) and ``conv1d`` for ``C > 1``; :func:`apply_k_reference`
and :func:`apply_kt_reference` are the obvious pad + convolution formulation that the
tests compare them with.

The kernels' normalisation (Sec. 3.3) is :mod:`numnet.nn.normalisation`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "apply_k",
    "apply_kt",
    "apply_k_reference",
    "apply_kt_reference",
    "stencil_matrix",
    "spectral_norm",
    "forward_difference",
]


def forward_difference(h: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The forward difference ``(u_{i+1} - u_i) / h`` as a one-channel kernel ``(w_-1, w_0, w_+1)``."""
    if not h > 0:
        raise ValueError(f"grid size h must be > 0, got {h}")
    return torch.tensor([[[0.0, -1.0, 1.0]]], dtype=dtype) / h


def _reflect_pad(u: torch.Tensor) -> torch.Tensor:
    return torch.cat([u[..., :1], u, u[..., -1:]], dim=-1)


def apply_k(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``K u`` for kernels ``w`` of shape ``(C, C, 3)`` on ``u`` of shape ``(N, C, n)``."""
    if w.shape[0] == 1 and w.shape[1] == 1:
        up = _reflect_pad(u)
        k = w.reshape(3)
        return k[0] * up[..., :-2] + k[1] * up[..., 1:-1] + k[2] * up[..., 2:]
    return F.conv1d(_reflect_pad(u), w)


def apply_kt(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``K^T v``: mirrored-kernel correlation of zero-extended ``v`` plus folded ghost terms."""
    if w.shape[0] == 1 and w.shape[1] == 1:
        k = w.reshape(3)
        zp = F.pad(v, (1, 1))
        out = k[2] * zp[..., :-2] + k[1] * zp[..., 1:-1] + k[0] * zp[..., 2:]
        # ghost entries of C^T v folded back by P^T: y_0 = w_{-1} v_0 -> sample 0,
        # y_{n+1} = w_{+1} v_{n-1} -> sample n-1
        first = k[0] * v[..., :1]
        last = k[2] * v[..., -1:]
        return torch.cat([out[..., :1] + first, out[..., 1:-1], out[..., -1:] + last], dim=-1)
    # C > 1: the full transposed convolution (length n + 2), its two ghost entries folded back by P^T
    # (one convolution and a cat; folding with per-boundary einsums cost more than the convolution)
    y = F.conv_transpose1d(v, w)
    return torch.cat([y[..., 1:2] + y[..., :1], y[..., 2:-2], y[..., -2:-1] + y[..., -1:]], dim=-1)


def apply_k_reference(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Reference ``K u``: ``F.pad(mode='replicate')`` followed by ``F.conv1d``."""
    return F.conv1d(F.pad(u, (1, 1), mode="replicate"), w)


def apply_kt_reference(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Reference ``K^T v``: full transposed convolution, then the adjoint of replicate padding."""
    y = F.conv_transpose1d(v, w)
    inner = y[..., 1:-1].clone()
    inner[..., :1] += y[..., :1]
    inner[..., -1:] += y[..., -1:]
    return inner


def stencil_matrix(w: torch.Tensor, n: int) -> torch.Tensor:
    """Dense ``(C n) x (C n)`` matrix of ``K`` (for tests and small spectral computations)."""
    c = w.shape[1]
    eye = torch.eye(c * n, dtype=w.dtype).reshape(c * n, c, n)
    return apply_k_reference(eye, w).reshape(c * n, -1).T


@torch.no_grad()
def spectral_norm(w: torch.Tensor, n: int = 256, iters: int = 100) -> float:
    """``||K||_2`` on signals of length ``n`` by power iteration on ``K^T K`` (deterministic start)."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, w.shape[1], n, generator=g, dtype=w.dtype)
    for _ in range(iters):
        u = apply_kt(apply_k(u, w), w)
        u = u / u.norm().clamp_min(1e-30)
    return float(apply_k(u, w).norm())
