r"""Fused CPU kernel for one-channel networks of the two-step form (Eq. 11, 20, 21 chained ``D`` times).

.. math:: u^{k+1} = a_k u^k - b_k K_k^\top \Phi(K_k u^k) + c_k u^{k-1}, \qquad u^{-1} := u^0,

covers the symmetric ResNet ``(1, tau, 0)``, Du Fort--Frankel (Eq. 20) and FSI (Eq. 21). The eager
PyTorch path spends its time in per-operation overhead (a block is about twenty small tensor
operations forward and forty backward); here the whole network, including the normalisation of
the kernels (Sec. 3.3), is one autograd ``Function`` whose forward and backward are single
numba-compiled calls with gradients derived by hand. With ``g = dL/du^{k+1}`` (total),
``s = K_k u^k`` and ``S_t`` the reflecting shift by ``t - 1``:

.. math::
    \frac{\partial L}{\partial u^k} = a_k g - b_k K_k^\top\big(\Phi'(s) \odot K_k g\big)
        + c_{k+1} \frac{\partial L}{\partial u^{k+2}}, \quad
    \frac{\partial L}{\partial a_k} = \langle g, u^k\rangle, \quad
    \frac{\partial L}{\partial b_k} = -\langle K_k g, \Phi(s)\rangle, \quad
    \frac{\partial L}{\partial c_k} = \langle g, u^{k-1}\rangle,

    \frac{\partial L}{\partial \lambda_k} = -b_k \langle K_k g, \partial_\lambda \Phi(s)\rangle, \quad
    \frac{\partial L}{\partial w_{k,t}} = -b_k\big(\langle S_t g, \Phi(s)\rangle
        + \langle K_k g \odot \Phi'(s), S_t u^k\rangle\big).

The kernels enter raw: ``w / (nu(w) + eps)`` is applied inside, with ``nu`` the paper's row sum
``sum_t |w_t|`` or the provable bound ``sqrt(R S)`` of :func:`numnet.nn.normalisation.norm_bound` (one channel:
:func:`numnet.nn.normalisation.normalise`), and its gradient is chained by hand (ties of the maxima split
the gradient in halves, as ``torch.maximum`` does).

Layout for speed: every loop over a signal has its two boundary samples peeled off, so the
interior loops are branch-free apart from the loop-invariant flux code and vectorise; each signal
runs through all blocks while it sits in the L1 cache. All kernels are module-level functions with
the flux code as an argument, so numba's on-disk cache serves every new process (closures
specialised per flux were recompiled in each process, about 10 s). Only the states are kept for
the backward pass (``D + 1`` signals); ``s``, ``Phi`` and ``K g`` are recomputed. The tests compare
values and gradients with the eager reference path.

Two entry points: :func:`fused_two_step`, an autograd ``Function`` of the coefficients (any
caller), and :class:`FusedStep`, a whole training step's loss and parameter gradients without
a graph: each signal goes forward through all blocks, into the MSE, and straight back while its
``D + 1`` states sit in the cache. The architecture enters as data: its coefficient map (``tau``,
``alpha`` from the unconstrained parameters, Eq. 14, 20, 21, 56), recorded once as a tape
(:mod:`numnet.nn.coefficients`), is evaluated per block and differentiated in reverse mode here,
so that no torch operation runs per step (a dozen small ones cost as much as the kernels
themselves on a two-core machine) and no engine knows the architectures.
"""
from __future__ import annotations

import math

import numpy as np
import torch

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a declared dependency
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "FLUX_CODES", "StepViews", "FusedStep", "fused_flux", "fused_two_step"]

#: flux name -> code of the kernel specialisation
FLUX_CODES = {"relu": 0, "charbonnier": 1, "perona_malik": 2, "linear": 3}
#: normalisation rule (:data:`numnet.nn.normalisation.NORMALISATIONS`) -> code of the kernel specialisation
NORM_CODES = {"paper": 0, "provable": 1, "tight": 1}  # one channel: both guaranteed rules take the Schur bound

#: ``eps`` of :func:`numnet.nn.normalisation.normalise`
_EPS = 1e-12

