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

Normalisation (Sec. 3.3). The paper rescales by the Gershgorin row sum. At a reflecting
boundary this does not bound ``||K||_2`` (the kernel ``(1, 0, 0)`` duplicates ``u_0``, and
``||K||_2 = sqrt(2)`` although the row sums are 1), and for ``C > 1`` dividing by
``sqrt(C)`` bounds eigenvalues but not singular values. We therefore use the bound

.. math::
    \|K\|_2^2 \le \|K\|_1 \, \|K\|_\infty \qquad \text{(Hoelder / Schur test)},

with the exact column and row sums of the boundary-adjusted matrix. For block ``(a, b)`` the
row sums are ``|w_{-1}+w_0| + |w_{+1}|`` (first row), ``sum_t |w_t|`` (interior) and
``|w_{-1}| + |w_0+w_{+1}|`` (last row); the column sums are ``|w_{-1}+w_0| + |w_{-1}|``
(first column), ``sum_t |w_t|`` (interior) and ``|w_0+w_{+1}| + |w_{+1}|`` (last column).
The row sums of the block matrix are bounded by ``R = max_a sum_b r_{ab}`` and its column
sums by ``S = max_b sum_a c_{ab}`` where ``r_{ab}`` / ``c_{ab}`` are the largest row / column
sums of block ``(a, b)``. Dividing all kernels by ``nu = sqrt(R S)`` gives
``||K||_2 <= 1`` for any ``C`` and any length ``n >= 3``. For the difference kernels
that diffusion learns (``w_{-1} = 0``, ``w_0 = -w_{+1}``) the bound equals the
Gershgorin row sum, so nothing is lost where the paper's argument applies.

For ``C > 1`` the Schur bound grows like ``C`` while ``||K||_2`` grows like ``sqrt(C)`` (random
16-channel kernels: bound about 4x the norm), so there we take the smaller of it and a Fourier
bound. The reflecting ``K`` is the first half of the ``2n``-periodic convolution applied to the
even extension ``E u`` (``||E u|| = sqrt(2) ||u||``), hence
``||K||_2 <= sqrt(2) sup_omega sigma_max(K^(omega))`` with the ``C x C`` symbol
``K^(omega) = sum_t w_t e^{i t omega}``. The sup is taken on a grid of ``omega`` in ``[0, pi]``
plus the Lipschitz margin ``(dw / 2) (||w_{-1}||_F + ||w_{+1}||_F)`` of ``sigma_max`` in ``omega``,
so it is an upper bound for every ``n`` (random 16-channel kernels: about 1.4x the norm).

Two implementations of ``K`` / ``K^T`` exist: a slicing path for one channel (a handful
of fused elementwise operations) and ``conv1d`` for ``C > 1``; :func:`apply_k_reference`
and :func:`apply_kt_reference` are the obvious pad + convolution formulation that the
tests compare them with.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "fourier_bound",
    "apply_k",
    "apply_kt",
    "apply_k_reference",
    "apply_kt_reference",
    "norm_bound",
    "normalise",
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


def norm_bound(w: torch.Tensor) -> torch.Tensor:
    r"""Upper bound ``sqrt(||K||_1 ||K||_inf) >= ||K||_2`` for kernels ``w`` (C, C, 3), any ``n >= 3``;
    for a stack ``(..., C, C, 3)`` one bound per kernel set."""
    wm, w0, wp = w[..., 0], w[..., 1], w[..., 2]
    interior = wm.abs() + w0.abs() + wp.abs()
    row = torch.maximum(interior, torch.maximum((wm + w0).abs() + wp.abs(), wm.abs() + (w0 + wp).abs()))
    col = torch.maximum(interior, torch.maximum((wm + w0).abs() + wm.abs(), (w0 + wp).abs() + wp.abs()))
    big_r = row.sum(dim=-1).amax(dim=-1)  # row sums of output channel a: sum over input channels b
    big_s = col.sum(dim=-2).amax(dim=-1)  # column sums of input channel b: sum over output channels a
    return torch.sqrt(big_r * big_s)


#: frequencies of the Fourier bound on [0, pi]
_N_OMEGA = 65


def fourier_bound(w: torch.Tensor) -> torch.Tensor:
    """``sqrt(2) (max_omega sigma_max(K^(omega)) + margin) >= ||K||_2`` for kernels ``(..., C, C, 3)``."""
    omega = torch.linspace(0.0, math.pi, _N_OMEGA, dtype=w.dtype, device=w.device)
    taps = torch.stack([torch.polar(torch.ones_like(omega), -omega), torch.ones_like(omega).to(torch.complex64 if
                        w.dtype == torch.float32 else torch.complex128), torch.polar(torch.ones_like(omega), omega)], -1)
    symbol = torch.einsum("...abt,wt->...wab", w.to(taps.dtype), taps)
    peak = torch.linalg.svdvals(symbol).amax(dim=(-2, -1))
    step = math.pi / (_N_OMEGA - 1)
    margin = 0.5 * step * (w[..., 0].flatten(-2).norm(dim=-1) + w[..., 2].flatten(-2).norm(dim=-1))
    return math.sqrt(2.0) * (peak + margin)


def normalise(w: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Kernels rescaled so that ``||K||_2 <= 1`` (Sec. 3.3; see the module docstring); a stack
    ``(..., C, C, 3)`` is normalised set by set."""
    bound = norm_bound(w)
    if w.shape[-2] > 1:  # C > 1: the Fourier bound is much tighter (module docstring)
        bound = torch.minimum(bound, fourier_bound(w))
    return w / (bound + eps)[..., None, None, None]


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
