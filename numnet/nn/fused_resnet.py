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
the loss and every gradient with autograd through the eager path. The compiled kernels
(``_resnet_mse_grads`` and the functions it calls) live in :mod:`numnet.nn.fused` beside the fluxes
they share: numba's on-disk cache follows only the defining file.
"""
from __future__ import annotations

import numpy as np
import torch

from numnet.nn.fused import FLUX_CODES, HAVE_NUMBA, StepViews

__all__ = ["FusedResNetStep"]

if HAVE_NUMBA:
    from numnet.nn.fused import _resnet_mse_grads


class FusedResNetStep(StepViews):
    """The training step of a one-channel ResNet (MSE, gradients of every parameter) in one compiled
    call without an autograd graph. ``w1``, ``w2`` (S, 1, 1, 3), ``b1``, ``b2`` (S, 1) are the weight
    sets, ``idx`` (D,) the set of each block, ``log_lams`` one 0-d tensor per set (``None`` for fluxes
    without a contrast parameter); ``beta > 0`` (own weights) adds the gradient of Eq. (27)'s
    regulariser. The parameters' views: :class:`numnet.nn.fused.StepViews`."""

    def __init__(self, w1, w2, b1, b2, log_lams, idx, activation: str, beta: float = 0.0) -> None:
        if not HAVE_NUMBA:
            raise RuntimeError("the fused kernel needs numba")
        if beta > 0 and (w1.shape[0] != len(idx) or len(idx) < 2):
            raise ValueError("Eq. (27)'s regulariser needs own weights per block and at least two blocks")
        super().__init__([w1, w2, b1, b2] + list(log_lams or []))
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

    def __call__(self, x: torch.Tensor, y: torch.Tensor, accumulate: bool = True) -> float:
        """MSE of the network on ``x`` (N, 1, n >= 3) against ``y``; its gradients are added to ``.grad``
        (``accumulate``) or written over it."""
        xs, ys = self.signals(x, y)
        for j, (value, _) in enumerate(self.log_lams):
            self.log_lam[j] = value
        loss = _resnet_mse_grads(xs, ys, *self.params, self.idx, self.log_lam, self.code, self.beta, *self.grads,
                                 self.g_l, accumulate)
        for j, (_, grad) in enumerate(self.log_lams):
            grad[...] = (grad if accumulate else 0.0) + self.g_l[j]
        return float(loss)