if HAVE_NUMBA:
    _jit = numba.njit(cache=True, fastmath=True, nogil=True, error_model="numpy")

    @_jit
    def _dmax(x, y):
        """Weights of ``max(x, y)``'s gradient on (x, y), ties split in halves like ``torch.maximum``."""
        if x > y:
            return 1.0, 0.0
        if x < y:
            return 0.0, 1.0
        return 0.5, 0.5

    @_jit
    def _normalise(w, idx, kern, nu, rule):
        """``kern[d] = w[idx[d]] / (nu + eps)`` for one-channel kernel sets ``w`` (S, 3): ``nu`` the row sum
        ``sum_t |w_t|`` (``rule`` 0, the paper's) or ``sqrt(R S)`` (``rule`` 1, the provable bound)."""
        for j in range(w.shape[0]):
            wm, w0, wp = w[j, 0], w[j, 1], w[j, 2]
            inner = abs(wm) + abs(w0) + abs(wp)
            if rule == 0:
                nu[j] = inner + _EPS
                continue
            row = max(inner, max(abs(wm + w0) + abs(wp), abs(wm) + abs(w0 + wp)))
            col = max(inner, max(abs(wm + w0) + abs(wm), abs(w0 + wp) + abs(wp)))
            nu[j] = math.sqrt(row * col) + _EPS
        for d in range(idx.shape[0]):
            j = idx[d]
            for t in range(3):
                kern[d, t] = w[j, t] / nu[j]

    @_jit
    def _normalise_backward(w, nu, g_kern, g_w, rule):
        """Chains ``g_kern`` (per set, w.r.t. the normalised kernels) back to the raw kernels."""
        for j in range(w.shape[0]):
            wm, w0, wp = w[j, 0], w[j, 1], w[j, 2]
            sm, s0, sp = np.sign(wm), np.sign(w0), np.sign(wp)
            if rule == 0:  # nu = |w_-1| + |w_0| + |w_+1|
                n = float(nu[j])
                dot = (g_kern[j, 0] * wm + g_kern[j, 1] * w0 + g_kern[j, 2] * wp) / (n * n)
                g_w[j, 0] = g_kern[j, 0] / n - dot * sm
                g_w[j, 1] = g_kern[j, 1] / n - dot * s0
                g_w[j, 2] = g_kern[j, 2] / n - dot * sp
                continue
            smo, sop = np.sign(wm + w0), np.sign(w0 + wp)
            inner = abs(wm) + abs(w0) + abs(wp)
            e1, e2 = abs(wm + w0) + abs(wp), abs(wm) + abs(w0 + wp)
            c1, c2 = abs(wm + w0) + abs(wm), abs(w0 + wp) + abs(wp)
            # d row / d w
            p_in, p_e = _dmax(inner, max(e1, e2))
            q1, q2 = _dmax(e1, e2)
            dr0 = p_in * sm + p_e * (q1 * smo + q2 * sm)
            dr1 = p_in * s0 + p_e * (q1 * smo + q2 * sop)
            dr2 = p_in * sp + p_e * (q1 * sp + q2 * sop)
            row = max(inner, max(e1, e2))
            # d col / d w
            p_in, p_c = _dmax(inner, max(c1, c2))
            q1, q2 = _dmax(c1, c2)
            dc0 = p_in * sm + p_c * q1 * (smo + sm)
            dc1 = p_in * s0 + p_c * (q1 * smo + q2 * sop)
            dc2 = p_in * sp + p_c * q2 * (sop + sp)
            col = max(inner, max(c1, c2))
            root = math.sqrt(row * col)
            n = float(nu[j])
            dot = (g_kern[j, 0] * wm + g_kern[j, 1] * w0 + g_kern[j, 2] * wp) / (n * n)
            scale = dot / (2.0 * root) if root > 0 else 0.0
            g_w[j, 0] = g_kern[j, 0] / n - scale * (col * dr0 + row * dc0)
            g_w[j, 1] = g_kern[j, 1] / n - scale * (col * dr1 + row * dc1)
            g_w[j, 2] = g_kern[j, 2] / n - scale * (col * dr2 + row * dc2)

    @_jit
    def _flux(s, lam, one, code):
        """``Phi(s)``."""
        if code == 0:
            return s if s > 0 else s - s
        if code == 3:
            return s
        q = s * s / (lam * lam)
        if code == 1:
            return s / np.sqrt(one + q)
        return s / (one + q)

    @_jit
    def _flux3(s, lam, one, code):
        """``(Phi(s), Phi'(s), dPhi/dlambda)``."""
        zero = s - s
        if code == 0:
            return (s, one, zero) if s > 0 else (zero, zero, zero)
        if code == 3:
            return s, one, zero
        q = s * s / (lam * lam)
        if code == 1:
            r = one / np.sqrt(one + q)
            r3 = r * r * r
            return s * r, r3, q * s / lam * r3
        d = one / (one + q)
        two = one + one
        return s * d, (one - q) * d * d, two * q * s / lam * d * d

    @_jit
    def _block_forward(u, up, out, phi, k0, k1, k2, lm, a, bb, c, one, code):
        """``out = a u - b K^T Phi(K u) + c up`` for one signal (``phi``: scratch)."""
        n = u.shape[0]
        phi[0] = _flux((k0 + k1) * u[0] + k2 * u[1], lm, one, code)
        for i in range(1, n - 1):
            phi[i] = _flux(k0 * u[i - 1] + k1 * u[i] + k2 * u[i + 1], lm, one, code)
        phi[n - 1] = _flux(k0 * u[n - 2] + (k1 + k2) * u[n - 1], lm, one, code)
        out[0] = a * u[0] - bb * ((k0 + k1) * phi[0] + k0 * phi[1]) + c * up[0]
        for i in range(1, n - 1):
            out[i] = a * u[i] - bb * (k2 * phi[i - 1] + k1 * phi[i] + k0 * phi[i + 1]) + c * up[i]
        out[n - 1] = a * u[n - 1] - bb * (k2 * phi[n - 2] + (k1 + k2) * phi[n - 1]) + c * up[n - 1]

    @_jit
    def _signal_forward(st, phi, kern, coef_a, coef_b, coef_c, lam, one, code):
        """``st[k+1] = a_k st[k] - b_k K_k^T Phi(K_k st[k]) + c_k st[k-1]`` for one signal through all blocks
        (``st``: (D + 1, n) with ``st[0]`` set; ``phi``: scratch)."""
        for d in range(kern.shape[0]):
            _block_forward(st[d], st[d - 1 if d > 0 else 0], st[d + 1], phi, kern[d, 0], kern[d, 1], kern[d, 2],
                           lam[d], coef_a[d], coef_b[d], coef_c[d], one, code)

    @_jit
    def _forward(u0, w, idx, coef_a, coef_b, coef_c, lam, states, code, rule):
        """``u^{k+1} = a_k u^k - b_k K_k^T Phi(K_k u^k) + c_k u^{k-1}`` (``u^{-1} := u^0``), signal by
        signal through all blocks; ``states[b, k]`` receives ``u^k`` of signal ``b``. Returns the
        normalised kernels (D, 3) and the bounds ``nu`` (S,)."""
        depth = idx.shape[0]
        rows, n = u0.shape
        dt = u0.dtype
        kern = np.empty((depth, 3), dtype=dt)
        nu = np.empty(w.shape[0], dtype=dt)
        _normalise(w, idx, kern, nu, rule)
        phi = np.empty(n, dtype=dt)
        one = dt.type(1.0)
        for b in range(rows):
            states[b, 0] = u0[b]
            _signal_forward(states[b], phi, kern, coef_a, coef_b, coef_c, lam, one, code)
        return kern, nu

    @_jit
    def _block_sums(u, up, g, kd, ph, k0, k1, k2, lm, one, code):
        """For one signal: ``kd = Phi'(s) . K g`` and ``ph = Phi(s)`` (``s = K u``) into scratch, and the
        sums ``<g, u>``, ``<Kg, Phi>``, ``<g, up>``, ``<Kg, dPhi/dlambda>`` and the three taps
        ``sum_i g[r(i+t)] Phi_i + kd_i u[r(i+t)]`` (``r`` the reflection). Two loops: one loop doing
        all of it does not vectorise."""
        n = u.shape[0]
        f, fp, fl = _flux3((k0 + k1) * u[0] + k2 * u[1], lm, one, code)
        kg = (k0 + k1) * g[0] + k2 * g[1]
        kd[0] = kg * fp
        ph[0] = f
        s_b = kg * f
        s_l = kg * fl
        f, fp, fl = _flux3(k0 * u[n - 2] + (k1 + k2) * u[n - 1], lm, one, code)
        kg = k0 * g[n - 2] + (k1 + k2) * g[n - 1]
        kd[n - 1] = kg * fp
        ph[n - 1] = f
        s_b += kg * f
        s_l += kg * fl
        for i in range(1, n - 1):
            f, fp, fl = _flux3(k0 * u[i - 1] + k1 * u[i] + k2 * u[i + 1], lm, one, code)
            kg = k0 * g[i - 1] + k1 * g[i] + k2 * g[i + 1]
            kd[i] = kg * fp
            ph[i] = f
            s_b += kg * f
            s_l += kg * fl
        s_a = g[0] * u[0] + g[n - 1] * u[n - 1]
        s_c = g[0] * up[0] + g[n - 1] * up[n - 1]
        s0 = g[0] * ph[0] + kd[0] * u[0] + g[n - 2] * ph[n - 1] + kd[n - 1] * u[n - 2]
        s1 = g[0] * ph[0] + kd[0] * u[0] + g[n - 1] * ph[n - 1] + kd[n - 1] * u[n - 1]
        s2 = g[1] * ph[0] + kd[0] * u[1] + g[n - 1] * ph[n - 1] + kd[n - 1] * u[n - 1]
        for i in range(1, n - 1):
            s_a += g[i] * u[i]
            s_c += g[i] * up[i]
            s0 += g[i - 1] * ph[i] + kd[i] * u[i - 1]
            s1 += g[i] * ph[i] + kd[i] * u[i]
            s2 += g[i + 1] * ph[i] + kd[i] * u[i + 1]
        return s_a, s_b, s_c, s_l, s0, s1, s2

    @_jit
    def _signal_backward(st, g, g2, kd, ph, kern, coef_a, coef_b, coef_c, lam, acc, one, code):
        """Reverse pass of one signal: ``g`` holds ``dL/du^D`` on entry and ``dL/du^0`` on exit; the block
        sums are added to ``acc`` (D, 7). (The split into ``_block_sums`` and the update loop here is
        what lets LLVM vectorise all three loops; measured, not obvious.)"""
        n = g.shape[0]
        for i in range(n):
            g2[i] = 0
        for d in range(kern.shape[0] - 1, -1, -1):
            k0, k1, k2 = kern[d, 0], kern[d, 1], kern[d, 2]
            s_a, s_b, s_c, s_l, s0, s1, s2 = _block_sums(st[d], st[d - 1 if d > 0 else 0], g, kd, ph,
                                                        k0, k1, k2, lam[d], one, code)
            acc[d, 0] += s_a
            acc[d, 1] -= s_b
            acc[d, 2] += s_c
            acc[d, 3] -= s_l
            acc[d, 4] += s0
            acc[d, 5] += s1
            acc[d, 6] += s2
            # dL/du^d = a g - b K^T(Phi' . K g) + (c-term of block d+1, kept in g2); the c-term
            # of block d goes to u^{d-1} (to u^0 itself for d = 0, since u^{-1} := u^0)
            a, bb, c = coef_a[d], coef_b[d], coef_c[d]
            first = a * g[0] - bb * ((k0 + k1) * kd[0] + k0 * kd[1]) + g2[0]
            last = a * g[n - 1] - bb * (k2 * kd[n - 2] + (k1 + k2) * kd[n - 1]) + g2[n - 1]
            g2[0] = c * g[0]
            g2[n - 1] = c * g[n - 1]
            for i in range(1, n - 1):
                new = a * g[i] - bb * (k2 * kd[i - 1] + k1 * kd[i] + k0 * kd[i + 1]) + g2[i]
                g2[i] = c * g[i]
                g[i] = new
            g[0] = first
            g[n - 1] = last
        for i in range(n):
            g[i] += g2[i]

    @_jit
    def _kernel_grads(w, idx, nu, coef_b, acc, g_w, rule, g_kern):
        """Gradient w.r.t. the raw kernel sets from the tap sums ``acc[:, 4:7]``, into ``g_w`` (S, 3);
        ``g_kern`` (S, 3) holds a gradient w.r.t. the normalised kernels to add (zeros: none)."""
        for d in range(idx.shape[0]):
            for t in range(3):
                g_kern[idx[d], t] -= coef_b[d] * acc[d, 4 + t]
        _normalise_backward(w, nu, g_kern, g_w, rule)

    @_jit
    def _smooth(theta, g, weight):
        """Eq. (27)'s sum ``sum_{k >= 1} weight_k ||theta_k - theta_{k-1}||^2`` over the rows of ``theta``
        (S, P); its gradient is added to ``g`` (S, P)."""
        value = 0.0
        for k in range(1, theta.shape[0]):
            for p in range(theta.shape[1]):
                diff = float(theta[k, p]) - float(theta[k - 1, p])
                value += weight[k] * diff * diff
                g[k, p] += 2.0 * weight[k] * diff
                g[k - 1, p] -= 2.0 * weight[k] * diff
        return value

    @_jit
    def _backward(states, w, idx, kern, nu, coef_a, coef_b, coef_c, lam, grad_out, code, rule):
        """Gradients w.r.t. ``u^0``, the raw kernel sets ``w``, ``a``, ``b``, ``c`` and ``lambda``, signal
        by signal through the blocks in reverse."""
        depth = idx.shape[0]
        rows, n = grad_out.shape
        dt = grad_out.dtype
        one = dt.type(1.0)
        acc = np.zeros((depth, 7))      # <g,u>, -<Kg,Phi>, <g,u^{k-1}>, -<Kg,dPhi/dlam>, three taps
        grad_in = np.empty_like(grad_out)
        g = np.empty(n, dtype=dt)       # total dL/du^{d+1}
        g2 = np.empty(n, dtype=dt)      # part of dL/du^{d} that arrives through the c-term of block d+1
        kd = np.empty(n, dtype=dt)      # Phi'(s) . K g
        ph = np.empty(n, dtype=dt)      # Phi(s)
        for b in range(rows):
            g[:] = grad_out[b]
            _signal_backward(states[b], g, g2, kd, ph, kern, coef_a, coef_b, coef_c, lam, acc, one, code)
            grad_in[b] = g
        g_w = np.empty_like(w)
        _kernel_grads(w, idx, nu, coef_b, acc, g_w, rule, np.zeros((w.shape[0], 3)))
        g_a = np.empty_like(coef_a)
        g_b = np.empty_like(coef_b)
        g_c = np.empty_like(coef_c)
        g_lam = np.empty_like(lam)
        for d in range(depth):
            g_a[d] = acc[d, 0]
            g_b[d] = acc[d, 1]
            g_c[d] = acc[d, 2]
            g_lam[d] = coef_b[d] * acc[d, 3]
        return grad_in, g_w, g_a, g_b, g_c, g_lam

    @_jit
    def _sigmoid(x):
        return 1.0 / (1.0 + math.exp(-x))

    @_jit
    def _tape_forward(op, args, val, t_raw, a_raw, idx, aidx, reg):
        """The registers ``reg[d]`` (D, R) of a coefficient tape (:class:`numnet.nn.coefficients.Tape`, opcodes
        :data:`numnet.nn.coefficients.OPS`) for every block ``d``, whose raw parameters are ``t = t_raw[idx[d]]``
        and ``r = a_raw[aidx[d]]``; ``softplus`` as torch computes it (linear above 20)."""
        for d in range(reg.shape[0]):
            for k in range(op.shape[0]):
                o = op[k]
                i, j = max(args[k, 0], 0), max(args[k, 1], 0)
                x, y = reg[d, i], reg[d, j]
                if o == 0:
                    v = val[k]
                elif o == 1:
                    v = float(t_raw[idx[d]])
                elif o == 2:
                    v = float(a_raw[aidx[d]])
                elif o == 3:
                    v = x + y
                elif o == 4:
                    v = x - y
                elif o == 5:
                    v = x * y
                elif o == 6:
                    v = x / y
                elif o == 7:
                    v = _sigmoid(x)
                elif o == 8:
                    v = x if x > 20.0 else math.log1p(math.exp(x))
                else:
                    v = math.exp(x)
                reg[d, k] = v

    @_jit
    def _tape_backward(op, args, reg, adj, idx, aidx, g_t, g_a):
        """Reverse mode through the tape of :func:`_tape_forward`: ``adj`` (D, R) holds the gradients w.r.t. the
        output registers on entry; the raw parameters' gradients are added to ``g_t[idx[d]]`` and ``g_a[aidx[d]]``."""
        for d in range(reg.shape[0]):
            for k in range(op.shape[0] - 1, -1, -1):
                g = adj[d, k]
                if g == 0.0:
                    continue
                o = op[k]
                i, j = max(args[k, 0], 0), max(args[k, 1], 0)
                if o == 1:
                    g_t[idx[d]] += g
                elif o == 2:
                    g_a[aidx[d]] += g
                elif o == 3:
                    adj[d, i] += g
                    adj[d, j] += g
                elif o == 4:
                    adj[d, i] += g
                    adj[d, j] -= g
                elif o == 5:
                    adj[d, i] += g * reg[d, j]
                    adj[d, j] += g * reg[d, i]
                elif o == 6:
                    adj[d, i] += g / reg[d, j]
                    adj[d, j] -= g * reg[d, k] / reg[d, j]
                elif o == 7:
                    adj[d, i] += g * reg[d, k] * (1.0 - reg[d, k])
                elif o == 8:
                    adj[d, i] += g if reg[d, i] > 20.0 else g * _sigmoid(reg[d, i])
                elif o == 9:
                    adj[d, i] += g * reg[d, k]

    @_jit
    def _residual(out, y, g, two):
        """``g = two (out - y)`` (the MSE's gradient) for one signal; returns ``sum (out - y)^2`` (summed in
        the signals' precision)."""
        part = out[0] - out[0]
        for i in range(out.shape[0]):
            r = out[i] - y[i]
            part += r * r
            g[i] = two * r
        return part

    @_jit
    def _mse_grads(x, y, w, idx, aidx, t_raw, a_raw, log_lam, has_lam, op, args, val, out, code, rule, beta, g_w,
                   g_t, g_a, g_l, accumulate):
        """One training step's loss and gradients without a graph: ``sum (net(x) - y)^2`` and the gradients
        of the mean ``sum / x.size`` w.r.t. the raw kernels ``w`` (S, 3), ``t_raw``, ``a_raw`` and ``log_lam``,
        added to ``g_w``, ``g_t``, ``g_a`` and ``g_l`` (written over them unless ``accumulate``); returns the
        mean. The blocks' coefficients come from the architecture's tape (``op``, ``args``, ``val``, output
        registers ``out`` of ``a, b, c, tau``), evaluated per block and differentiated in reverse mode. With
        ``beta > 0`` (own weights per block, ``S = D``) the gradient of Eq. (27)'s regulariser
        ``beta sum_k ||theta_k - theta_{k-1}||^2 / tau_k`` (normalised kernels and log lambda; ``tau``
        held fixed) is added too. Each signal runs forward through all blocks and straight back while its
        states sit in the cache."""
        rows, n = x.shape
        depth = idx.shape[0]
        dt = x.dtype
        one = dt.type(1.0)
        reg = np.zeros((depth, op.shape[0]))
        _tape_forward(op, args, val, t_raw, a_raw, idx, aidx, reg)
        ca, cb, cc, lam = (np.empty(depth, dtype=dt), np.empty(depth, dtype=dt), np.empty(depth, dtype=dt),
                           np.empty(depth, dtype=dt))
        lam64 = np.ones(depth)
        for d in range(depth):
            ca[d], cb[d], cc[d] = reg[d, out[0]], reg[d, out[1]], reg[d, out[2]]
            if has_lam:
                lam64[d] = math.exp(float(log_lam[idx[d]]))
            lam[d] = lam64[d]
        kern = np.empty((depth, 3), dtype=dt)
        nu = np.empty(w.shape[0], dtype=dt)
        _normalise(w, idx, kern, nu, rule)
        st = np.empty((depth + 1, n), dtype=dt)
        g = np.empty(n, dtype=dt)
        g2 = np.empty(n, dtype=dt)
        kd = np.empty(n, dtype=dt)
        ph = np.empty(n, dtype=dt)
        acc = np.zeros((depth, 7))
        sq = 0.0
        two = dt.type(2.0 / (rows * n))  # d mean / d residual = 2 r / size, as torch's mse_loss backward
        for b in range(rows):
            st[0] = x[b]
            _signal_forward(st, ph, kern, ca, cb, cc, lam, one, code)
            sq += _residual(st[depth], y[b], g, two)
            _signal_backward(st, g, g2, kd, ph, kern, ca, cb, cc, lam, acc, one, code)
        if not accumulate:
            g_w[:] = 0
            g_t[:] = 0
            g_a[:] = 0
            g_l[:] = 0
        gk = np.empty((w.shape[0], 3), dtype=g_w.dtype)
        g_kern = np.zeros((w.shape[0], 3))
        g_reg = np.zeros((depth, 1))
        if beta > 0:  # Eq. (27): blocks and weight sets coincide (own weights)
            weight = np.empty(depth)
            for d in range(depth):
                weight[d] = beta / reg[d, out[3]]
            _smooth(kern, g_kern, weight)
            if has_lam:
                _smooth(log_lam.reshape(depth, 1), g_reg, weight)
        _kernel_grads(w, idx, nu, cb, acc, gk, rule, g_kern)
        for j in range(w.shape[0]):
            for t in range(3):
                g_w[j, t] += gk[j, t]
        adj = np.zeros((depth, op.shape[0]))
        for d in range(depth):
            adj[d, out[0]] += acc[d, 0]
            adj[d, out[1]] += acc[d, 1]
            adj[d, out[2]] += acc[d, 2]
            if has_lam:
                g_l[idx[d]] += reg[d, out[1]] * acc[d, 3] * lam64[d] + g_reg[d, 0]  # dL/dlambda dlambda/dlog_lambda
        _tape_backward(op, args, reg, adj, idx, aidx, g_t, g_a)
        return sq / (rows * n)

    @_jit
    def _map_forward(s, lam, out, code):
        """``out = Phi(s)`` elementwise on flat arrays."""
        one = s.dtype.type(1.0)
        for i in range(s.shape[0]):
            out[i] = _flux(s[i], lam, one, code)

    @_jit
    def _map_backward(s, lam, g, out, code):
        """``out = g Phi'(s)`` elementwise; returns ``sum g dPhi/dlambda``."""
        one = s.dtype.type(1.0)
        acc = s[0] - s[0]
        for i in range(s.shape[0]):
            f, fp, fl = _flux3(s[i], lam, one, code)
            out[i] = g[i] * fp
            acc += g[i] * fl
        return acc


    # -- the one-channel ResNet (Eq. 6 chained; numnet.nn.fused_resnet.FusedResNetStep) ----------------------
    # Kept in this file: numba's on-disk cache tracks only the file that defines a function, so a kernel
    # that calls kernels of another file could run a stale copy of them after that file changed.

    @_jit
    def _resnet_forward(st, h, w1, w2, b1, b2, idx, lam, one, code):
        """``st[k+1] = st[k] + K_2 Phi(K_1 st[k] + b_1) + b_2`` through all blocks (``h``: scratch)."""
        n = st.shape[1]
        for d in range(idx.shape[0]):
            j = idx[d]
            u, out = st[d], st[d + 1]
            ka, kb, kc, c1, lm = w1[j, 0], w1[j, 1], w1[j, 2], b1[j], lam[j]
            h[0] = _flux((ka + kb) * u[0] + kc * u[1] + c1, lm, one, code)
            for i in range(1, n - 1):
                h[i] = _flux(ka * u[i - 1] + kb * u[i] + kc * u[i + 1] + c1, lm, one, code)
            h[n - 1] = _flux(ka * u[n - 2] + (kb + kc) * u[n - 1] + c1, lm, one, code)
            ka, kb, kc, c2 = w2[j, 0], w2[j, 1], w2[j, 2], b2[j]
            out[0] = u[0] + (ka + kb) * h[0] + kc * h[1] + c2
            for i in range(1, n - 1):
                out[i] = u[i] + ka * h[i - 1] + kb * h[i] + kc * h[i + 1] + c2
            out[n - 1] = u[n - 1] + ka * h[n - 2] + (kb + kc) * h[n - 1] + c2

    @_jit
    def _resnet_sums(u, g, h, q, ka, kb, kc, c1, ma, mb, mc, lm, one, code):
        """For one block of one signal: ``h = Phi(s)`` and ``q = Phi'(s) (K_2^T g)`` (``s = K_1 u + b_1``) into
        scratch, and the sums of the gradient: the taps ``sum_i q_i u_r(i+t-1)`` and ``sum_i g_i h_r(i+t-1)``,
        ``sum q``, ``sum g`` and ``<K_2^T g, dPhi/dlambda>``. Boundary samples are peeled off so that the
        interior loops are branch-free and vectorise."""
        n = u.shape[0]
        f, fp, fl = _flux3((ka + kb) * u[0] + kc * u[1] + c1, lm, one, code)
        kg = (ma + mb) * g[0] + ma * g[1]  # K_2^T g: mirrored kernel, ghost entries folded back
        h[0] = f
        q[0] = kg * fp
        s_l = kg * fl
        f, fp, fl = _flux3(ka * u[n - 2] + (kb + kc) * u[n - 1] + c1, lm, one, code)
        kg = mc * g[n - 2] + (mb + mc) * g[n - 1]
        h[n - 1] = f
        q[n - 1] = kg * fp
        s_l += kg * fl
        for i in range(1, n - 1):
            f, fp, fl = _flux3(ka * u[i - 1] + kb * u[i] + kc * u[i + 1] + c1, lm, one, code)
            kg = mc * g[i - 1] + mb * g[i] + ma * g[i + 1]
            h[i] = f
            q[i] = kg * fp
            s_l += kg * fl
        s_b1 = q[0] + q[n - 1]
        s_b2 = g[0] + g[n - 1]
        t0 = g[0] * h[0] + g[n - 1] * h[n - 2]
        t1 = g[0] * h[0] + g[n - 1] * h[n - 1]
        t2 = g[0] * h[1] + g[n - 1] * h[n - 1]
        v0 = q[0] * u[0] + q[n - 1] * u[n - 2]
        v1 = q[0] * u[0] + q[n - 1] * u[n - 1]
        v2 = q[0] * u[1] + q[n - 1] * u[n - 1]
        for i in range(1, n - 1):
            s_b1 += q[i]
            s_b2 += g[i]
            t0 += g[i] * h[i - 1]
            t1 += g[i] * h[i]
            t2 += g[i] * h[i + 1]
            v0 += q[i] * u[i - 1]
            v1 += q[i] * u[i]
            v2 += q[i] * u[i + 1]
        return v0, v1, v2, t0, t1, t2, s_b1, s_b2, s_l

    @_jit
    def _resnet_backward(st, g, h, q, w1, w2, b1, b2, idx, lam, acc, one, code):
        """Reverse pass of one signal: ``g`` holds ``dL/du^D`` on entry and ``dL/du^0`` on exit; per block the
        sums of :func:`_resnet_sums` are added to ``acc`` (D, 9)."""
        n = g.shape[0]
        for d in range(idx.shape[0] - 1, -1, -1):
            j = idx[d]
            ka, kb, kc = w1[j, 0], w1[j, 1], w1[j, 2]
            sums = _resnet_sums(st[d], g, h, q, ka, kb, kc, b1[j], w2[j, 0], w2[j, 1], w2[j, 2], lam[j], one, code)
            for t in range(9):
                acc[d, t] += sums[t]
            # dL/du^d = g + K_1^T q
            first = g[0] + (ka + kb) * q[0] + ka * q[1]
            last = g[n - 1] + kc * q[n - 2] + (kb + kc) * q[n - 1]
            for i in range(1, n - 1):
                g[i] += kc * q[i - 1] + kb * q[i] + ka * q[i + 1]
            g[0] = first
            g[n - 1] = last

    @_jit
    def _resnet_mse_grads(x, y, w1, w2, b1, b2, idx, log_lam, code, beta, g_w1, g_w2, g_b1, g_b2, g_l, accumulate):
        """``mean (net(x) - y)^2`` and its gradients w.r.t. the kernel sets ``w1``, ``w2`` (S, 3), the biases
        ``b1``, ``b2`` (S,) and ``log lambda`` (S,), added to ``g_*`` (written over them unless
        ``accumulate``; ``g_l`` is always written over). With ``beta > 0`` (own weights, ``S = D``) the gradient of Eq. (27)'s regulariser
        with the fixed steps ``tau = 1 / D`` (Sec. 7.1.4) is added too."""
        rows, n = x.shape
        depth = idx.shape[0]
        dt = x.dtype
        one = dt.type(1.0)
        lam = np.exp(log_lam).astype(dt)
        st = np.empty((depth + 1, n), dtype=dt)
        g = np.empty(n, dtype=dt)
        h = np.empty(n, dtype=dt)
        q = np.empty(n, dtype=dt)
        acc = np.zeros((depth, 9))
        sq = 0.0
        two = dt.type(2.0 / (rows * n))  # d mean / d residual = 2 r / size, as torch's mse_loss backward
        for b in range(rows):
            st[0] = x[b]
            _resnet_forward(st, h, w1, w2, b1, b2, idx, lam, one, code)
            sq += _residual(st[depth], y[b], g, two)
            _resnet_backward(st, g, h, q, w1, w2, b1, b2, idx, lam, acc, one, code)
        if not accumulate:
            g_w1[:] = 0
            g_w2[:] = 0
            g_b1[:] = 0
            g_b2[:] = 0
        g_l[:] = 0  # written over always: the caller adds it to the contrast parameters' gradients
        for d in range(depth):
            j = idx[d]
            for t in range(3):
                g_w1[j, t] += acc[d, t]
                g_w2[j, t] += acc[d, 3 + t]
            g_b1[j] += acc[d, 6]
            g_b2[j] += acc[d, 7]
            g_l[j] += acc[d, 8] * lam[j]  # dL/dlambda dlambda/dlog_lambda
        if beta > 0:  # Eq. (27) on the raw weights and log lambda, tau_k = 1 / D
            weight = np.full(depth, beta * depth)
            _smooth(w1, g_w1, weight)
            _smooth(w2, g_w2, weight)
            _smooth(b1.reshape(depth, 1), g_b1.reshape(depth, 1), weight)
            _smooth(b2.reshape(depth, 1), g_b2.reshape(depth, 1), weight)
            _smooth(log_lam.reshape(depth, 1), g_l.reshape(depth, 1), weight)
        return sq / (rows * n)


