r"""Classical Du Fort--Frankel (Eq. 19/20), FSI (Eq. 21) and implicit (Eq. 22/23) diffusion schemes.

All use the forward difference ``K = D/h`` (kernel ``(0, -1, 1)/h``, reflecting boundaries) and
the block functions of :mod:`numnet.nn.blocks`, the same functions the networks are built from,
and share the call signature of the networks: ``forward(f)`` and ``evolve(f)``.

* Du Fort--Frankel: ``u^{-1} := u^0``; stable for ``alpha >= rho(K^T G K)/4`` (Appendix A).
* FSI: cycles of length ``L`` with the classical weights ``alpha_l = (4l+2)/(2l+3)``; one cycle
  with step ``tau`` reaches the diffusion time ``L(L+1) tau / 3`` (Sec. 4.2) and is stable for
  ``tau <= 2 / (L_Phi ||K||^2)``.
* Implicit: each time step solves ``u^{k+1} = u^k - tau K^T Phi(K u^{k+1})`` (Eq. 22) by the
  fixed-point iteration of Eq. (23), which contracts when ``tau L_Phi ||K||_2^2 < 1``.
"""
from __future__ import annotations

import torch
from torch import nn

from numnet.nn.activations import build_flux
from numnet.nn.blocks import dufort_frankel_step, fsi_step, implicit_step
from numnet.nn.stencil import forward_difference

__all__ = ["fsi_weights", "fsi_stopping_time", "implicit_step", "DuFortFrankelScheme", "FSIScheme", "ImplicitScheme"]


def fsi_weights(cycle: int) -> list[float]:
    """Classical FSI extrapolation weights ``alpha_l = (4l+2)/(2l+3)``, ``l = 0 .. L-1`` (Eq. 21)."""
    if cycle < 1:
        raise ValueError(f"FSI cycle length must be >= 1, got {cycle}")
    return [(4 * l + 2) / (2 * l + 3) for l in range(cycle)]


def fsi_stopping_time(cycle: int, tau: float) -> float:
    """Diffusion time ``L (L+1) tau / 3`` reached by one FSI cycle (Sec. 4.2)."""
    return cycle * (cycle + 1) * tau / 3.0


class _Scheme(nn.Module):
    name = "classical"

    def __init__(self, activation: str, lam: float, h: float) -> None:
        super().__init__()
        self.flux = build_flux(activation, lam, trainable=False)
        self.register_buffer("kernel", forward_difference(h))
        self.h = h

    @property
    def norm_sq_bound(self) -> float:
        """``||K||_2^2 <= 4 / h^2`` for the forward difference."""
        return 4.0 / self.h**2

    def evolve(self, f: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.evolve(f)[-1]


class DuFortFrankelScheme(_Scheme):
    """``steps`` Du Fort--Frankel steps, Eq. (20), with ``u^{-1} := u^0``."""

    def __init__(self, activation: str, lam: float = 1.0, tau: float = 1.0, alpha: float = 1.0, steps: int = 1,
                 h: float = 1.0) -> None:
        super().__init__(activation, lam, h)
        if not (tau > 0 and alpha > 0 and steps >= 0):
            raise ValueError(f"need tau > 0, alpha > 0, steps >= 0; got {tau}, {alpha}, {steps}")
        self.tau, self.alpha, self.steps = tau, alpha, steps

    def evolve(self, f):
        states, prev = [f], f
        for _ in range(self.steps):
            nxt = dufort_frankel_step(states[-1], prev, self.kernel, self.tau, self.alpha, self.flux)
            prev = states[-1]
            states.append(nxt)
        return states


class FSIScheme(_Scheme):
    """``cycles`` FSI cycles of length ``cycle`` with classical weights, Eq. (21)."""

    def __init__(self, activation: str, lam: float = 1.0, tau: float = 0.25, cycle: int = 5, cycles: int = 1,
                 h: float = 1.0) -> None:
        super().__init__(activation, lam, h)
        bound = 2.0 / (self.flux.lipschitz * self.norm_sq_bound)
        if not 0 < tau <= bound:
            raise ValueError(f"FSI needs 0 < tau <= 2/(L ||K||^2) = {bound:g}, got {tau}")
        self.tau, self.cycle, self.cycles = tau, cycle, cycles
        self.weights = fsi_weights(cycle)

    def evolve(self, f):
        states = [f]
        for _ in range(self.cycles):
            prev = states[-1]  # u^{k - 1/L} := u^k at the start of every cycle
            for a in self.weights:
                nxt = fsi_step(states[-1], prev, self.kernel, self.tau, a, self.flux)
                prev = states[-1]
                states.append(nxt)
        return states


class ImplicitScheme(_Scheme):
    """``steps`` implicit steps (Eq. 22), each by ``iterations`` fixed-point iterations (Eq. 23)."""

    def __init__(self, activation: str, lam: float = 1.0, tau: float = 0.2, steps: int = 1, iterations: int = 10,
                 h: float = 1.0) -> None:
        super().__init__(activation, lam, h)
        if not (tau > 0 and steps >= 0 and iterations >= 1):
            raise ValueError(f"need tau > 0, steps >= 0, iterations >= 1; got {tau}, {steps}, {iterations}")
        self.tau, self.steps, self.iterations = tau, steps, iterations

    @property
    def contraction(self) -> float:
        """Lipschitz constant ``tau L ||K||^2`` of the fixed-point map; < 1 means convergence."""
        return self.tau * self.flux.lipschitz * self.norm_sq_bound

    def evolve(self, f):
        states = [f]
        for _ in range(self.steps):
            states.append(implicit_step(states[-1], self.kernel, self.tau, self.flux, self.iterations))
        return states
