"""Edge-enhancing diffusion (EED) inpainting, Sec. 7.2.1, Eq. (29).

``(1 - c) div(D grad u) - c (u - f) = 0`` with ``D = g(grad u_sigma grad u_sigma^T)``: eigenvalue
``g(|grad u_sigma|^2)`` across the smoothed gradient, 1 along it, Charbonnier diffusivity
``g(s^2) = 1 / sqrt(1 + s^2 / lambda^2)``. Grey values in [0, 255].

``div(D grad u)`` is discretised with the delta-stencil of Weickert, Welk and Wickert (2013): the
tensor entries ``a = D11, b = D12, c = D22`` live at the cell centres ``(i + 1/2, j + 1/2)``, where
the gradient of ``u_sigma`` is the average of the two forward differences across the 2 x 2 cell, and
``delta = alpha (a + c) + beta b`` with ``beta = (1 - 2 alpha) sgn(b)``. Each cell couples its four
pixels: the two edges along x with weight ``(a - delta) / 2``, the two along y with ``(c - delta) / 2``,
the diagonal with ``(delta + b) / 2`` and the antidiagonal with ``(delta - b) / 2`` (divided by
``h^2``); ``(A u)_p = sum_q w_pq (u_q - u_p)``. So ``A`` is symmetric and its rows sum to zero;
cells outside the image do not exist, which is the reflecting boundary. Arrays are ``(N, 1, X, Y)``
with ``x`` along dimension -2.

The reference solver is lagged diffusivity: freeze ``A_k = A(u_k)``, solve the symmetric positive
definite system ``(-A_k)_UU u_U = (A_k)_UK f_K`` on the unknown pixels ``U`` by conjugate
gradients (matrix-free), update, and stop when the residual stops falling.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["EEDParams", "gaussian_smooth", "cell_tensor", "eed_apply", "eed_diagonal", "eed_residual",
           "mean_abs_residual", "restrict_mask", "cg_inpaint", "stencil_matrix_2d"]


@dataclass(frozen=True)
class EEDParams:
    """EED inpainting parameters of Sec. 7.2.3 (``lam``, ``sigma``) and of the delta-stencil."""

    lam: float = 0.93
    sigma: float = 0.97
    alpha: float = 0.44       # delta-stencil weight, 0 <= alpha <= 1/2
    truncate: float = 4.0     # Gaussian truncated at truncate * sigma

    def __post_init__(self) -> None:
        if not self.lam > 0:
            raise ValueError(f"eed.lam must be > 0, got {self.lam}")
        if not self.sigma >= 0:
            raise ValueError(f"eed.sigma must be >= 0, got {self.sigma}")
        if not 0 <= self.alpha <= 0.5:
            raise ValueError(f"eed.alpha must lie in [0, 1/2] (delta-stencil), got {self.alpha}")


def _symmetric_pad(u: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Half-sample symmetric extension by ``r`` pixels along ``dim`` (repeated for ``r`` > size)."""
    n = u.shape[dim]
    idx = torch.arange(-r, n + r, device=u.device)
    period = 2 * n
    idx = idx % period
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return u.index_select(dim, idx)


