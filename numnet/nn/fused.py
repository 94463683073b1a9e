r"""Fused CPU kernel for the one-channel symmetric ResNet (Eq. 11 chained ``D`` times).

The eager PyTorch path spends its time in per-operation overhead: a diffusion block is about
twenty small tensor operations forward and forty backward. Here the whole network is one
autograd ``Function`` whose forward and backward are single numba-compiled loops over the
signals; the gradients are derived by hand:

.. math::
    u^{k+1} = u^k - \tau_k K_k^\top \Phi(s), \quad s = K_k u^k, \qquad
    \frac{\partial L}{\partial u^k} = g - \tau_k K_k^\top\big(\Phi'(s) \odot K_k g\big),

    \frac{\partial L}{\partial \tau_k} = -\langle g, K_k^\top \Phi(s)\rangle, \quad
    \frac{\partial L}{\partial \lambda_k} = -\tau_k \langle K_k g, \partial_\lambda \Phi(s)\rangle, \quad
    \frac{\partial L}{\partial w_{k,t}} = -\tau_k\big(\langle S_t g, \Phi(s)\rangle
        + \langle K_k g \odot \Phi'(s), S_t u^k\rangle\big),

with ``g = dL/du^{k+1}`` and ``S_t`` the reflecting shift by ``t - 1``. Only the states are kept
for the backward pass (``D + 1`` signals); ``s``, ``Phi`` and ``K g`` are recomputed on the fly.
The tests compare values and gradients with the eager reference path.
"""
from __future__ import annotations

import numpy as np
import torch

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a declared dependency
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "FLUX_CODES", "fused_symresnet"]

#: flux name -> code used inside the kernels
FLUX_CODES = {"relu": 0, "charbonnier": 1, "perona_malik": 2, "linear": 3}

if HAVE_NUMBA:
    _jit = numba.njit(cache=True, fastmath=True, nogil=True)

    @_jit
    def _flux(s, lam, code):
        """Returns (Phi, Phi', dPhi/dlambda)."""
        if code == 0:
            if s > 0:
                return s, 1.0, 0.0
            return 0.0, 0.0, 0.0
        if code == 3:
            return s, 1.0, 0.0
        q = s * s / (lam * lam)
        if code == 1:
            r = 1.0 / np.sqrt(1.0 + q)
            r3 = r * r * r
            return s * r, r3, q * s / lam * r3
        d = 1.0 / (1.0 + q)
        return s * d, (1.0 - q) * d * d, 2.0 * q * s / lam * d * d

    @_jit
    def _stencil(x, k0, k1, k2, pad, out):
        """out = K x with reflecting boundaries (pad: scratch of length n + 2)."""
        n = x.shape[0]
        pad[0] = x[0]
        pad[n + 1] = x[n - 1]
        for i in range(n):
            pad[i + 1] = x[i]
        for i in range(n):
            out[i] = k0 * pad[i] + k1 * pad[i + 1] + k2 * pad[i + 2]

    @_jit
    def _stencil_t(y, k0, k1, k2, pad, out):
        """out = K^T y: mirrored kernel on the zero-extended y plus the folded ghost terms."""
        n = y.shape[0]
        pad[0] = 0.0
        pad[n + 1] = 0.0
        for i in range(n):
            pad[i + 1] = y[i]
        for j in range(n):
            out[j] = k2 * pad[j] + k1 * pad[j + 1] + k0 * pad[j + 2]
        out[0] += k0 * y[0]
        out[n - 1] += k2 * y[n - 1]

    @_jit
    def _forward(u0, kern, tau, lam, code, states):
        depth = kern.shape[0]
        rows, n = u0.shape
        s = np.empty(n, dtype=u0.dtype)
        phi = np.empty(n, dtype=u0.dtype)
        v = np.empty(n, dtype=u0.dtype)
        pad = np.empty(n + 2, dtype=u0.dtype)
        states[0] = u0
        for d in range(depth):
            k0, k1, k2, t, lm = kern[d, 0], kern[d, 1], kern[d, 2], tau[d], lam[d]
            for b in range(rows):
                u = states[d, b]
                _stencil(u, k0, k1, k2, pad, s)
                for i in range(n):
                    phi[i] = _flux(s[i], lm, code)[0]
                _stencil_t(phi, k0, k1, k2, pad, v)
                out = states[d + 1, b]
                for i in range(n):
                    out[i] = u[i] - t * v[i]

    @_jit
    def _backward(states, kern, tau, lam, code, grad_out, g_kern, g_tau, g_lam):
        depth = kern.shape[0]
        rows, n = grad_out.shape
        g = grad_out.copy()
        s = np.empty(n, dtype=g.dtype)
        phi = np.empty(n, dtype=g.dtype)
        dphi = np.empty(n, dtype=g.dtype)
        kg = np.empty(n, dtype=g.dtype)
        w = np.empty(n, dtype=g.dtype)
        v = np.empty(n, dtype=g.dtype)
        pad = np.empty(n + 2, dtype=g.dtype)
        for d in range(depth - 1, -1, -1):
            k0, k1, k2, t, lm = kern[d, 0], kern[d, 1], kern[d, 2], tau[d], lam[d]
            acc_tau = 0.0
            acc_lam = 0.0
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            for b in range(rows):
                u = states[d, b]
                gb = g[b]
                _stencil(u, k0, k1, k2, pad, s)
                for i in range(n):
                    f, fp, fl = _flux(s[i], lm, code)
                    phi[i] = f
                    dphi[i] = fp
                    w[i] = fl  # dPhi/dlambda, reused below
                _stencil(gb, k0, k1, k2, pad, kg)
                _stencil_t(phi, k0, k1, k2, pad, v)
                for i in range(n):
                    acc_tau -= gb[i] * v[i]
                    acc_lam -= kg[i] * w[i]
                # <S_t g, phi> + <K g . Phi', S_t u> for the three taps (reflecting shifts)
                for i in range(n):
                    im = i - 1 if i > 0 else 0
                    ip = i + 1 if i < n - 1 else n - 1
                    kd = kg[i] * dphi[i]
                    a0 += gb[im] * phi[i] + kd * u[im]
                    a1 += gb[i] * phi[i] + kd * u[i]
                    a2 += gb[ip] * phi[i] + kd * u[ip]
                    w[i] = kd
                _stencil_t(w, k0, k1, k2, pad, v)
                for i in range(n):
                    gb[i] -= t * v[i]
            g_tau[d] = acc_tau
            g_lam[d] = t * acc_lam
            g_kern[d, 0] = -t * a0
            g_kern[d, 1] = -t * a1
            g_kern[d, 2] = -t * a2
        return g


