"""Diffusion-flux activations (Sec. 3.4, Fig. 2 of the paper).

A flux function ``Phi(s) = g(s^2) s`` (Eq. 8) turns a diffusivity ``g`` into an
activation. In a diffusion block the activation is ``tau * Phi`` (Eq. 13, 15).
Every flux here knows its Lipschitz constant ``L = sup |Phi'(s)|`` (Eq. 17),
which enters the stability bounds ``tau <= 2 / L`` (Eq. 14 with ``||K||_2 <= 1``)
and ``alpha >= L / 4`` (Eq. 56, Appendix A).

The contrast parameter ``lambda`` is trainable and kept positive by storing
``log(lambda)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "Flux",
    "ReLUFlux",
    "CharbonnierFlux",
    "PeronaMalikFlux",
    "LinearFlux",
    "FLUXES",
    "build_flux",
    "charbonnier",
    "perona_malik",
    "flux_function",
]


def charbonnier(s: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    r"""Charbonnier flux :math:`\Phi(s) = s / \sqrt{1 + s^2/\lambda^2}` (monotone, convex energy)."""
    return s * torch.rsqrt(1.0 + (s / lam) ** 2)


def perona_malik(s: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    r"""Perona--Malik flux :math:`\Phi(s) = s / (1 + s^2/\lambda^2)` (Eq. 4 times s; nonmonotone)."""
    return s / (1.0 + (s / lam) ** 2)


class Flux(nn.Module):
    """Base class: an odd (or ReLU) flux with a known Lipschitz constant."""

    #: name used in configs and tables
    name: str = "flux"
    #: ``sup_s |Phi'(s)|``, independent of lambda for all fluxes here
    lipschitz: float = 1.0
    #: whether the flux has a contrast parameter
    has_contrast: bool = False

    def diffusivity(self, s: torch.Tensor) -> torch.Tensor:
        """``g(s^2) = Phi(s) / s`` (with the limit at s = 0)."""
        safe = torch.where(s == 0, torch.ones_like(s), s)
        return torch.where(s == 0, self.derivative_at_zero(), self(safe) / safe)

    def derivative_at_zero(self) -> torch.Tensor:
        return torch.tensor(1.0)


class LinearFlux(Flux):
    """``Phi(s) = s``: linear (homogeneous) diffusion, ``g = 1``, ``L = 1``."""

    name = "linear"

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s


class ReLUFlux(Flux):
    """``ReLU(s) = max(0, s)`` (Eq. 7); ``G`` stays positive semidefinite (Sec. 3.2), ``L = 1``."""

    name = "relu"

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.relu(s)


class _ContrastFlux(Flux):
    has_contrast = True
    #: on the CPU, evaluate with the compiled elementwise kernel of :mod:`numnet.nn.fused` (one pass
    #: forward, one backward); ``False`` gives the plain formula (the tests compare the two)
    compiled: bool = True

    def __init__(self, lam: float = 15.0, trainable: bool = True) -> None:
        super().__init__()
        if not lam > 0:
            raise ValueError(f"activation.lam must be > 0 (contrast parameter lambda), got {lam}")
        log_lam = torch.tensor(math.log(lam), dtype=torch.float32)
        if trainable:
            self.log_lam = nn.Parameter(log_lam)
        else:
            self.register_buffer("log_lam", log_lam)

    @property
    def lam(self) -> torch.Tensor:
        return self.log_lam.exp()

    def extra_repr(self) -> str:
        return f"lam={float(self.lam):.4g}"


class CharbonnierFlux(_ContrastFlux):
    r"""Charbonnier flux; :math:`\Phi'(s) = (1+s^2/\lambda^2)^{-3/2} \in (0, 1]`, so ``L = 1``."""

    name = "charbonnier"

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if self.compiled:
            from numnet.nn.fused import can_fuse_flux, fused_flux

            if can_fuse_flux(s):
                return fused_flux(s, self.lam, self.name)
        return charbonnier(s, self.lam)


class PeronaMalikFlux(_ContrastFlux):
    r"""Perona--Malik flux; :math:`\Phi'(s) = (1-s^2/\lambda^2)/(1+s^2/\lambda^2)^2 \in [-1/8, 1]`, so ``L = 1``.

    The flux is nonmonotone: it decreases for ``|s| > lambda`` (backward diffusion, edge enhancement).
    """

    name = "perona_malik"

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if self.compiled:
            from numnet.nn.fused import can_fuse_flux, fused_flux

            if can_fuse_flux(s):
                return fused_flux(s, self.lam, self.name)
        return perona_malik(s, self.lam)


FLUXES: dict[str, type[Flux]] = {
    "linear": LinearFlux,
    "relu": ReLUFlux,
    "charbonnier": CharbonnierFlux,
    "perona_malik": PeronaMalikFlux,
}


def build_flux(name: str, lam: float = 15.0, trainable: bool = True) -> Flux:
    """Build a flux by name; unknown names raise with the list of choices."""
    if name not in FLUXES:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(FLUXES)}")
    cls = FLUXES[name]
    if cls.has_contrast:
        return cls(lam=lam, trainable=trainable)
    return cls()


def flux_function(name: str):
    """``Phi(s, lam)`` as a plain function of the name (``lam`` may be a broadcasting tensor)."""
    functions = {
        "linear": lambda s, lam: s,
        "relu": lambda s, lam: torch.relu(s),
        "charbonnier": charbonnier,
        "perona_malik": perona_malik,
    }
    if name not in functions:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(functions)}")
    return functions[name]
