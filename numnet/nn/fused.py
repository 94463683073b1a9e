r"""Fused CPU kernel for one-channel networks of the two-step form (Eq. 11, 20, 21 chained ``D`` times).

.. math:: u^{k+1} = a_k u^k - b_k K_k^\top \Phi(K_k u^k) + c_k u^{k-1}, \qquad u^{-1} := u^0,

covers the symmetric ResNet ``(1, tau, 0)``, Du Fort--Frankel (Eq. 20) and FSI (Eq. 21). The eager
PyTorch path spends its time in per-operation overhead (a block is about twenty small tensor
operations forward and forty backward); here the whole network is one autograd ``Function``
whose forward and backward are single numba-compiled loops over the signals, with gradients
derived by hand. With ``g = dL/du^{k+1}`` (total), ``s = K_k u^k`` and ``S_t`` the reflecting
shift by ``t - 1``:

.. math::
    \frac{\partial L}{\partial u^k} = a_k g - b_k K_k^\top\big(\Phi'(s) \odot K_k g\big)
        + c_{k+1} \frac{\partial L}{\partial u^{k+2}}, \quad
    \frac{\partial L}{\partial a_k} = \langle g, u^k\rangle, \quad
    \frac{\partial L}{\partial b_k} = -\langle g, K_k^\top \Phi(s)\rangle, \quad
    \frac{\partial L}{\partial c_k} = \langle g, u^{k-1}\rangle,

    \frac{\partial L}{\partial \lambda_k} = -b_k \langle K_k g, \partial_\lambda \Phi(s)\rangle, \quad
    \frac{\partial L}{\partial w_{k,t}} = -b_k\big(\langle S_t g, \Phi(s)\rangle
        + \langle K_k g \odot \Phi'(s), S_t u^k\rangle\big).

Only the states are kept for the backward pass (``D + 1`` signals); ``s``, ``Phi`` and ``K g`` are
recomputed on the fly. The tests compare values and gradients with the eager reference path.
"""
from __future__ import annotations

import numpy as np
import torch

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a declared dependency
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "FLUX_CODES", "fused_two_step"]

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
    def _forward(u0, kern, coef_a, coef_b, coef_c, lam, code, states):
        """u^{k+1} = a_k u^k - b_k K_k^T Phi(K_k u^k) + c_k u^{k-1}, with u^{-1} := u^0."""
        depth = kern.shape[0]
        rows, n = u0.shape
        s = np.empty(n, dtype=u0.dtype)
        phi = np.empty(n, dtype=u0.dtype)
        v = np.empty(n, dtype=u0.dtype)
        pad = np.empty(n + 2, dtype=u0.dtype)
        states[0] = u0
        for d in range(depth):
            k0, k1, k2, lm = kern[d, 0], kern[d, 1], kern[d, 2], lam[d]
            a, bb, c = coef_a[d], coef_b[d], coef_c[d]
            prev = d - 1 if d > 0 else 0
            for b in range(rows):
                u = states[d, b]
                up = states[prev, b]
                _stencil(u, k0, k1, k2, pad, s)
                for i in range(n):
                    phi[i] = _flux(s[i], lm, code)[0]
                _stencil_t(phi, k0, k1, k2, pad, v)
                out = states[d + 1, b]
                for i in range(n):
                    out[i] = a * u[i] - bb * v[i] + c * up[i]

    @_jit
    def _backward(states, kern, coef_a, coef_b, coef_c, lam, code, grad_out, g_kern, g_a, g_b, g_c, g_lam):
        depth = kern.shape[0]
        rows, n = grad_out.shape
        g = grad_out.copy()          # total dL/du^{d+1}
        g2 = np.zeros_like(g)        # part of dL/du^{d} that arrives through the c-term of block d+1
        s = np.empty(n, dtype=g.dtype)
        phi = np.empty(n, dtype=g.dtype)
        dphi = np.empty(n, dtype=g.dtype)
        kg = np.empty(n, dtype=g.dtype)
        w = np.empty(n, dtype=g.dtype)
        v = np.empty(n, dtype=g.dtype)
        pad = np.empty(n + 2, dtype=g.dtype)
        for d in range(depth - 1, -1, -1):
            k0, k1, k2, lm = kern[d, 0], kern[d, 1], kern[d, 2], lam[d]
            a, bb, c = coef_a[d], coef_b[d], coef_c[d]
            prev = d - 1 if d > 0 else 0
            acc_a = 0.0
            acc_b = 0.0
            acc_c = 0.0
            acc_lam = 0.0
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            for b in range(rows):
                u = states[d, b]
                up = states[prev, b]
                gb = g[b]
                _stencil(u, k0, k1, k2, pad, s)
                for i in range(n):
                    f, fp, fl = _flux(s[i], lm, code)
                    phi[i] = f
                    dphi[i] = fp
                    w[i] = fl
                _stencil(gb, k0, k1, k2, pad, kg)
                _stencil_t(phi, k0, k1, k2, pad, v)
                for i in range(n):
                    acc_a += gb[i] * u[i]
                    acc_b -= gb[i] * v[i]
                    acc_c += gb[i] * up[i]
                    acc_lam -= kg[i] * w[i]
                for i in range(n):
                    im = i - 1 if i > 0 else 0
                    ip = i + 1 if i < n - 1 else n - 1
                    kd = kg[i] * dphi[i]
                    a0 += gb[im] * phi[i] + kd * u[im]
                    a1 += gb[i] * phi[i] + kd * u[i]
                    a2 += gb[ip] * phi[i] + kd * u[ip]
                    w[i] = kd
                _stencil_t(w, k0, k1, k2, pad, v)
                # dL/du^d = a g - b K^T(Phi' . K g) + (c-term of block d+1, kept in g2); the c-term of
                # block d goes to u^{d-1} (to u^0 itself for d = 0, since u^{-1} := u^0)
                g2b = g2[b]
                for i in range(n):
                    new = a * gb[i] - bb * v[i] + g2b[i]
                    g2b[i] = c * gb[i]
                    gb[i] = new
            g_a[d] = acc_a
            g_b[d] = acc_b
            g_c[d] = acc_c
            g_lam[d] = bb * acc_lam
            g_kern[d, 0] = -bb * a0
            g_kern[d, 1] = -bb * a1
            g_kern[d, 2] = -bb * a2
        return g + g2