def _numpy(t: torch.Tensor, dt) -> np.ndarray:
    a = t.detach().contiguous().numpy()
    return a if a.dtype == dt else a.astype(dt)


class _FusedTwoStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u0, w, idx, coef_a, coef_b, coef_c, lam, code, rule):
        x = u0.detach().reshape(u0.shape[0], u0.shape[-1]).contiguous().numpy()
        dt = x.dtype
        arrs = (_numpy(w, dt).reshape(-1, 3), idx) + tuple(_numpy(t, dt) for t in (coef_a, coef_b, coef_c, lam))
        states = np.empty((x.shape[0], idx.shape[0] + 1, x.shape[1]), dtype=dt)
        kern, nu = _forward(x, *arrs, states, code, rule)
        ctx.save_for_backward(w, coef_a, coef_b, coef_c, lam)
        ctx.states, ctx.arrs, ctx.code, ctx.rule, ctx.kern, ctx.nu = states, arrs, code, rule, kern, nu
        return torch.from_numpy(states[:, -1].copy()).reshape(u0.shape)

    @staticmethod
    def backward(ctx, grad_out):
        w, coef_a, coef_b, coef_c, lam = ctx.saved_tensors
        states = ctx.states
        go = _numpy(grad_out.reshape(states.shape[0], states.shape[2]), states.dtype)
        w_np, idx, a, b, c, lm = ctx.arrs
        grads = _backward(states, w_np, idx, ctx.kern, ctx.nu, a, b, c, lm, go, ctx.code, ctx.rule)
        ctx.states = ctx.arrs = ctx.kern = ctx.nu = None
        gu, g_w, g_a, g_b, g_c, g_lam = (torch.from_numpy(x) for x in grads)
        return (gu.to(grad_out.dtype).reshape(grad_out.shape), g_w.to(w.dtype).reshape(w.shape), None,
                g_a.to(coef_a.dtype), g_b.to(coef_b.dtype), g_c.to(coef_c.dtype), g_lam.to(lam.dtype), None, None)