def gaussian_smooth(u: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian convolution with reflecting (half-sample symmetric) extension."""
    if sigma <= 0:
        return u
    r = max(1, int(math.ceil(truncate * sigma)))
    x = torch.arange(-r, r + 1, dtype=u.dtype, device=u.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    v = F.conv2d(_symmetric_pad(u, r, -2), k.view(1, 1, -1, 1))
    return F.conv2d(_symmetric_pad(v, r, -1), k.view(1, 1, 1, -1))


def cell_tensor(u: torch.Tensor, p: EEDParams, h: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Diffusion tensor entries ``(a, b, c)`` at the ``(X-1) x (Y-1)`` cell centres, from ``u_sigma``.

    On a grid of size ``h`` (in fine pixels) the smoothing scale is ``sigma / h`` grid cells and the
    gradient is divided by ``h``, so that every grid sees the same continuous operator.
    """
    us = gaussian_smooth(u, p.sigma / h, p.truncate)
    dx = us[..., 1:, :] - us[..., :-1, :]
    dy = us[..., :, 1:] - us[..., :, :-1]
    gx = 0.5 * (dx[..., :, 1:] + dx[..., :, :-1]) / h
    gy = 0.5 * (dy[..., 1:, :] + dy[..., :-1, :]) / h
    s2 = gx * gx + gy * gy
    g = torch.rsqrt(1.0 + s2 / p.lam ** 2)
    # D = I + (g - 1) v v^T with v = grad / |grad| (D = I where the gradient vanishes)
    scale = (g - 1.0) / s2.clamp_min(1e-20)
    scale = torch.where(s2 > 1e-20, scale, torch.zeros_like(scale))
    return 1.0 + scale * gx * gx, scale * gx * gy, 1.0 + scale * gy * gy


def _cell_weights(a, b, c, alpha: float, h: float):
    beta = (1.0 - 2.0 * alpha) * torch.sign(b)
    delta = alpha * (a + c) + beta * b
    s = 0.5 / (h * h)
    return (a - delta) * s, (c - delta) * s, (delta + b) * s, (delta - b) * s


def eed_apply(u: torch.Tensor, tensor: tuple[torch.Tensor, torch.Tensor, torch.Tensor], alpha: float = 0.44,
              h: float = 1.0) -> torch.Tensor:
    """``A u`` for the delta-stencil with the cell tensors ``(a, b, c)`` (``A`` frozen: linear in ``u``)."""
    wx, wy, wd, wa = _cell_weights(*tensor, alpha, h)
    u00, u10 = u[..., :-1, :-1], u[..., 1:, :-1]
    u01, u11 = u[..., :-1, 1:], u[..., 1:, 1:]
    ex0 = wx * (u10 - u00)   # x-edge at y = j
    ex1 = wx * (u11 - u01)   # x-edge at y = j + 1
    ey0 = wy * (u01 - u00)   # y-edge at x = i
    ey1 = wy * (u11 - u10)   # y-edge at x = i + 1
    ed = wd * (u11 - u00)    # diagonal
    ea = wa * (u01 - u10)    # antidiagonal, from (i+1, j) to (i, j+1)
    c00 = ex0 + ey0 + ed
    c10 = -ex0 + ey1 + ea
    c01 = ex1 - ey0 - ea
    c11 = -ex1 - ey1 - ed
    # scatter the four corner contributions of every cell back to the pixels
    return (F.pad(c00, (0, 1, 0, 1)) + F.pad(c10, (0, 1, 1, 0)) + F.pad(c01, (1, 0, 0, 1)) + F.pad(c11, (1, 0, 1, 0)))


def eed_diagonal(tensor: tuple[torch.Tensor, torch.Tensor, torch.Tensor], alpha: float = 0.44,
                 h: float = 1.0) -> torch.Tensor:
    """The diagonal of ``A`` in ``eed_apply`` (negative): each cell adds its weights towards its other three
    corners to each corner's diagonal entry."""
    wx, wy, wd, wa = _cell_weights(*tensor, alpha, h)
    main, anti = wx + wy + wd, wx + wy + wa  # corners (i, j), (i+1, j+1) and (i+1, j), (i, j+1)
    return -(F.pad(main, (0, 1, 0, 1)) + F.pad(anti, (0, 1, 1, 0)) + F.pad(anti, (1, 0, 0, 1))
             + F.pad(main, (1, 0, 1, 0)))


def eed_residual(u: torch.Tensor, f: torch.Tensor, mask: torch.Tensor, p: EEDParams = EEDParams(),
                 h: float = 1.0) -> torch.Tensor:
    """Residual of the discretised Eq. (29): ``r(u) = (1 - c) A(u) u - c (u - f)``."""
    return _residual(u, f, mask, cell_tensor(u, p, h), p.alpha, h)


def _residual(u, f, mask, tensor, alpha: float, h: float = 1.0) -> torch.Tensor:
    """Eq. (29) residual with the diffusion tensor given (``A`` frozen at ``tensor``)."""
    return (1.0 - mask) * eed_apply(u, tensor, alpha, h) - mask * (u - f)


def mean_abs_residual(u: torch.Tensor, f: torch.Tensor, mask: torch.Tensor, p: EEDParams = EEDParams()) -> torch.Tensor:
    """The training loss of Sec. 7.2.2: mean absolute residual of Eq. (29)."""
    return eed_residual(u, f, mask, p).abs().mean()


def restrict_mask(mask: torch.Tensor) -> torch.Tensor:
    """Coarse mask (Sec. 7.2.2): a coarse pixel is known when any of its 2 x 2 fine pixels is known."""
    return F.max_pool2d(mask, 2)


def stencil_matrix_2d(tensor, shape: tuple[int, int], alpha: float = 0.44, h: float = 1.0) -> torch.Tensor:
    """Dense matrix of ``u -> A u`` for one small image (tests)."""
    n = shape[0] * shape[1]
    eye = torch.eye(n, dtype=tensor[0].dtype).reshape(n, 1, *shape)
    t = tuple(x.expand(n, 1, *x.shape[-2:]) for x in tensor)
    return eed_apply(eye, t, alpha, h).reshape(n, n).T


@torch.no_grad()
def _cg(apply, rhs: torch.Tensor, x: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """Conjugate gradients for a symmetric positive definite ``apply`` (one system per batch item)."""
    r = rhs - apply(x)
    d = r.clone()
    rr = (r * r).sum(dim=(-2, -1), keepdim=True)
    stop = tol * tol * (rhs * rhs).sum(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    it = 0
    for it in range(1, max_iter + 1):
        q = apply(d)
        dq = (d * q).sum(dim=(-2, -1), keepdim=True)
        step = rr / dq.clamp_min(1e-30)
        x = x + step * d
        r = r - step * q
        rr_new = (r * r).sum(dim=(-2, -1), keepdim=True)
        if bool((rr_new <= stop).all()):
            break
        d = r + (rr_new / rr.clamp_min(1e-30)) * d
        rr = rr_new
    return x, it


@torch.no_grad()
def cg_inpaint(f: torch.Tensor, mask: torch.Tensor, p: EEDParams = EEDParams(), max_outer: int = 200,
               cg_tol: float = 1e-3, max_cg: int = 500, patience: int = 5, u0: torch.Tensor | None = None,
               original: torch.Tensor | None = None) -> tuple[torch.Tensor, list[dict]]:
    """EED inpainting by lagged diffusivity with CG inner solves (the paper's "CG solver").

    Starts from the known pixels with the mean grey value elsewhere (or ``u0``). Every outer step
    freezes ``A_k = A(u_k)`` and solves ``(-A_k)_UU u_U = (A_k)_UK f_K`` (warm start, relative CG
    tolerance ``cg_tol``). Stops when the mean absolute residual has not fallen for ``patience``
    outer steps or after ``max_outer``. Returns the best iterate and the history
    ``[{outer, cg_iters, seconds, mean_abs_residual}]`` (seconds since the start, for timing); with
    ``original`` (the uncorrupted image) also each iterate's ``psnr_vs_original``, computed outside the timing.
    """
    known = mask > 0.5
    if u0 is None:
        mean = (f * mask).sum(dim=(-2, -1), keepdim=True) / mask.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
        u0 = torch.where(known, f, mean.expand_as(f))
    u = torch.where(known, f, u0)
    free = (~known).to(f.dtype)
    fk = torch.where(known, f, torch.zeros_like(f))
    t0 = time.perf_counter()
    history: list[dict] = []
    best, best_r, since, its = u, math.inf, 0, 0
    for k in range(max_outer + 1):
        # one diffusion tensor per iterate: it gives the residual of u_k and the frozen A_k
        tens = cell_tensor(u, p)
        r = float(_residual(u, f, mask, tens, p.alpha).abs().mean())
        history.append({"outer": k, "cg_iters": its, "seconds": time.perf_counter() - t0, "mean_abs_residual": r})
        if original is not None:  # not part of the solver: its time is taken out of the clock
            t_psnr = time.perf_counter()
            mse = float(((u - original) ** 2).mean())
            history[-1]["psnr_vs_original"] = math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
            t0 += time.perf_counter() - t_psnr
        if r < best_r * (1 - 1e-4):
            best, best_r, since = u, r, 0
        else:
            since += 1
            if since >= patience:
                break
        if k == max_outer:
            break
        rhs = free * eed_apply(fk, tens, p.alpha)                       # (A_k)_UK f_K on U
        apply = lambda v: -free * eed_apply(free * v, tens, p.alpha)    # (-A_k)_UU, zero outside U
        x, its = _cg(apply, rhs, free * u, cg_tol, max_cg)
        u = torch.where(known, f, x)
    return best, history
