"""Measurements of the paper's theory: Theorem 2, Appendix A, the FSI super step, FAS convergence.

Pure functions returning numbers (and arrays for plots); ``numnet.artefacts.theory`` draws
and tabulates them, the tests check them.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from numnet.nn.activations import build_flux
from numnet.nn.blocks import diffusion_step
from numnet.nn.normalisation import normalise
from numnet.nn.stencil import apply_k, forward_difference, stencil_matrix
from numnet.schemes.acceleration import FSIScheme, fsi_stopping_time
from numnet.schemes.explicit import ExplicitDiffusion
from numnet.schemes.fas import DiffusionOperator, fas_cycle, hierarchy, smooth

__all__ = [
    "theorem2_norms",
    "first_violating_tau",
    "paper_rule_norm",
    "dufort_frankel_radius",
    "dufort_frankel_radius_direct",
    "fsi_time_errors",
    "fas_residuals",
]


def _kernels(channels: int, depth: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.empty(depth, channels, channels, 3, dtype=torch.float64).uniform_(-0.1, 0.1, generator=g)
    return torch.stack([normalise(k, "provable") for k in w])


def _signals(channels: int, n: int, count: int, seed: int, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return scale * torch.randn(count, channels, n, generator=g, dtype=torch.float64)


def theorem2_norms(activation: str, channels: int, tau_factor: float, depth: int = 40, n: int = 64,
                   lam: float = 10.0, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """``||u^k|| / ||u^0||`` along a symmetric ResNet with one random normalised kernel (shared).

    ``tau = tau_factor * 2 / (L ||K_k||_2^2)`` with the exact spectral norm of each block's kernel:
    ``tau_factor <= 1`` is within Theorem 2's bound (Eq. 14), ``> 1`` beyond it. The signals are the
    top right singular vector of each block's ``K`` plus small noise, the worst case of the proof.
    """
    flux = build_flux(activation, lam, trainable=False).double()
    w = _kernels(channels, 1, seed)[0]
    u = _signals(channels, n, 4, seed, scale)
    smax = float(torch.linalg.matrix_norm(stencil_matrix(w, n), 2))
    tau = tau_factor * 2.0 / (flux.lipschitz * smax**2)
    norms = [float(u.norm())]
    for _ in range(depth):
        u = diffusion_step(u, w, tau, flux)
        norms.append(float(u.norm()))
    base = norms[0]
    return np.array(norms) / base


def first_violating_tau(activation: str, channels: int, n: int = 64, lam: float = 1e6, seed: int = 0,
                        factors: np.ndarray | None = None) -> dict:
    """Scan ``tau`` past the bound for one block: the first ``tau`` at which the norm grows.

    Returns the a-priori bound ``2/L`` (with ``||K|| <= 1`` from the normalisation), the exact
    bound ``2/(L ||K||^2)`` of the sampled kernel, and the first violating ``tau`` on the grid.
    """
    factors = np.round(np.arange(0.90, 3.001, 0.01), 4) if factors is None else factors
    flux = build_flux(activation, lam, trainable=False).double()
    w = _kernels(channels, 1, seed)[0]
    m = stencil_matrix(w, n)
    _, s, vh = torch.linalg.svd(m)
    smax = float(s[0])
    u = vh[0].reshape(1, channels, n)
    if activation == "relu":
        u = u if float((apply_k(u, w) > 0).double().mean()) >= 0.5 else -u
    exact = 2.0 / (flux.lipschitz * smax**2)
    first = None
    for f in factors:
        tau = f * exact
        if float(diffusion_step(u, w, tau, flux).norm()) > float(u.norm()) * (1 + 1e-12):
            first = tau
            break
    return {"activation": activation, "channels": channels, "norm_K": smax, "apriori_bound": 2.0 / flux.lipschitz,
            "exact_bound": exact, "first_violating_tau": first}


def paper_rule_norm(channels: int, n: int = 32, seed: int = 0) -> float:
    """``||K||_2`` after the paper's rescaling (Sec. 3.3): each block by its absolute kernel sum, then
    ``1/sqrt(C)``; this controls eigenvalues (Gershgorin), not necessarily the spectral norm."""
    g = torch.Generator().manual_seed(seed)
    w = torch.empty(channels, channels, 3, dtype=torch.float64).uniform_(-0.1, 0.1, generator=g)
    return float(torch.linalg.matrix_norm(stencil_matrix(normalise(w, "paper"), n), 2))


def dufort_frankel_radius(eigs_a: np.ndarray, alpha: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Spectral radius of the multistep matrix (Eq. 30) from the eigenvalues of ``A`` (Eq. 38, 49).

    ``alpha`` and ``tau`` broadcast against each other; the result has their broadcast shape.
    """
    alpha, tau = np.asarray(alpha, dtype=float), np.asarray(tau, dtype=float)
    ta = (tau * alpha)[..., None]
    lam = np.asarray(eigs_a, dtype=float)
    gamma = (4 * ta - 2 * tau[..., None] * lam) / (1 + 2 * ta)
    c = (1 - 2 * ta) / (1 + 2 * ta)
    disc = (gamma**2 / 4 + c).astype(complex)
    root = np.sqrt(disc)
    mu = np.maximum(np.abs(gamma / 2 + root), np.abs(gamma / 2 - root))
    return mu.max(axis=-1)


