r"""Multi-channel two-step networks as matrix products (CPU fast path for ``C > 1``).

The two-step form of the symmetric architectures (Eq. 11, 20, 21 chained ``D`` times),

.. math:: u^{k+1} = a_k u^k - b_k K_k^\top \Phi(K_k u^k) + c_k u^{k-1}, \qquad u^{-1} := u^0,

with ``C x C`` block kernels. All ``N`` signals are held channels-last in one long array, each signal's
samples between its two ghost samples of the reflecting boundary (Sec. 3, Eq. 10--13), so that ``K u`` of all
signals is three accumulated ``(N (n + 2), C) x (C, C)`` products on shifted rows (no copies), and ``K^T v`` the
same with the mirrored kernels over ``v`` with zero ghost rows, followed by the fold of the ghost rows onto the
end samples. The backward pass is written by hand (the formulas of :mod:`numnet.nn.fused`): per block six such
correlations (``K u``, ``K^T Phi``, ``K g``, ``K^T (Phi' K g)`` and the two kernel gradients ``Phi^T G`` and
``(Phi' K g)^T U``), which is the arithmetic of the step; the flux and its derivatives run in one compiled pass
each (:func:`numnet.nn.fused._map_forward`).

Eager autograd spends about two thirds of a 16-channel step in ``conv1d`` and its backward for these small
shapes (``C = 16``, width 3); the same products as plain matrix products run about twice as fast, and the
graph of some thirty small operations per block disappears. ``make bench`` measures it.

The kernels enter normalised (any rule of :func:`numnet.nn.normalisation.normalise`, differentiated by autograd
outside), and the coefficients ``a, b, c`` and contrast parameters ``lambda`` per block as tensors: the
architecture's own coefficient maps stay in torch.
"""
from __future__ import annotations

import numpy as np
import torch

from numnet.nn.fused import FLUX_CODES, HAVE_NUMBA

__all__ = ["two_step_matmul", "can_use_matmul"]


def can_use_matmul(u: torch.Tensor) -> bool:
    """Whether :func:`two_step_matmul` takes ``u`` ``(N, C, n)``: numba present, a CPU float tensor, ``n >= 2``."""
    return HAVE_NUMBA and u.device.type == "cpu" and u.dtype in (torch.float32, torch.float64) and u.shape[-1] >= 2