def fused_two_step(u0: torch.Tensor, w: torch.Tensor, idx: np.ndarray, coef_a: torch.Tensor, coef_b: torch.Tensor,
                   coef_c: torch.Tensor, lam: torch.Tensor, activation: str, normalisation: str = "paper") -> torch.Tensor:
    """``u^{k+1} = a_k u^k - b_k K_k^T Phi(K_k u^k) + c_k u^{k-1}`` (``u^{-1} := u^0``) for ``D`` blocks on
    ``u0`` (N, 1, n), ``n >= 3``: the symmetric ResNet (1, tau, 0), Du Fort--Frankel (Eq. 20) and FSI
    (Eq. 21). ``w`` holds the raw one-channel kernel sets (S, ..., 3); block ``k`` applies set
    ``idx[k]``, normalised as :func:`numnet.nn.normalisation.normalise` does by the rule ``normalisation``."""
    if not HAVE_NUMBA:
        raise RuntimeError("the fused kernel needs numba")
    if u0.shape[-1] < 3:
        raise ValueError(f"the fused kernel needs signals of length >= 3, got {u0.shape[-1]}")
    return _FusedTwoStep.apply(u0, w, idx, coef_a, coef_b, coef_c, lam, FLUX_CODES[activation],
                               NORM_CODES[normalisation])


