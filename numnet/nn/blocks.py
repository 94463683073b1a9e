r"""The residual blocks of Sec. 2--4 as pure functions of their weights.

Each function maps the current state (and, for the two-step schemes, the previous one) to
the next state. Networks (``numnet.models``) and classical schemes (``numnet.schemes``)
call the same functions, so that a network loaded with classical weights *is* the scheme.
"""
from __future__ import annotations

from typing import Callable

import torch

from numnet.nn.stencil import apply_k, apply_kt

Act = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "resnet_step",
    "diffusion_step",
    "dufort_frankel_step",
    "fsi_step",
    "dufort_frankel_weights",
    "implicit_step",
    "two_step_block",
]


def resnet_step(
    u: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, act: Act
) -> torch.Tensor:
    r"""Standard residual block, Eq. (6) with :math:`\sigma_2 = \mathrm{Id}`:
    :math:`u + W_2 \sigma_1(W_1 u + b_1) + b_2` with biases per channel."""
    inner = act(apply_k(u, w1) + b1[:, None])
    return u + apply_k(inner, w2) + b2[:, None]


def diffusion_step(u: torch.Tensor, w: torch.Tensor, tau: torch.Tensor | float, flux: Act) -> torch.Tensor:
    r"""Diffusion block / explicit scheme, Eq. (11): :math:`u - \tau K^\top \Phi(K u)`.

    Euclidean stable for :math:`\tau \le 2 / (L \|K\|_2^2)` (Theorem 2, Eq. 14)."""
    return u - tau * apply_kt(flux(apply_k(u, w)), w)


def dufort_frankel_weights(tau: torch.Tensor | float, alpha: torch.Tensor | float):
    r"""Coefficients of Eq. (20): :math:`(4\tau\alpha/(1+2\tau\alpha),\ (1-2\tau\alpha)/(1+2\tau\alpha))`."""
    denom = 1.0 + 2.0 * tau * alpha
    return 4.0 * tau * alpha / denom, (1.0 - 2.0 * tau * alpha) / denom


def dufort_frankel_step(
    u: torch.Tensor,
    u_prev: torch.Tensor,
    w: torch.Tensor,
    tau: torch.Tensor | float,
    alpha: torch.Tensor | float,
    flux: Act,
) -> torch.Tensor:
    r"""Du Fort--Frankel step, Eq. (20):

    .. math:: u^{k+1} = \tfrac{4\tau\alpha}{1+2\tau\alpha}\big(u^k - \tfrac{1}{2\alpha} K^\top\Phi(K u^k)\big)
              + \tfrac{1-2\tau\alpha}{1+2\tau\alpha} u^{k-1}.

    Stable for any :math:`\tau > 0` when :math:`\alpha > \rho(K^\top G K)/4` (Eq. 51), which
    :math:`\alpha \ge L\|K\|_2^2/4` guarantees (Eq. 56)."""
    c_now, c_prev = dufort_frankel_weights(tau, alpha)
    return c_now * diffusion_step(u, w, 0.5 / alpha, flux) + c_prev * u_prev


def fsi_step(
    u: torch.Tensor,
    u_prev: torch.Tensor,
    w: torch.Tensor,
    tau: torch.Tensor | float,
    alpha: torch.Tensor | float,
    flux: Act,
) -> torch.Tensor:
    r"""One fast semi-iterative step, Eq. (21):
    :math:`\alpha_\ell\,(u - \tau K^\top\Phi(K u)) + (1-\alpha_\ell)\,u^{\mathrm{prev}}`."""
    return alpha * diffusion_step(u, w, tau, flux) + (1.0 - alpha) * u_prev


def two_step_block(
    u: torch.Tensor,
    u_prev: torch.Tensor,
    w: torch.Tensor,
    a: torch.Tensor | float,
    b: torch.Tensor | float,
    c: torch.Tensor | float,
    flux: Act,
) -> torch.Tensor:
    r"""The common form of Eq. (11), (20) and (21):
    :math:`a\,u - b\,K^\top\Phi(K u) + c\,u^{\mathrm{prev}}`. Eq. (11) is :math:`(1, \tau, 0)`, Eq. (21)
    :math:`(\alpha_\ell, \alpha_\ell\tau, 1 - \alpha_\ell)` and Eq. (20) the weights of
    :func:`dufort_frankel_weights` with :math:`b = a / (2\alpha)`; the networks' coefficient maps
    (:mod:`numnet.nn.coefficients`) say which."""
    return a * u - b * apply_kt(flux(apply_k(u, w)), w) + c * u_prev


def implicit_step(u: torch.Tensor, w: torch.Tensor, tau: torch.Tensor | float, flux: Act, iterations: int) -> torch.Tensor:
    r"""Implicit step, Eq. (22), by ``iterations`` fixed-point iterations, Eq. (23):
    :math:`v \leftarrow u^k - \tau K^\top \Phi(K v)`, starting from :math:`v = u^k`.

    Every iterate reconnects to :math:`u^k` (the recurrent skip connection of Sec. 4.3). The map
    contracts, and the iteration converges to the solution of Eq. (22), when
    :math:`\tau L \|K\|_2^2 < 1`."""
    v = u
    for _ in range(iterations):
        v = u - tau * apply_kt(flux(apply_k(v, w)), w)
    return v
