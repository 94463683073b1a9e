"""Implicit diffusion network (Sec. 4.3): each block is one implicit step (Eq. 22) solved by
``inner_steps`` fixed-point iterations (Eq. 23), every one reconnected to the block input.

``tau = (1/L) sigmoid(t)`` keeps the fixed-point map a contraction (``tau L ||K||_2^2 < 1``
with ``||K||_2 <= 1``), so that with enough inner steps the block is the implicit scheme.
"""
from __future__ import annotations

import torch
from torch import nn

from numnet.models.denoisers import Denoiser1D, _inv_sigmoid
from numnet.nn.blocks import implicit_step
from numnet.nn.stencil import spectral_norm

__all__ = ["ImplicitNet"]


class ImplicitNet(Denoiser1D):
    """Recurrent / fixed-point blocks: ``v <- u^k - tau K^T Phi(K v)``, ``inner_steps`` times."""

    name = "implicit"

    def __init__(self, depth: int, tau_init: float = 0.5, inner_steps: int = 3, **kw) -> None:
        super().__init__(depth, **kw)
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
            raise ValueError(f"model.inner_steps must be an integer >= 1, got {inner_steps!r}")
        bound = 1.0 / self.lipschitz
        if not 0 < tau_init < bound:
            raise ValueError(f"model.tau_init must lie in (0, 1/L) = (0, {bound:g}) for a contraction (Sec. 4.3), "
                             f"got {tau_init}")
        self.inner_steps = inner_steps
        self.w = self._kernels()
        self.tau_raw = nn.Parameter(torch.full((self.n_sets,), _inv_sigmoid(tau_init / bound)))

    def tau(self, i: int = 0) -> torch.Tensor:
        return torch.sigmoid(self.tau_raw[i]) / self.lipschitz

    def kernel(self, i: int = 0) -> torch.Tensor:
        return self.normalised(self.w[i])

    def weights(self, i, k=None):
        return {"w": self.normalised(self.w[i]) if k is None else k, "tau": self.tau(i), "flux": self.fluxes[i]}

    def step(self, k, u, u_prev, p):
        return implicit_step(u, p["w"], p["tau"], p["flux"], self.inner_steps)

    condition = "tau L ||K||_2^2 < 1: the fixed-point map contracts (Sec. 4.3)"

    @torch.no_grad()
    def condition_ratios(self, norms):
        return [float(self.tau(i)) * self.lipschitz * k**2 for i, k in enumerate(norms)]

    @torch.no_grad()
    def stability(self) -> dict[str, float]:
        return {"lipschitz": self.lipschitz, "tau": float(self.tau(0)), "contraction": float(self.tau(0)) * self.lipschitz,
                "norm_K": spectral_norm(self.kernel(0))}
