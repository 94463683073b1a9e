r"""Classical explicit diffusion, Eq. (11), and the Fig. 5 baselines.

The classical filter uses the forward difference ``K = D`` (kernel ``(0, -1, 1)``, reflecting
boundaries) so that ``-K^T Phi(K u)`` is the usual discretisation of ``(Phi(u_x))_x`` with
``h = 1``. Since ``||D||_2^2 <= 4`` the explicit scheme is stable for ``tau <= 2 / (4 L)``
(Eq. 14); the baselines use ``tau = 0.25``, half that bound, so the stopping time ``T``
is resolved in steps of 0.25.

The contrast ``lambda`` and the stopping time ``T`` are chosen by maximising the mean PSNR
on the validation set over a grid (all ``lambda`` evolve in one batched tensor, and the PSNR
of every step is recorded), then the chosen filter is evaluated on the test set.
"""
from __future__ import annotations

import torch
from torch import nn

from numnet.metrics import psnr
from numnet.nn.activations import build_flux, flux_function
from numnet.nn.blocks import diffusion_step
from numnet.nn.stencil import forward_difference

__all__ = ["ExplicitDiffusion", "select_explicit"]


class ExplicitDiffusion(nn.Module):
    """``steps`` explicit diffusion steps (Eq. 11) with flux ``activation``: same call as the networks."""

    name = "classical"

    def __init__(
        self,
        activation: str,
        lam: float = 1.0,
        tau: float = 0.25,
        steps: int = 1,
        kernel: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.flux = build_flux(activation, lam, trainable=False)
        self.register_buffer("kernel", (forward_difference() if kernel is None else kernel).clone())
        bound = 2.0 / (self.flux.lipschitz * 4.0)
        if kernel is None and not 0 < tau <= bound:
            raise ValueError(f"tau must lie in (0, {bound}] for the forward difference (Eq. 14), got {tau}")
        self.tau = tau
        self.steps = steps

    def evolve(self, f: torch.Tensor) -> list[torch.Tensor]:
        states = [f]
        for _ in range(self.steps):
            states.append(diffusion_step(states[-1], self.kernel, self.tau, self.flux))
        return states

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        u = f
        for _ in range(self.steps):
            u = diffusion_step(u, self.kernel, self.tau, self.flux)
        return u


@torch.no_grad()
def select_explicit(
    activation: str,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    lams: list[float],
    max_time: float,
    tau: float = 0.25,
    data_range: float = 255.0,
) -> dict:
    """Grid search of ``(lambda, T)`` on a validation set; returns the best and the whole curve.

    ``noisy`` / ``clean`` are ``(N, 1, n)``. For fluxes without a contrast ``lams`` is ignored.
    """
    flux = build_flux(activation, 1.0, trainable=False)
    grid = list(lams) if flux.has_contrast else [float("nan")]
    lam = torch.tensor(grid if flux.has_contrast else [1.0], dtype=noisy.dtype).view(-1, 1, 1)
    steps = int(round(max_time / tau))
    u = noisy[:, 0][None].expand(len(grid), -1, -1).contiguous()  # (G, N, n): lambda on dim 0
    target = clean[:, 0][None]
    kernel = forward_difference(dtype=noisy.dtype)

    fn = flux_function(activation)

    def phi(s: torch.Tensor) -> torch.Tensor:
        return fn(s, lam)

    curve = torch.empty(steps + 1, len(grid))
    curve[0] = psnr(u, target, data_range).mean(dim=-1)
    for k in range(1, steps + 1):
        u = diffusion_step(u, kernel, tau, phi)
        curve[k] = psnr(u, target, data_range).mean(dim=-1)
    best = int(torch.argmax(curve))
    k_best, g_best = divmod(best, len(grid))
    return {
        "lam": grid[g_best],
        "steps": k_best,
        "time": k_best * tau,
        "tau": tau,
        "val_psnr": float(curve[k_best, g_best]),
        "on_grid_edge": k_best == steps or (flux.has_contrast and g_best in (0, len(grid) - 1)),
        "curve": curve,
        "lams": grid,
    }