class StepViews:
    """What the compiled training steps share: NumPy views of a network's parameters and their gradients,
    made once (each torch call costs microseconds, and a step is a few hundred), and the check that they
    still show the tensors (:meth:`valid`: false after ``zero_grad(set_to_none=True)`` or ``.to()``)."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors
        for p in self.tensors:
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)
        self.key = self._key()

    def _key(self) -> tuple:
        return tuple((p.data_ptr(), None if p.grad is None else p.grad.data_ptr()) for p in self.tensors)

    def valid(self) -> bool:
        """Whether the views still show the parameters and gradients (no tensor was replaced)."""
        return self._key() == self.key

    @staticmethod
    def signals(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Input and target shaped (N, 1, n >= 3) alike, as (N, n) arrays."""
        if x.shape != y.shape or x.dim() != 3 or x.shape[1] != 1 or x.shape[-1] < 3:
            raise ValueError(f"expected input and target shaped (N, 1, n >= 3) alike, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        xs = x.detach().numpy().reshape(x.shape[0], x.shape[-1])
        return xs, y.detach().numpy().reshape(xs.shape)


class FusedStep(StepViews):
    """The training step of :func:`_mse_grads` for one network: MSE of the two-step network whose
    coefficient map is ``tape`` (:func:`numnet.nn.coefficients.record`) and the gradients of its raw
    parameters, in one compiled call without an autograd graph. The parameters: the kernel sets ``w`` (S, ..., 3) and time-step parameters
    ``t_raw`` (S,) indexed by ``idx`` (D,), the extrapolation parameters ``a_raw`` indexed by ``aidx``
    (``None`` where the map reads none) and the contrast parameters ``log_lams`` (one 0-d tensor per
    set; ``None`` for fluxes without one). ``beta > 0`` (own weights) adds the gradient of Eq. (27)'s
    regulariser. NumPy views of the parameters and of their ``.grad`` are made once (each torch call
    costs microseconds, and a step is a few hundred); :meth:`valid` tells when a tensor was replaced
    (``zero_grad(set_to_none=True)``, ``.to()``) and the views are stale."""

    def __init__(self, w, t_raw, a_raw, log_lams, idx, aidx, activation: str, tape,
                 normalisation: str = "paper", beta: float = 0.0) -> None:
        if not HAVE_NUMBA:
            raise RuntimeError("the fused kernel needs numba")
        super().__init__([w, t_raw] + ([] if a_raw is None else [a_raw]) + list(log_lams or []))
        grad = lambda p: p.grad.numpy() if p.requires_grad else np.zeros(tuple(p.shape), dtype=p.detach().numpy().dtype)
        none = np.zeros(1, dtype=w.detach().numpy().dtype)
        self.idx, self.aidx = idx, aidx
        if beta > 0 and (w.shape[0] != len(idx) or len(idx) < 2):
            raise ValueError("Eq. (27)'s regulariser needs own weights per block and at least two blocks")
        if tape.uses_r and a_raw is None:
            raise ValueError("the coefficient map reads an extrapolation parameter the network does not have")
        self.codes = (tape.op, tape.args, tape.val, tape.out, FLUX_CODES[activation], NORM_CODES[normalisation],
                      float(beta))
        self.w, self.g_w = w.detach().numpy().reshape(-1, 3), grad(w).reshape(-1, 3)
        self.t, self.g_t = t_raw.detach().numpy(), grad(t_raw)
        self.a, self.g_a = (none, none.copy()) if a_raw is None else (a_raw.detach().numpy(), grad(a_raw))
        self.lams = [p.detach().numpy() for p in log_lams or []]
        self.g_lams = [grad(p) for p in log_lams or []]
        self.has_lam = bool(self.lams)
        self.lam_scratch = np.zeros(max(len(self.lams), 1))
        self.g_lam = self.g_lams[0].reshape(1) if len(self.lams) == 1 else np.zeros(max(len(self.lams), 1))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, accumulate: bool = True) -> float:
        """MSE of the network on ``x`` (N, 1, n >= 3) against ``y``; its gradients are added to ``.grad``
        (``accumulate``) or written over it."""
        xs, ys = self.signals(x, y)
        if len(self.lams) == 1:
            lam = self.lams[0].reshape(1)
        else:
            lam = self.lam_scratch
            for j, v in enumerate(self.lams):
                lam[j] = v
        several = len(self.lams) > 1
        if several:
            self.g_lam[:] = 0  # scratch: added to the per-set gradients below
        loss = _mse_grads(xs, ys, self.w, self.idx, self.aidx, self.t, self.a, lam, self.has_lam, *self.codes,
                          self.g_w, self.g_t, self.g_a, self.g_lam, accumulate)
        if several:
            for j, g in enumerate(self.g_lams):
                g[...] = g + self.g_lam[j] if accumulate else self.g_lam[j]
        return float(loss)


