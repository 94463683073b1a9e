r"""Fused CPU training step for one-channel ResNets (Eq. 6 with ``sigma_2 = Id``, chained ``D`` times).

.. math:: u^{k+1} = u^k + K_{2,k} h^k + b_{2,k}, \qquad h^k = \Phi(s^k), \quad s^k = K_{1,k} u^k + b_{1,k},

with ``K_{1,k}``, ``K_{2,k}`` free width-3 kernels on the reflecting extension (:mod:`numnet.nn.stencil`).
The eager path spends a 20-block step in about 200 small tensor operations; here the forward pass,
the MSE and the backward pass of every signal run in one compiled call while the signal's ``D + 1``
states sit in the cache, as :class:`numnet.nn.fused.FusedStep` does for the two-step
architectures. With ``g = dL/du^{k+1}`` (total), ``q = \Phi'(s) \odot K_2^\top g`` and ``S_t`` the
reflecting shift by ``t - 1``:

.. math::
    \frac{\partial L}{\partial u^k} = g + K_1^\top q, \quad
    \frac{\partial L}{\partial b_2} = \textstyle\sum_i g_i, \quad
    \frac{\partial L}{\partial b_1} = \textstyle\sum_i q_i, \quad
    \frac{\partial L}{\partial w_{2,t}} = \langle g, S_t h\rangle, \quad
    \frac{\partial L}{\partial w_{1,t}} = \langle q, S_t u^k\rangle, \quad
    \frac{\partial L}{\partial \lambda} = \langle K_2^\top g, \partial_\lambda \Phi(s)\rangle.

Only the states are kept; ``s`` and ``h`` are recomputed in the backward pass. The tests compare
the loss and every gradient with autograd through the eager path.
"""
from __future__ import annotations

import numpy as np
import torch

from numnet.nn.fused import FLUX_CODES, HAVE_NUMBA

__all__ = ["FusedResNetStep"]

if HAVE_NUMBA:
    from numnet.nn.fused import _flux, _flux3, _jit, _smooth

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
            part = 0.0
            for i in range(n):
                r = st[depth, i] - y[b, i]
                part += r * r
                g[i] = two * r
            sq += part
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


class FusedResNetStep:
    """The training step of a one-channel ResNet (MSE, gradients of every parameter) in one compiled
    call without an autograd graph. ``w1``, ``w2`` (S, 1, 1, 3), ``b1``, ``b2`` (S, 1) are the weight
    sets, ``idx`` (D,) the set of each block, ``log_lams`` one 0-d tensor per set (``None`` for fluxes
    without a contrast parameter); ``beta > 0`` (own weights) adds the gradient of Eq. (27)'s
    regulariser. NumPy views of the parameters and their ``.grad`` are made once; :meth:`valid` tells
    when a tensor was replaced and the views are stale."""

    def __init__(self, w1, w2, b1, b2, log_lams, idx, activation: str, beta: float = 0.0) -> None:
        if not HAVE_NUMBA:
            raise RuntimeError("the fused kernel needs numba")
        if beta > 0 and (w1.shape[0] != len(idx) or len(idx) < 2):
            raise ValueError("Eq. (27)'s regulariser needs own weights per block and at least two blocks")
        self.tensors = [w1, w2, b1, b2] + list(log_lams or [])
        for p in self.tensors:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.key = self._key()
        self.idx = idx
        self.code = FLUX_CODES[activation]
        self.beta = float(beta)
        flat = lambda p: p.detach().numpy().reshape(p.shape[0], -1)
        self.params = [flat(w1), flat(w2), flat(b1).reshape(-1), flat(b2).reshape(-1)]
        self.grads = [p.grad.numpy().reshape(a.shape) for p, a in zip((w1, w2, b1, b2), self.params)]
        self.log_lams = [(p.detach().numpy(), p.grad.numpy()) for p in log_lams or []]
        n_sets = w1.shape[0]
        self.log_lam = np.zeros(n_sets, dtype=self.params[0].dtype)  # lambda = 1 where the flux has none
        self.g_l = np.zeros(n_sets, dtype=self.params[0].dtype)

    def _key(self) -> tuple:
        return tuple((p.data_ptr(), None if p.grad is None else p.grad.data_ptr()) for p in self.tensors)

    def valid(self) -> bool:
        """Whether the views still show the parameters and gradients (no tensor was replaced)."""
        return self._key() == self.key

    def __call__(self, x: torch.Tensor, y: torch.Tensor, accumulate: bool = True) -> float:
        """MSE of the network on ``x`` (N, 1, n >= 3) against ``y``; its gradients are added to ``.grad``
        (``accumulate``) or written over it."""
        if x.shape != y.shape or x.dim() != 3 or x.shape[1] != 1 or x.shape[-1] < 3:
            raise ValueError(f"expected input and target shaped (N, 1, n >= 3) alike, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        xs = x.detach().numpy().reshape(x.shape[0], x.shape[-1])
        ys = y.detach().numpy().reshape(xs.shape)
        for j, (value, _) in enumerate(self.log_lams):
            self.log_lam[j] = value
        loss = _resnet_mse_grads(xs, ys, *self.params, self.idx, self.log_lam, self.code, self.beta, *self.grads,
                                 self.g_l, accumulate)
        for j, (_, grad) in enumerate(self.log_lams):
            grad[...] = (grad if accumulate else 0.0) + self.g_l[j]
        return float(loss)
