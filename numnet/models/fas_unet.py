r"""The FAS cycle written as a U-net with four channels ``(x, y, b, r)`` (Sec. 6, Fig. 4b).

Built only from what a U-net is built from:

* ``SolverBlock`` -- the layers on one grid: a relaxation solver for ``A(x) = A(y) + b`` on the
  ``x`` channel, ``y`` and ``b`` passed through, the residual ``r = A(y) + b - A(x)`` as output;
* ``Downsample`` -- a strided averaging convolution per channel followed by a ``4 x 4``
  channel-mixing matrix (the restriction of Sec. 6, step 2): ``x^H = c R x``, ``y^H = R x``,
  ``b^H = R r``, ``r^H = 0`` with ``c = 1`` (start from the restricted approximation) or ``0``;
* ``Upsample`` -- a ``4 x 4`` channel-mixing matrix followed by a strided transposed convolution
  (nearest neighbour) or fixed linear interpolation (step 4): only ``P x^H - P y^H`` reaches
  the ``x`` channel;
* an additive skip connection (step 5): fine channels + upsampled channels.

With the classical matrices it reproduces :func:`numnet.schemes.fas.fas_cycle` exactly; the
``levels`` argument nests U-nets into a V-cycle.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from numnet.schemes.fas import DiffusionOperator, prolong, smooth

__all__ = ["SolverBlock", "Downsample", "Upsample", "FASUNet"]

X, Y, B, R = range(4)


class SolverBlock(nn.Module):
    """Relaxation on one grid, acting on the channel stack ``(x, y, b, r)``."""

    def __init__(self, op: DiffusionOperator, sweeps: int, smoother: str = "jacobi") -> None:
        super().__init__()
        self.op, self.sweeps, self.smoother = op, sweeps, smoother

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, y, b = z[:, X : X + 1], z[:, Y : Y + 1], z[:, B : B + 1]
        rhs = self.op(y) + b
        x = smooth(self.op, x, rhs, self.sweeps, self.smoother)
        return torch.cat([x, y, b, rhs - self.op(x)], dim=1)


class Downsample(nn.Module):
    """Strided averaging convolution (kernel ``(1/2, 1/2)``, stride 2) and a ``4 x 4`` channel matrix."""

    def __init__(self, coarse_init: str = "restricted") -> None:
        super().__init__()
        c = {"restricted": 1.0, "zero": 0.0}[coarse_init]
        mix = torch.zeros(4, 4, dtype=torch.float64)
        mix[X, X] = c  # x^H = c R x
        mix[Y, X] = 1.0  # y^H = R x
        mix[B, R] = 1.0  # b^H = R r
        self.register_buffer("mix", mix)
        self.register_buffer("pool", torch.full((4, 1, 2), 0.5, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        pooled = F.conv1d(z, self.pool.to(z.dtype), stride=2, groups=4)
        return torch.einsum("oc,ncl->nol", self.mix.to(z.dtype), pooled)


class Upsample(nn.Module):
    """A ``4 x 4`` channel matrix then prolongation: only ``P x^H - P y^H`` reaches channel ``x``."""

    def __init__(self, kind: str = "nearest") -> None:
        super().__init__()
        mix = torch.zeros(4, 4, dtype=torch.float64)
        mix[X, X], mix[X, Y] = 1.0, -1.0
        self.register_buffer("mix", mix)
        self.register_buffer("up", torch.ones(4, 1, 2, dtype=torch.float64))
        self.kind = kind

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("oc,ncl->nol", self.mix.to(z.dtype), z)
        if self.kind == "nearest":
            return F.conv_transpose1d(mixed, self.up.to(z.dtype), stride=2, groups=4)
        return prolong(mixed, self.kind)


class FASUNet(nn.Module):
    """FAS V-cycle over the grids of ``ops`` as a (nested) U-net; ``forward(x0, b)`` returns ``x``."""

    def __init__(
        self,
        ops: list[DiffusionOperator],
        pre: int = 2,
        post: int = 2,
        coarsest: int = 50,
        prolongation: str = "nearest",
        coarse_init: str = "restricted",
        smoother: str = "jacobi",
    ) -> None:
        super().__init__()
        if len(ops) == 1:
            self.pre_solver = SolverBlock(ops[0], coarsest, smoother)
            self.inner = None
            return
        self.pre_solver = SolverBlock(ops[0], pre, smoother)
        self.down = Downsample(coarse_init)
        self.inner = FASUNet(ops[1:], pre, post, coarsest, prolongation, coarse_init, smoother)
        self.up = Upsample(prolongation)
        self.post_solver = SolverBlock(ops[0], post, smoother)

    def cycle(self, z: torch.Tensor) -> torch.Tensor:
        z = self.pre_solver(z)
        if self.inner is None:
            return z
        coarse = self.inner.cycle(self.down(z))
        z = z + self.up(coarse)  # additive skip connection: the FAS correction, Eq. (26)
        return self.post_solver(z)

    def forward(self, x0: torch.Tensor, b: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Solve ``A(x) = A(y) + b`` (``y = 0`` by default) for signals shaped ``(N, 1, n)``."""
        y = torch.zeros_like(b) if y is None else y
        z = torch.cat([x0, y, b, torch.zeros_like(b)], dim=1)
        return self.cycle(z)[:, X : X + 1]