def dufort_frankel_radius_direct(a: np.ndarray, alpha: float, tau: float) -> float:
    """Spectral radius of the block matrix of Eq. (30) by a dense eigenvalue solve (for checks)."""
    n = a.shape[0]
    q = 4 * tau * alpha / (1 + 2 * tau * alpha) * np.eye(n) - 2 * tau / (1 + 2 * tau * alpha) * a
    b = np.block([[q, (1 - 2 * tau * alpha) / (1 + 2 * tau * alpha) * np.eye(n)], [np.eye(n), np.zeros((n, n))]])
    return float(np.abs(np.linalg.eigvals(b)).max())


def diffusion_matrix(signal: torch.Tensor, activation: str = "perona_malik", lam: float = 5.0) -> np.ndarray:
    """``A(u) = K^T G(u) K`` for ``K = D/2`` (the normalised forward difference) at ``signal`` (n,)."""
    w = normalise(forward_difference(dtype=torch.float64))
    n = signal.numel()
    k = stencil_matrix(w, n)
    flux = build_flux(activation, lam, trainable=False).double()
    g = flux.diffusivity(k @ signal.double())
    return (k.T @ torch.diag(g) @ k).numpy()


def fsi_time_errors(cycles: list[int], n: int = 64) -> list[dict]:
    """Per cycle length L: max error of one linear FSI cycle at ``L(L+1)tau/3`` against a fine
    explicit reference, and of ``L`` plain explicit steps (which reach only ``L tau``)."""
    h = 1.0 / n
    x = (torch.arange(n, dtype=torch.float64) + 0.5) * h
    f = (torch.cos(math.pi * x) + 0.3 * torch.cos(2 * math.pi * x)).view(1, 1, n)
    tau = 0.5 * h**2
    kernel = forward_difference(h, torch.float64)
    out = []
    for cyc in cycles:
        t = fsi_stopping_time(cyc, tau)
        fine = max(1, round(t / (0.02 * h**2)))
        ref = ExplicitDiffusion("linear", tau=t / fine, steps=fine, kernel=kernel).double()(f)
        fsi = FSIScheme("linear", tau=tau, cycle=cyc, h=h).double()(f)
        plain = ExplicitDiffusion("linear", tau=tau, steps=cyc, kernel=kernel).double()(f)
        out.append({"L": cyc, "super_time": t, "plain_time": cyc * tau, "fsi_error": float((fsi - ref).abs().max()),
                    "explicit_error": float((plain - ref).abs().max())})
    return out


def fas_residuals(activation: str, lam: float, b: torch.Tensor, tau: float = 20.0, cycles: int = 10,
                  pre: int = 2, post: int = 2, coarsest: int = 50) -> dict[str, dict]:
    """Relative residual ``||b - A(x)|| / ||b||`` against work units (fine-grid sweeps; a sweep on
    grid ``2^l h`` costs ``2^-l``) for the plain smoother, the two-grid FAS and FAS V-cycles."""
    op = DiffusionOperator(build_flux(activation, lam, trainable=False).double(), tau)
    zero = torch.zeros_like(b)
    bn = float(b.norm())
    res = {}

    def rel(x):
        return float((b - op(x)).norm()) / bn

    # plain smoother
    x, work, hist = zero.clone(), [0.0], [rel(zero)]
    for _ in range(cycles * 10):
        x = smooth(op, x, b, 1)
        work.append(work[-1] + 1)
        hist.append(rel(x))
    res["jacobi"] = {"work": work, "residual": hist}
    for name, levels, coarse in (("two-grid", 2, 4 * coarsest), ("V-cycle, 4 grids", 4, coarsest),
                                 ("V-cycle, 6 grids", 6, coarsest)):
        ops = hierarchy(op, levels)
        per_cycle = sum((pre + post) * 2.0**-l for l in range(levels - 1)) + coarse * 2.0 ** -(levels - 1)
        x, work, hist = zero.clone(), [0.0], [rel(zero)]
        for _ in range(cycles):
            x = fas_cycle(ops, x, zero, b, pre, post, coarse)
            work.append(work[-1] + per_cycle)
            hist.append(rel(x))
        res[name] = {"work": work, "residual": hist}
    for v in res.values():
        r = np.array(v["residual"])
        steps = len(r) - 1
        v["factor_per_cycle"] = float((r[-1] / r[0]) ** (1.0 / steps)) if r[-1] > 0 else 0.0
    return res