class _FusedFlux(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, lam, code):
        x = s.detach().contiguous()
        flat = x.numpy().reshape(-1)
        lam_v = flat.dtype.type(float(lam))
        out = np.empty_like(flat)
        _map_forward(flat, lam_v, out, code)
        ctx.save_for_backward(x, lam)
        ctx.code, ctx.lam_v = code, lam_v
        return torch.from_numpy(out).reshape(s.shape)

    @staticmethod
    def backward(ctx, grad_out):
        x, lam = ctx.saved_tensors
        flat = x.numpy().reshape(-1)
        g = _numpy(grad_out, flat.dtype).reshape(-1)
        out = np.empty_like(flat)
        dlam = _map_backward(flat, ctx.lam_v, g, out, ctx.code)
        return torch.from_numpy(out).reshape(x.shape), torch.tensor(float(dlam), dtype=lam.dtype), None


def fused_flux(s: torch.Tensor, lam: torch.Tensor, activation: str) -> torch.Tensor:
    """``Phi(s)`` of a contrast flux (Charbonnier, Perona--Malik) in one compiled pass forward and one
    backward (the eager formula is four operations forward and about ten backward over the tensor)."""
    return _FusedFlux.apply(s, lam, FLUX_CODES[activation])


def can_fuse_flux(s: torch.Tensor) -> bool:
    """Whether :func:`fused_flux` applies: numba present, a CPU tensor of float32 or float64."""
    return HAVE_NUMBA and s.device.type == "cpu" and s.dtype in (torch.float32, torch.float64) and s.numel() > 0

