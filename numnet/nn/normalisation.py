r"""Normalisation of the width-3 stencil kernels (Sec. 3.3): three named rules
(``model.normalisation=paper|provable|tight``) that rescale the kernels of ``K`` (:mod:`numnet.nn.stencil`).

* ``paper`` (the default: the rule the paper trains with). Each ``C x C`` block ``(a, b)`` is divided
  by its own absolute row sum ``sum_t |w_{a,b,t}|`` (Gershgorin) and ``K`` by ``sqrt(C)``. The paper
  states that this guarantees ``||K||_2 <= 1``; it does not: at a reflecting boundary the kernel
  ``(1, 0, 0)`` duplicates ``u_0`` and ``||K||_2 = sqrt(2)`` although its row sum is 1, and for
  ``C > 1`` the block-Gershgorin argument bounds eigenvalues, not singular values (random
  16-channel kernels: ``||K||_2`` about 1.3; trained ones: ``results/stability``).
* ``provable``: a bound that holds for every length ``n >= 3``. The Schur test

  .. math::
      \|K\|_2^2 \le \|K\|_1 \, \|K\|_\infty \qquad \text{(Hoelder / Schur test)}

  with the exact column and row sums of the boundary-adjusted matrix. For block ``(a, b)`` the
  row sums are ``|w_{-1}+w_0| + |w_{+1}|`` (first row), ``sum_t |w_t|`` (interior) and
  ``|w_{-1}| + |w_0+w_{+1}|`` (last row); the column sums are ``|w_{-1}+w_0| + |w_{-1}|`` (first
  column), ``sum_t |w_t|`` (interior) and ``|w_0+w_{+1}| + |w_{+1}|`` (last column). The row sums
  of the block matrix are bounded by ``R = max_a sum_b r_{ab}`` and its column sums by
  ``S = max_b sum_a c_{ab}``; ``nu = sqrt(R S)``.

For ``C = 1`` the two rules coincide exactly when no boundary column sum exceeds the interior
sum, i.e. ``|w_{-1}+w_0| <= |w_0|+|w_{+1}|`` and ``|w_0+w_{+1}| <= |w_{-1}|+|w_0|``; this holds for
the difference kernels that diffusion learns (``w_{-1} = 0``, ``w_0 = -w_{+1}``), where the paper's
argument applies. Elsewhere (e.g. ``(1, 0, 0)``) the provable rule divides by more.

For ``C > 1`` the Schur bound grows like ``C`` while ``||K||_2`` grows like ``sqrt(C)``, so the
provable rule takes the smallest of it and two spectral bounds built on the ``C x C`` symbol
``K^(omega) = sum_t w_t e^{i t omega}`` and ``sigma* = sup_omega sigma_max(K^(omega))``:

1. *Grid with Szegő's factor.* For unit ``x, y`` attaining ``sigma*`` at ``omega*``, the real
   trigonometric polynomial ``p(omega) = Re y^H K^(omega) x = a + r cos(omega - omega*)`` of
   degree 1 has ``a >= 0`` (its maximum ``a + r`` is also its largest modulus), so
   ``p(omega* + t) >= sigma* cos t``. Frequencies ``omega_j`` spaced ``h`` on ``[0, pi]`` (enough:
   ``sigma(-omega) = sigma(omega)`` for real kernels) therefore give
   ``sigma* <= max_j sigma_max(K^(omega_j)) / cos(h / 2)`` (17 frequencies: a factor 1.0048).
2. *Boundary.* ``K`` is the finite section ``T`` of the Laurent operator ``L`` plus the corner terms
   ``W_{-1} u_0`` (row 0) and ``W_{+1} u_{n-1}`` (row ``n-1``). With ``u~`` the zero extension,
   ``||K u||^2 = ||L u~||^2 + Q_L(u_0, u_1) + Q_R(u_{n-2}, u_{n-1})`` where
   ``Q_L = ||(Ku)_0||^2 - ||(Tu)_0||^2 - ||W_{+1} u_0||^2`` (the row ``-1`` of ``L u~``), ``Q_R``
   likewise; ``||L u~|| <= sigma* ||u||``. From ``n = 4`` on the two forms act on disjoint samples,
   hence ``||K||_2^2 <= sigma*^2 + max(0, lambda_max(Q_L), lambda_max(Q_R))``; the lengths 2 and 3 are
   covered by the exact norms of their ``2C x 2C`` and ``3C x 3C`` matrices.
   The even extension gives the other bound ``||K||_2 <= sqrt(2) sigma*`` (``K`` is the first half
   of the ``2n``-periodic convolution of the even extension ``E u``, ``||E u|| = sqrt(2) ||u||``).

On random 16-channel kernels the provable bound is about 1.12-1.20x the exact norm (the Schur bound
alone: about 3.5x); ``results/stability`` reports it on trained kernels. The exact norm there lies
about 5 % above ``sigma*``: the boundary counts, so ``sigma*`` alone is no bound. The second bound adds
``sigma*^2`` and the boundary's excess as if one signal attained both; that is where it is loose.

* ``tight``: the same guarantee with a localised bound (:func:`localised_bound`), within 8 % of
  ``sup_n ||K_n||_2`` on random and trained 16-channel kernels (``tests/test_operators.py``,
  ``results/stability``), at about 2.4 times the cost of ``provable`` and 0.8x that of the earlier
  65-frequency bound (``make bench``). With
  ``A = K^T K`` and a partition of unity ``sum_j phi_j^2 = 1`` (the IMS localisation formula)

  .. math::
      A = \sum_j \phi_j A \phi_j + E, \qquad
      E_{ik} = \tfrac12 A_{ik} \sum_j (\phi_j(i) - \phi_j(k))^2 ,

  so ``||K||_2^2 <= max_j ||K restricted to supp phi_j||^2 + ||E||``. Windows ``phi = cos theta,
  sin theta`` with ``theta`` rising by ``pi / (2 r)`` per sample give ``sum_j (phi_j(i) - phi_j(k))^2 <=
  (|i - k| pi / 2r)^2``, and ``E`` lives on the band ``|i - k| <= 2``: ``||E|| <= (pi / 2r)^2 ||A_1|| +
  (pi / r)^2 ||A_2||`` with ``A_1 = W_-1^T W_0 + W_0^T W_+1``, ``A_2 = W_-1^T W_+1`` (transitions start at
  sample 1, where ``A`` is Toeplitz). A window away from both ends sees ``L``: at most ``sigma*``; a window
  on the first ``m`` samples (``n >= m + 2``) has the norm ``beta_L(m)`` of a fixed ``(m + 1) C x m C``
  matrix, the last ``m`` samples ``beta_R(m)`` (the mirrored kernel). With ``r = 4``: lengths
  ``n >= 12`` take three windows (boundary windows of 5 samples), lengths ``7 ... 11`` two balanced
  windows of at most 7 samples, lengths ``2 ... 6`` their exact norms. Hence for every ``n >= 2``
  ``||K_n||_2^2 <= max(max(sigma*^2, beta_L(7)^2, beta_R(7)^2) + ||E||, max_{n <= 6} ||K_n||_2^2)``
  (``beta`` grows with ``m``). Each top singular value is an eigenvalue of a Gram matrix, taken without
  autograd and differentiated as ``||M x||`` at its top eigenvector. Most of the cost is the two ``7C x 7C``
  boundary windows' eigenvalues: the short lengths are only checked against the bound of the longer ones by a
  Cholesky factorisation of ``bound^2 I - K_n^T K_n`` (positive definite: no short norm exceeds it), and
  computed exactly only where a factorisation fails, which gives the same value.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "NORMALISATIONS",
    "GUARANTEED",
    "check_normalisation",
    "normalise",
    "paper_bound",
    "provable_bound",
    "norm_bound",
    "fourier_bound",
    "localised_bound",
    "symbol_peak",
    "dense_k",
]


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


#: frequencies of the spectral bound on [0, pi] (Szegő factor 1 / cos(pi / 32) = 1.0048)
_N_OMEGA = 17

#: the localised bound (module docstring): transitions of the partition of unity over at least this many
#: samples, exact norms up to length ``_TRANSITION + 2`` ...
_TRANSITION = 4
#: ... and boundary windows of at most this many samples (two balanced windows for lengths up to 13)
_WINDOW = (3 * _TRANSITION + 3) // 2

#: the normalisation rules of Sec. 3.3 (module docstring); the first is the default
NORMALISATIONS = ("paper", "provable", "tight")
#: the rules that guarantee ``||K||_2 <= 1`` (for ``C = 1`` both divide by the Schur bound: the same model)
GUARANTEED = ("provable", "tight")


def symbol_peak(w: torch.Tensor, n_omega: int = _N_OMEGA) -> torch.Tensor:
    """Upper bound ``max_j sigma_max(K^(omega_j)) / cos(h / 2) >= sup_omega sigma_max(K^(omega))`` for
    kernels ``(..., C, C, 3)`` (Szegő's argument in the module docstring). The eigenvalues are taken without
    autograd; the peak is differentiated as ``||K^(omega*) x||`` at the top eigenvector ``x`` of the peak
    frequency ``omega*`` (the derivative of ``sigma_max``), so the backward pass needs no eigendecomposition of
    every frequency's matrix."""
    omega = torch.linspace(0.0, math.pi, n_omega, dtype=w.dtype, device=w.device)
    ctype = torch.complex64 if w.dtype == torch.float32 else torch.complex128
    one = torch.ones_like(omega)
    taps = torch.stack([torch.polar(one, -omega), one.to(ctype), torch.polar(one, omega)], -1)
    symbol = torch.einsum("...abt,wt->...wab", w.to(ctype), taps)
    scale = 1.0 / math.cos(0.5 * math.pi / (n_omega - 1))
    with torch.no_grad():
        # sigma_max^2 = lambda_max of the Hermitian Gram matrix: eigvalsh, about 1.3x faster than svdvals here
        top, at = torch.linalg.eigvalsh(symbol.mH @ symbol)[..., -1].max(dim=-1)
        peak = top.clamp_min(0.0).sqrt()
    if not w.requires_grad:
        return peak * scale
    index = at[..., None, None, None].expand(*at.shape, 1, *symbol.shape[-2:])
    star = torch.take_along_dim(symbol, index, dim=-3).squeeze(-3)  # the peak frequency's symbol
    x = torch.linalg.eigh((star.mH @ star).detach())[1][..., -1:]
    kx = (star @ x).abs().square().sum(dim=(-2, -1)).sqrt()
    return (peak + kx - kx.detach()) * scale


def _corner_excess(w: torch.Tensor) -> torch.Tensor:
    """``max(0, lambda_max(Q_L))`` of the left boundary: ``Q_L(u_0, u_1) = ||(W_-1 + W_0) u_0 + W_+1 u_1||^2
    - ||W_0 u_0 + W_+1 u_1||^2 - ||W_+1 u_0||^2`` (module docstring), for kernels ``(..., C, C, 3)``."""
    wm, w0, wp = w[..., 0], w[..., 1], w[..., 2]
    a = torch.cat([wm + w0, wp], -1)
    b = torch.cat([w0, wp], -1)
    z = torch.cat([wp, torch.zeros_like(wp)], -1)
    tr = lambda m: m.transpose(-2, -1)  # noqa: E731
    q = tr(a) @ a - tr(b) @ b - tr(z) @ z
    return torch.linalg.eigvalsh(q)[..., -1].clamp_min(0.0)


def _short_norms(w: torch.Tensor) -> torch.Tensor:
    """Exact ``max(||K||_2 at n = 2, at n = 3)`` for kernels ``(..., C, C, 3)`` (dense ``2C`` and ``3C`` matrices)."""
    wm, w0, wp = w[..., 0], w[..., 1], w[..., 2]
    z = torch.zeros_like(w0)
    k2 = torch.cat([torch.cat([wm + w0, wp], -1), torch.cat([wm, w0 + wp], -1)], -2)
    k3 = torch.cat([torch.cat([wm + w0, wp, z], -1), torch.cat([wm, w0, wp], -1), torch.cat([z, wm, w0 + wp], -1)], -2)
    top = lambda k: torch.linalg.eigvalsh(k.transpose(-2, -1) @ k)[..., -1].clamp_min(0.0).sqrt()  # noqa: E731
    return torch.maximum(top(k2), top(k3))


def _corner_bound(w: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """``sigma*^2 + max(q_L, q_R)`` (module docstring): the square of a bound on ``||K_n||_2`` from ``n = 4`` on,
    given the symbol's peak ``sigma*``; the right correction is the left one of the mirrored kernel."""
    return peak ** 2 + torch.maximum(_corner_excess(w), _corner_excess(w.flip(-1)))


def fourier_bound(w: torch.Tensor, n_omega: int = _N_OMEGA) -> torch.Tensor:
    """``>= ||K||_2`` for every length ``n >= 2``, kernels ``(..., C, C, 3)``: the smaller of
    ``sqrt(2) sigma*`` and ``max(sqrt(sigma*^2 + max(q_L, q_R)), ||K_2||, ||K_3||)`` with the symbol's peak
    ``sigma*`` (:func:`symbol_peak`), the two boundary corrections (the right one is the left one of the
    mirrored kernel; they act on disjoint samples from ``n = 4`` on) and the exact norms at ``n = 2, 3``."""
    peak = symbol_peak(w, n_omega)
    local = torch.maximum(torch.sqrt(_corner_bound(w, peak)), _short_norms(w))
    return torch.minimum(math.sqrt(2.0) * peak, local)


def _shifts(n: int, rows: int, cols: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The ``(3, rows, cols)`` leading block of the shifts ``S_t`` with ``K_n = sum_t S_t (x) W_t`` (reflecting
    boundary: the ghost samples fold onto the end samples)."""
    s = torch.zeros(3, n, n, dtype=dtype, device=device)
    for t in range(3):
        s[t].diagonal(t - 1).fill_(1.0)
    s[0, 0, 0] = 1.0  # ghost u_{-1} = u_0
    s[2, n - 1, n - 1] = 1.0  # ghost u_n = u_{n-1}
    return s[:, :rows, :cols]


def dense_k(w: torch.Tensor, n: int) -> torch.Tensor:
    """``K`` on signals of length ``n >= 2`` as a dense matrix ``(..., n C, n C)`` for kernels ``(..., C, C, 3)``,
    sample-major (row ``i C + a``, column ``j C + b``): ``sum_t S_t (x) W_t``; differentiable, batched."""
    c = w.shape[-2]
    shifts = _shifts(n, n, n, w.dtype, w.device)
    return torch.einsum("tij,...abt->...iajb", shifts, w).reshape(*w.shape[:-3], n * c, n * c)


def _gram(shifts: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``M^T M`` of ``M = sum_t A_t (x) W_t`` (``shifts`` ``A``: ``(3, p, q)``; kernels ``(..., C, C, 3)``), shaped
    ``(..., q C, q C)``: ``sum_{t,s} A_t^T A_s (x) W_t^T W_s``, assembled from ``C x C`` products."""
    q, c = shifts.shape[-1], w.shape[-2]
    p_ts = torch.einsum("tki,skj->tsij", shifts, shifts)
    h_ts = torch.einsum("...bat,...bcs->...tsac", w, w)
    return torch.einsum("tsij,...tsac->...iajc", p_ts, h_ts).reshape(*w.shape[:-3], q * c, q * c)


def _top_singular(shifts: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Largest singular value of ``M = sum_t A_t (x) W_t`` (``shifts`` ``A``: ``(3, p, q)``; kernels
    ``(..., C, C, 3)``): the top eigenvalue of the Gram matrix (:func:`_gram`, eigvalsh, no autograd),
    differentiated by :func:`_differentiated`."""
    with torch.no_grad():
        g = _gram(shifts, w)
        top = torch.linalg.eigvalsh(g)[..., -1].clamp_min(0.0)
    return _differentiated(shifts, w, g, top)


def _differentiated(shifts: torch.Tensor, w: torch.Tensor, g: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """``sqrt(top)``, the largest singular value of ``M = sum_t A_t (x) W_t`` given its Gram matrix ``g`` and the
    Gram matrix's top eigenvalue ``top``, differentiated through ``||M x||`` at the top eigenvector ``x`` (three
    steps of inverse iteration with the Cholesky factor of the shifted Gram matrix, positive definite above its
    top eigenvalue): ``d sigma = y^T dM x`` as for the exact singular vectors, without the full eigendecomposition
    that eigvalsh's own backward pass needs."""
    if not w.requires_grad:
        return top.sqrt()
    q, c = shifts.shape[-1], w.shape[-2]
    with torch.no_grad():
        eye = torch.eye(q * c, dtype=g.dtype, device=g.device)
        shifted = (top * (1 + 1e-4) + 1e-30)[..., None, None] * eye - g
        solve = None
        if not g.is_cuda:  # on CUDA no host synchronisation (a captured CUDA graph): the LU factors
            factor, info = torch.linalg.cholesky_ex(shifted)
            if not bool((info != 0).any()):  # rounding at a degenerate top eigenvalue can fail it: LU then
                solve = lambda x: torch.cholesky_solve(x, factor)  # noqa: E731
        if solve is None:
            lu = torch.linalg.lu_factor(shifted)
            solve = lambda x: torch.linalg.lu_solve(*lu, x)  # noqa: E731
        x = torch.ones_like(g[..., :1])
        for _ in range(3):
            x = solve(x)
            x = x / x.norm(dim=-2, keepdim=True).clamp_min(1e-30)
    mx = torch.einsum("tij,...abt,...jb->...ia", shifts, w, x.reshape(*w.shape[:-3], q, c))
    rayleigh = mx.flatten(-2).norm(dim=-1)
    return top.sqrt() + rayleigh - rayleigh.detach()


def _exact_short(w: torch.Tensor) -> torch.Tensor:
    """Exact ``max_{2 <= n <= _TRANSITION + 2} ||K_n||_2`` for kernels ``(..., C, C, 3)``."""
    return torch.stack([_top_singular(_shifts(n, n, n, w.dtype, w.device), w)
                        for n in range(2, _TRANSITION + 3)], -1).amax(-1)


def _with_short_norms(w: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """``max(bound, max_{2 <= n <= _TRANSITION + 2} ||K_n||_2)`` for kernels ``(..., C, C, 3)``. Where the Cholesky
    factorisation of ``(1 - slack) bound^2 I - K_n^T K_n`` succeeds, that matrix is positive definite, so
    ``||K_n||_2 < bound`` (the slack covers the factorisation's rounding) and the bound stands for that length; the
    exact norm (:func:`_top_singular`) is computed only for the kernel sets and lengths where a factorisation fails.
    The value is that of the exact norms of every set and length, at a fraction of their cost."""
    if w.is_cuda:  # no data-dependent shapes (a captured CUDA graph): every exact norm, batched
        return torch.maximum(bound, _exact_short(w))
    flat, top = w.reshape(-1, *w.shape[-3:]), bound.reshape(-1)
    for n in range(2, _TRANSITION + 3):
        shifts = _shifts(n, n, n, w.dtype, w.device)
        with torch.no_grad():
            size = n * w.shape[-2]
            slack = 16 * size * torch.finfo(w.dtype).eps
            eye = torch.eye(size, dtype=w.dtype, device=w.device)
            shifted = ((1 - slack) * top.square())[:, None, None] * eye - _gram(shifts, flat)
            failed = (torch.linalg.cholesky_ex(shifted)[1] != 0).nonzero().squeeze(-1)
        if failed.numel():
            top = top.index_put((failed,), torch.maximum(top[failed], _top_singular(shifts, flat[failed])))
    return top.reshape(bound.shape)


def _window_norm(w: torch.Tensor, m: int) -> torch.Tensor:
    """``max(beta_L(m), beta_R(m))`` for kernels ``(..., C, C, 3)``: ``beta_L(m)`` is the norm of ``K`` restricted to
    signals supported on the first ``m`` samples of a signal of length ``n >= m + 2`` (rows ``0 ... m`` of its matrix;
    the same for every such ``n``), ``beta_R(m)`` the same at the last ``m`` samples (the mirrored kernel's
    ``beta_L``). Both sides' eigenvalues in one call; only the larger side is differentiated."""
    shifts = _shifts(m + 2, m + 1, m, w.dtype, w.device)
    sides = torch.stack([w, w.flip(-1)])
    with torch.no_grad():
        g = _gram(shifts, sides)
        top, side = torch.linalg.eigvalsh(g)[..., -1].clamp_min(0.0).max(dim=0)
        pick = lambda t: torch.take_along_dim(t, side.reshape(1, *side.shape, *[1] * (t.dim() - side.dim() - 1)), 0)[0]  # noqa: E731
        g = pick(g)
    return _differentiated(shifts, pick(sides), g, top)


def _transition_excess(w: torch.Tensor, r: int) -> torch.Tensor:
    """``||E||`` of the localisation formula (module docstring) for transitions over ``r`` samples:
    ``(pi / 2r)^2 ||A_1|| + (pi / r)^2 ||A_2||`` with the off-diagonal blocks ``A_1 = W_-1^T W_0 + W_0^T W_+1``
    and ``A_2 = W_-1^T W_+1`` of the interior of ``K^T K``."""
    wm, w0, wp = w[..., 0], w[..., 1], w[..., 2]
    tr = lambda m: m.transpose(-2, -1)  # noqa: E731
    a1 = tr(wm) @ w0 + tr(w0) @ wp
    a2 = tr(wm) @ wp
    h = math.pi / (2 * r)
    return h ** 2 * torch.linalg.matrix_norm(a1, 2) + (2 * h) ** 2 * torch.linalg.matrix_norm(a2, 2)


def localised_bound(w: torch.Tensor, peak: torch.Tensor | None = None,
                    corner: torch.Tensor | None = None) -> torch.Tensor:
    """``>= ||K_n||_2`` for every length ``n >= 2``, kernels ``(..., C, C, 3)``: the larger of the exact norms
    for ``n <= _TRANSITION + 2`` and ``sqrt(max(sigma*^2, beta_L^2, beta_R^2) + ||E||)`` for longer signals (partition
    of unity with transitions over ``_TRANSITION`` samples, boundary windows of ``_WINDOW``; module docstring).
    ``peak``: :func:`symbol_peak` of ``w`` where the caller has it; ``corner``: the provable rule's
    ``sigma*^2 + max(q_L, q_R)`` (valid from ``n = 4``), taken for the longer signals where it is smaller."""
    peak = symbol_peak(w) if peak is None else peak
    beta = _window_norm(w, _WINDOW)  # left and right boundary, one call
    long = torch.sqrt(torch.maximum(peak, beta) ** 2 + _transition_excess(w, _TRANSITION))
    if corner is not None:
        long = torch.minimum(long, torch.sqrt(corner))
    return _with_short_norms(w, long)


def paper_bound(w: torch.Tensor) -> torch.Tensor:
    """The paper's divisor per block (Sec. 3.3): ``sum_t |w_{a,b,t}| * sqrt(C)``, shaped ``(..., C, C)``;
    no bound on ``||K||_2`` (module docstring)."""
    return w.abs().sum(dim=-1) * math.sqrt(w.shape[-2])


def provable_bound(w: torch.Tensor, tight: bool = False) -> torch.Tensor:
    """``nu >= ||K||_2`` for every ``n >= 3``, one per kernel set ``(..., C, C, 3)``: the Schur bound, and for
    ``C > 1`` the smaller of it and :func:`fourier_bound` (rule ``provable``), and also of :func:`localised_bound`
    (``tight``: within 8 % of ``max_n ||K_n||_2``, about 2.4 times the cost)."""
    bound = norm_bound(w)
    if w.shape[-2] > 1 and tight:  # with the provable rule's bounds where they are smaller (difference-like kernels)
        peak = symbol_peak(w)
        local = localised_bound(w, peak, _corner_bound(w, peak))
        bound = torch.minimum(bound, torch.minimum(math.sqrt(2.0) * peak, local))
    elif w.shape[-2] > 1:
        bound = torch.minimum(bound, fourier_bound(w))
    return bound


def check_normalisation(rule: str) -> str:
    if rule not in NORMALISATIONS:
        raise ValueError(f"model.normalisation must be one of {list(NORMALISATIONS)}, got {rule!r}")
    return rule


def normalise(w: torch.Tensor, rule: str = "paper", eps: float = 1e-12) -> torch.Tensor:
    """Kernels ``(..., C, C, 3)`` rescaled set by set by the named rule of Sec. 3.3 (module docstring):
    ``paper``, each block by its absolute row sum and ``K`` by ``sqrt(C)``; ``provable`` and ``tight``, all
    kernels by a bound that guarantees ``||K||_2 <= 1`` (:func:`provable_bound`)."""
    if check_normalisation(rule) == "paper":
        return w / (paper_bound(w) + eps)[..., None]
    return w / (provable_bound(w, tight=rule == "tight") + eps)[..., None, None, None]