class _FusedTwoStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u0, kern, coef_a, coef_b, coef_c, lam, code):
        x = u0.detach().reshape(u0.shape[0], u0.shape[-1]).contiguous().numpy()
        dt = x.dtype
        arrs = [t.detach().numpy().astype(dt) for t in (kern, coef_a, coef_b, coef_c, lam)]
        states = np.empty((arrs[0].shape[0] + 1,) + x.shape, dtype=dt)
        _forward(x, *arrs, code, states)
        ctx.save_for_backward(kern, coef_a, coef_b, coef_c, lam)
        ctx.states, ctx.arrs, ctx.code = states, arrs, code
        return torch.from_numpy(states[-1].copy()).reshape(u0.shape)

    @staticmethod
    def backward(ctx, grad_out):
        kern, coef_a, coef_b, coef_c, lam = ctx.saved_tensors
        states = ctx.states
        dt = states.dtype
        go = grad_out.detach().reshape(states.shape[1], states.shape[2]).contiguous().numpy().astype(dt)
        depth = kern.shape[0]
        gk = np.zeros((depth, 3), dtype=np.float64)
        ga, gb, gc, gl = (np.zeros(depth, dtype=np.float64) for _ in range(4))
        gu = _backward(states, *ctx.arrs, ctx.code, go, gk, ga, gb, gc, gl)
        ctx.states = ctx.arrs = None
        to = lambda a, like: torch.from_numpy(a).to(like.dtype)  # noqa: E731
        return (to(gu, grad_out).reshape(grad_out.shape), to(gk, kern), to(ga, coef_a), to(gb, coef_b),
                to(gc, coef_c), to(gl, lam), None)


def fused_two_step(u0: torch.Tensor, kern: torch.Tensor, coef_a: torch.Tensor, coef_b: torch.Tensor,
                   coef_c: torch.Tensor, lam: torch.Tensor, activation: str) -> torch.Tensor:
    """``u^{k+1} = a_k u^k - b_k K_k^T Phi(K_k u^k) + c_k u^{k-1}`` (``u^{-1} := u^0``) for ``D`` blocks on
    ``u0`` (N, 1, n): the symmetric ResNet (1, tau, 0), Du Fort--Frankel (Eq. 20) and FSI (Eq. 21)."""
    if not HAVE_NUMBA:
        raise RuntimeError("the fused kernel needs numba")
    return _FusedTwoStep.apply(u0, kern, coef_a, coef_b, coef_c, lam, FLUX_CODES[activation])