def _band(x: torch.Tensor, mats: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = sum_t x[t : t + L] @ mats[t]`` for ``x`` ``(L + 2, C)``, ``mats`` ``(3, C, C)``: a width-3 correlation
    over the rows of one long array, as three accumulating matrix products on shifted views (no copies)."""
    rows = out.shape[0]
    torch.mm(x[0:rows], mats[0], out=out)
    out.addmm_(x[1:rows + 1], mats[1])
    out.addmm_(x[2:rows + 2], mats[2])
    return out


class _Layout:
    """``N`` signals of length ``n`` with ``C`` channels as one long array ``(L + 2, C)``, ``L = N (n + 2)``: each
    signal's ``n`` samples between its two ghost rows, and one spare row at both ends, so that ``K`` and ``K^T``
    of all signals are one :func:`_band` each; rows between signals produce values that are never read."""

    def __init__(self, n_sig: int, n: int, c: int, dtype: torch.dtype) -> None:
        self.n_sig, self.n, self.c, self.dtype = n_sig, n, c, dtype
        self.rows = n_sig * (n + 2)

    def empty(self, *lead: int) -> torch.Tensor:
        """Long arrays ``(*lead, L + 2, C)``, uninitialised but for the spare rows at both ends, which are zero (the
        products read them and nothing writes them)."""
        x = torch.empty(*lead, self.rows + 2, self.c, dtype=self.dtype)
        x[..., 0, :] = 0.0
        x[..., -1, :] = 0.0
        return x

    def signals(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(N, n + 2, C)`` view of a long array ``(L + 2, C)`` (ghosts included)."""
        return x[1:self.rows + 1].view(self.n_sig, self.n + 2, self.c)

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(N, n, C)`` view of the samples of a long array."""
        return self.signals(x)[:, 1:self.n + 1]

    def reflect(self, x: torch.Tensor) -> torch.Tensor:
        """Ghost rows ``u_{-1} = u_0``, ``u_n = u_{n-1}`` (homogeneous Neumann boundary) in place."""
        sig = self.signals(x)
        sig[:, 0] = sig[:, 1]
        sig[:, self.n + 1] = sig[:, self.n]
        return x

    def zero_ghosts(self, x: torch.Tensor) -> torch.Tensor:
        sig = self.signals(x)
        sig[:, 0] = 0.0
        sig[:, self.n + 1] = 0.0
        return x

    def fold(self, z: torch.Tensor) -> torch.Tensor:
        """``P^T`` of a long array ``(L, C)`` of the padded domain (row ``r`` of ``z`` is row ``r + 1`` of the long
        layout): the ghost rows added onto the end samples; returns the ``(N, n, C)`` view of the samples."""
        sig = z.view(self.n_sig, self.n + 2, self.c)
        sig[:, 1] += sig[:, 0]
        sig[:, self.n] += sig[:, self.n + 1]
        return sig[:, 1:self.n + 1]


def _kernel_stacks(kern: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For kernels ``(S, C, C, 3)``: the ``(S, 3, C, C)`` stacks of :func:`_band` for ``K`` (``W_t^T``, acting on
    rows) and for the correlation ``C^T`` of ``K^T`` (``W_{2 - t}``)."""
    fwd = kern.permute(0, 3, 2, 1).contiguous()
    adj = kern.flip(-1).permute(0, 3, 1, 2).contiguous()
    return fwd, adj


class _TwoStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u0, kern, coef_a, coef_b, coef_c, lams, idx, code):
        from numnet.nn.fused import _map_forward

        n_sig, c, n = u0.shape
        lay = _Layout(n_sig, n, c, u0.dtype)
        fwd, adj = _kernel_stacks(kern.detach())
        a, b, cc = coef_a.tolist(), coef_b.tolist(), coef_c.tolist()
        np_type = np.float32 if u0.dtype == torch.float32 else np.float64
        lam = [np_type(x) for x in lams.tolist()]
        depth = len(idx)
        states = lay.empty(depth + 1)
        pre = lay.empty(depth)[:, 1:-1]  # s = K u per block (rows of the long layout without the spare ones)
        flux = lay.empty(depth)  # Phi(s), zero on the ghost and spare rows (the input of K^T)
        z = torch.empty(lay.rows, c, dtype=u0.dtype)
        lay.inner(states[0]).copy_(u0.detach().transpose(1, 2))
        lay.reflect(states[0])
        for k in range(depth):
            j = idx[k]
            u = states[k]
            _band(u, fwd[j], pre[k])
            _map_forward(pre[k].numpy().reshape(-1), lam[k], flux[k, 1:-1].numpy().reshape(-1), code)
            lay.zero_ghosts(flux[k])
            v = lay.fold(_band(flux[k], adj[j], z))
            nxt = states[k + 1]
            inner = lay.inner(nxt)
            torch.mul(v, -b[k], out=inner)
            inner.add_(lay.inner(u), alpha=a[k])
            if cc[k] != 0.0:
                inner.add_(lay.inner(states[k - 1] if k > 0 else u), alpha=cc[k])
            lay.reflect(nxt)
        ctx.save_for_backward(kern, coef_a, coef_b, coef_c, lams)
        ctx.stash = (lay, states, pre, flux, fwd, adj, idx, code, lam)
        return lay.inner(states[depth]).transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, grad_out):
        from numnet.nn.fused import _map_backward

        kern, coef_a, coef_b, coef_c, lams = ctx.saved_tensors
        lay, states, pre, flux, fwd, adj, idx, code, lam = ctx.stash
        depth, c, dt, rows = len(idx), lay.c, lay.dtype, lay.rows
        a, b, cc = coef_a.tolist(), coef_b.tolist(), coef_c.tolist()
        g_kern = torch.zeros(kern.shape[0], 3, c, c, dtype=dt)  # (t, a, b)
        g_a, g_b, g_c, g_l = (torch.zeros(depth, dtype=dt) for _ in range(4))
        # dL/du^{k+1}, dL/du^{k+2} and the next one rotate through three long arrays with zero spare rows; a
        # gradient's ghost rows are zero while dot products are taken, reflected while K is applied
        bufs = [lay.empty() for _ in range(3)]
        r = lay.empty()  # K g, zero on the ghost rows (between signals it is not a sample's value)
        q = lay.empty()  # Phi'(s) K g: zero on the ghost rows (as r) and the spare rows
        z = torch.empty(rows, c, dtype=dt)
        g, g_next = bufs[0], None
        lay.inner(g).copy_(grad_out.detach().transpose(1, 2))
        c_next = 0.0  # c_{k+1}: dL/du^{k+2} reaches u^k through the extrapolation of block k + 1
        for k in range(depth - 1, -1, -1):
            j = idx[k]
            u = states[k]
            prev = states[k - 1] if k > 0 else u
            lay.zero_ghosts(g)
            flat = g.view(-1)
            g_a[k] = torch.dot(flat, u.view(-1))
            g_c[k] = torch.dot(flat, prev.view(-1))
            lay.reflect(g)
            _band(g, fwd[j], r[1:-1])
            lay.zero_ghosts(r)
            g_b[k] = -torch.dot(r[1:-1].reshape(-1), flux[k, 1:-1].reshape(-1))
            g_l[k] = -b[k] * float(_map_backward(pre[k].numpy().reshape(-1), lam[k], r[1:-1].numpy().reshape(-1),
                                                 q[1:-1].numpy().reshape(-1), code))
            # kernels: -b (<K g, Phi> + <Phi' K g, K u>), i.e. dW_t = -b (Phi^T g_t + q^T u_t) on shifted rows
            for t in range(3):
                g_kern[j, t].addmm_(flux[k, 1:-1].T, g[t:t + rows], alpha=-b[k])
                g_kern[j, t].addmm_(q[1:-1].T, u[t:t + rows], alpha=-b[k])
            back = lay.fold(_band(q, adj[j], z))
            new = next(x for x in bufs if x is not g and x is not g_next)
            new_in, g_in = lay.inner(new), lay.inner(g)
            torch.mul(back, -b[k], out=new_in)
            new_in.add_(g_in, alpha=a[k])
            if g_next is not None and c_next != 0.0:
                new_in.add_(lay.inner(g_next), alpha=c_next)
            if k == 0 and cc[0] != 0.0:
                new_in.add_(g_in, alpha=cc[0])  # u^{-1} := u^0
            g_next, g, c_next = g, new, cc[k]
        g_w = g_kern.permute(0, 2, 3, 1)  # (S, a, b, t)
        g_u0 = lay.inner(g).transpose(1, 2).contiguous()
        return g_u0, g_w, g_a, g_b, g_c, g_l, None, None


def two_step_matmul(u0: torch.Tensor, kern: torch.Tensor, idx, coef_a: torch.Tensor, coef_b: torch.Tensor,
                    coef_c: torch.Tensor, lams: torch.Tensor, activation: str) -> torch.Tensor:
    """``u^D`` of the two-step recursion (module docstring) for ``u0`` ``(N, C, n)``, normalised kernels ``kern``
    ``(S, C, C, 3)`` (block ``k`` uses set ``idx[k]``), coefficients and contrast parameters ``(D,)`` each;
    differentiable in all tensors. The same numbers as the eager blocks up to rounding (``tests``)."""
    return _TwoStep.apply(u0, kern, coef_a, coef_b, coef_c, lams, [int(i) for i in idx], FLUX_CODES[activation])