class _FusedSymResNet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u0, kern, tau, lam, code):
        x = u0.detach().reshape(u0.shape[0], u0.shape[-1]).contiguous().numpy()
        kk = kern.detach().numpy().astype(x.dtype)
        tt = tau.detach().numpy().astype(x.dtype)
        ll = lam.detach().numpy().astype(x.dtype)
        states = np.empty((kk.shape[0] + 1,) + x.shape, dtype=x.dtype)
        _forward(x, kk, tt, ll, code, states)
        ctx.save_for_backward(kern, tau, lam)
        ctx.states, ctx.code = states, code
        return torch.from_numpy(states[-1].copy()).reshape(u0.shape)

    @staticmethod
    def backward(ctx, grad_out):
        kern, tau, lam = ctx.saved_tensors
        states = ctx.states
        dt = states.dtype
        go = grad_out.detach().reshape(states.shape[1], states.shape[2]).contiguous().numpy().astype(dt)
        gk = np.zeros((kern.shape[0], 3), dtype=np.float64)
        gt = np.zeros(kern.shape[0], dtype=np.float64)
        gl = np.zeros(kern.shape[0], dtype=np.float64)
        gu = _backward(states, kern.detach().numpy().astype(dt), tau.detach().numpy().astype(dt),
                       lam.detach().numpy().astype(dt), ctx.code, go, gk, gt, gl)
        ctx.states = None
        to = lambda a, like: torch.from_numpy(a).to(like.dtype)  # noqa: E731
        return to(gu, grad_out).reshape(grad_out.shape), to(gk, kern), to(gt, tau), to(gl, lam), None


def fused_symresnet(u0: torch.Tensor, kern: torch.Tensor, tau: torch.Tensor, lam: torch.Tensor,
                    activation: str) -> torch.Tensor:
    """``D`` diffusion blocks (Eq. 11) on ``u0`` (N, 1, n); ``kern`` (D, 3), ``tau`` and ``lam`` (D,)."""
    if not HAVE_NUMBA:
        raise RuntimeError("the fused kernel needs numba")
    return _FusedSymResNet.apply(u0, kern, tau, lam, FLUX_CODES[activation])
