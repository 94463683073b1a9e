"""Learned EED inpainting solvers of Sec. 7.2.3: full multigrid network, U-net, single-grid network.

All three map the known data ``(c f, c)`` (grey values in [0, 255], ``c`` the mask) to a full image
``u``. Each starts from the same initial guess ``u0 = c f + (1 - c) mean(f on K)`` and adds a learned
update scaled by ``SCALE`` grey values (the FMG network from ``u0`` on its coarsest grid). The last layer of
every network starts at zero. The network also reproduces the known pixels itself; no Dirichlet
data are imposed (Sec. 7.2.2).

* :class:`FMGNet`: grids ``h, 2h, 4h``, solver order ``[4h, 2h, 4h, 2h, h, 2h, 4h, 2h, 4h, 2h, h]``,
  one solver per grid shared by all its visits (12 conv layers, 20 channels, ReLU). Restriction is
  2 x 2 averaging, prolongation nearest neighbour. What passes between grids is FAS (Sec. 6): going
  down, ``x_H = R x_h`` and ``b_H = R (b_h - N_h(x_h)) + N_H(x_H)``; going up to a grid of the current
  cycle, ``x_h += P (x_H - R x_h)``; going up to a grid not yet in the cycle (the FMG step),
  ``x_h = P x_H`` with that grid's own problem. ``N_l(x) = (1 - c_l) A_l(x) x - c_l x`` and
  ``b_l = -c_l f_l`` discretise Eq. (29) on grid ``l`` (mask restricted by "any fine pixel known").
  Each solver sees ``(x, b - N(x), c)``: its iterate, the FAS residual on its grid, and the mask.
* :class:`InpaintUNet` and :class:`SingleGridNet` see ``(u0, r(u0), c)``: the start, the residual of
  Eq. (29) at the start (``residual_input``; the FMG solvers see residuals too), and the mask.
  Without the residual the residual loss did not move them from ``u0`` in a few thousand steps.
* :class:`InpaintUNet`: U-net with additive skips, 3 scales, 2 conv layers per scale and side (``layers``),
  widths ``(17, 34, 68)``, 1 x 1 projections after upsampling; ``norm="batch"`` puts a batch normalisation
  after every 3 x 3 convolution (not the paper's; ``none`` is the default). ``passes > 1`` (not the paper's,
  which is 1) applies the same U-net again from its own result, which it then sees with that result's
  residual, as the FMG solvers see theirs: a U-net iterated as a solver, with no further parameters.
  :class:`IteratedUNet` (``unet_iter``, beyond the paper) is that U-net with 2 passes.
* :class:`SingleGridNet`: 25 conv layers of 24 channels on the fine grid only.

Initialisation (``init``): ``default`` is PyTorch's; ``he`` draws every convolution but the last from
``N(0, 2 / fan_in)`` with zero biases (He et al. 2015), which keeps the size of the signal through a deep
stack of ReLU layers. Under the default, a deep plain stack forgets its input: its features end up
nearly constant in space (set by the biases), so the last layer can add only a near-constant image, and
the 25-layer single-grid net stayed at its start (``configs/inpaint_model/single_grid.yaml``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from numnet.schemes.eed import EEDParams, eed_residual, restrict_mask

__all__ = ["FMG_ORDER", "SCALE", "INITS", "FMGNet", "InpaintUNet", "IteratedUNet", "SingleGridNet", "INPAINT_MODELS",
           "build_inpainter", "initial_guess"]

#: grid levels of the solvers in order: 0 = h, 1 = 2h, 2 = 4h (Sec. 7.2.3)
FMG_ORDER = (2, 1, 2, 1, 0, 1, 2, 1, 2, 1, 0)
#: grey values per unit of network output
SCALE = 25.5
#: initialisations of the convolutions (module docstring)
INITS = ("default", "he")
#: normalisations after the U-net's convolutions: none, or batch normalisation (Ioffe and Szegedy 2015)
NORMS = ("none", "batch")


def initial_guess(f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Known pixels, and a pull-push fill elsewhere: averages of the known pixels over 2 x 2, 4 x 4, ...
    blocks, each unknown pixel taking the finest block average that sees a known pixel (bilinear
    between blocks). A cheap, fixed interpolation; the networks learn the EED solution from it."""
    vals, wts = [f * mask], [mask]
    while min(vals[-1].shape[-2:]) > 1:
        vals.append(F.avg_pool2d(vals[-1], 2, ceil_mode=True))
        wts.append(F.avg_pool2d(wts[-1], 2, ceil_mode=True))
    u = vals[-1] / wts[-1].clamp_min(1e-12)
    for v, w in zip(reversed(vals[:-1]), reversed(wts[:-1])):
        up = F.interpolate(u, size=v.shape[-2:], mode="bilinear", align_corners=False)
        u = torch.where(w > 0, v / w.clamp_min(1e-12), up) if v is not vals[0] else up
    return mask * f + (1.0 - mask) * u


def check_init(init: str) -> str:
    if init not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
    return init


def he_init(module: nn.Module) -> None:
    """Every convolution of ``module`` from ``N(0, 2 / fan_in)`` with zero bias (module docstring)."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)


def conv_stack(c_in: int, width: int, layers: int, init: str = "default") -> nn.Sequential:
    """``layers`` 3 x 3 convolutions with ReLU between: ``c_in -> width -> ... -> width -> 1``; last one zero."""
    if layers < 2:
        raise ValueError(f"a solver needs at least 2 layers, got {layers}")
    mods: list[nn.Module] = [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU()]
    for _ in range(layers - 2):
        mods += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
    if check_init(init) == "he":
        he_init(nn.Sequential(*mods))
    last = nn.Conv2d(width, 1, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*mods, last)


def _check_size(f: torch.Tensor, factor: int) -> None:
    if f.dim() != 4 or f.shape[1] != 1 or f.shape[-1] % factor or f.shape[-2] % factor:
        raise ValueError(f"expected images shaped (N, 1, H, W) with H, W divisible by {factor}, got {tuple(f.shape)}")


class Inpainter(nn.Module):
    name = "inpainter"

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class Inputs(nn.Module):
    """The start ``u0`` and the network input ``(u0, c)``, with ``residual_input`` also the residual of
    Eq. (29) at ``u0`` (the quantity the FMG solvers see on their grids; fixed, no parameters)."""

    def __init__(self, residual_input: bool, eed: EEDParams | None = None) -> None:
        super().__init__()
        self.residual_input = bool(residual_input)
        self.eed = eed or EEDParams()
        self.channels = 3 if self.residual_input else 2

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u0 = initial_guess(f, mask)
        return u0, self.features(u0, f, mask)

    def features(self, u: torch.Tensor, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The network input at the iterate ``u``: ``(u, r(u), c)``, or ``(u, c)`` without ``residual_input``."""
        parts = [u / 255.0, mask]
        if self.residual_input:
            parts.insert(1, eed_residual(u, f, mask, self.eed) / SCALE)
        return torch.cat(parts, dim=1)


class SingleGridNet(Inpainter):
    """25 conv layers with 24 channels on the fine grid."""

    name = "single_grid"

    def __init__(self, layers: int = 25, width: int = 24, residual_input: bool = True, init: str = "default") -> None:
        super().__init__()
        self.inputs = Inputs(residual_input)
        self.net = conv_stack(self.inputs.channels, width, layers, init)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_size(f, 1)
        u0, x = self.inputs(f, mask)
        return u0 + SCALE * self.net(x)


class InpaintUNet(Inpainter):
    """U-net with addition, 3 scales, 2 conv layers per scale on each side."""

    name = "unet"

    def __init__(self, widths: tuple[int, int, int] = (17, 34, 68), residual_input: bool = True,
                 init: str = "default", norm: str = "none", layers: int = 2, passes: int = 1) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers (3 x 3 convolutions per scale and side) must be an integer >= 1, got {layers!r}")
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ValueError(f"passes (applications of the U-net, each from the last one's result) must be an integer "
                             f">= 1, got {passes!r}")
        self.passes = passes
        w1, w2, w3 = widths
        self.inputs = Inputs(residual_input)

        def conv(ci, co):
            bn = [nn.BatchNorm2d(co)] if norm == "batch" else []
            return [nn.Conv2d(ci, co, 3, padding=1), *bn, nn.ReLU()]

        def two(ci, co):
            return nn.Sequential(*conv(ci, co), *(m for _ in range(layers - 1) for m in conv(co, co)))

        self.enc1, self.enc2, self.bottom = two(self.inputs.channels, w1), two(w1, w2), two(w2, w3)
        self.up2, self.up1 = nn.Conv2d(w3, w2, 1), nn.Conv2d(w2, w1, 1)
        self.dec2, self.dec1 = two(w2, w2), two(w1, w1)
        if check_init(init) == "he":
            he_init(self)
        self.out = nn.Conv2d(w1, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_size(f, 4)
        u, x = self.inputs(f, mask)
        for k in range(self.passes):
            if k:  # the next pass starts from this one's result and sees its residual
                x = self.inputs.features(u, f, mask)
            u = u + SCALE * self.update(x)
        return u

    def update(self, x: torch.Tensor) -> torch.Tensor:
        """One down-and-up pass: the correction, in units of ``SCALE``, for the network input ``x``."""
        e1 = self.enc1(x)
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        z = self.bottom(F.avg_pool2d(e2, 2))
        d2 = self.dec2(self.up2(F.interpolate(z, scale_factor=2, mode="nearest")) + e2)
        d1 = self.dec1(self.up1(F.interpolate(d2, scale_factor=2, mode="nearest")) + e1)
        return self.out(d1)


class IteratedUNet(InpaintUNet):
    """The paper's U-net applied ``passes`` times (2 by default), each pass from the last one's result and its
    residual: a U-net iterated as a solver, as the FMG net iterates its shared solvers. Not one of the paper's
    networks, but what the end of Sec. 7.2.3 suggests: U-nets built like the FMG net, several down- and upsampling
    passes with shared weights, so that the passes add no parameters."""

    name = "unet_iter"

    def __init__(self, passes: int = 2, **unet) -> None:
        super().__init__(passes=passes, **unet)


def restrict(x: torch.Tensor) -> torch.Tensor:
    """2 x 2 averaging."""
    return F.avg_pool2d(x, 2)


def prolong(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour interpolation."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


class FMGNet(Inpainter):
    """Full multigrid network over the grids ``h, 2h, 4h`` with shared learned solvers (see module doc)."""

    name = "fmg"

    def __init__(self, layers: int = 12, width: int = 20, order: tuple[int, ...] = FMG_ORDER,
                 eed: EEDParams | None = None, init: str = "default") -> None:
        super().__init__()
        if not order or order[-1] != 0 or any(l not in (0, 1, 2) for l in order):
            raise ValueError(f"FMG order must use the levels 0 (h), 1 (2h), 2 (4h) and end on h, got {order}")
        if any(abs(a - b) != 1 for a, b in zip(order, order[1:])):
            raise ValueError(f"FMG order must move one grid at a time, got {order}")
        self.order = tuple(order)
        self.eed = eed or EEDParams()
        self.solvers = nn.ModuleList(conv_stack(3, width, layers, init) for _ in range(3))

    def operator(self, x: torch.Tensor, mask: torch.Tensor, level: int) -> torch.Tensor:
        """``N_l(x) = (1 - c) A_l(x) x - c x`` on grid ``l`` (grid size ``2^l``)."""
        return eed_residual(x, 0.0, mask, self.eed, float(2 ** level))  # Eq. (29) with f = 0

    def solve(self, level: int, x: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        res = b - self.operator(x, mask, level)
        inp = torch.cat([x / 255.0, res / SCALE, mask], dim=1)
        return x + SCALE * self.solvers[level](inp)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_size(f, 4)
        masks, fs = [mask], [f * mask]
        for _ in range(2):  # coarse data: mask by "any pixel known", values the mean of the known ones
            m_f = restrict(masks[-1] * fs[-1])
            m = restrict(masks[-1])
            masks.append(restrict_mask(masks[-1]))
            fs.append(torch.where(m > 0, m_f / m.clamp_min(1e-12), torch.zeros_like(m)))
        b_own = [-masks[l] * fs[l] for l in range(3)]
        level = self.order[0]
        x = initial_guess(fs[level], masks[level])
        b = b_own[level]
        x = self.solve(level, x, b, masks[level])
        stack: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for nxt in self.order[1:]:
            if nxt > level:  # down: FAS coarse problem
                xc = restrict(x)
                b_c = restrict(b - self.operator(x, masks[level], level)) + self.operator(xc, masks[nxt], nxt)
                stack.append((level, x, xc, b))
                x, b = xc, b_c
            elif stack and stack[-1][0] == nxt:  # up within the cycle: coarse-grid correction
                _, x_f, xc0, b_f = stack.pop()
                x, b = x_f + prolong(x - xc0), b_f
            else:  # up to a new grid: FMG interpolation, that grid's own problem
                x, b = prolong(x), b_own[nxt]
            level = nxt
            x = self.solve(level, x, b, masks[level])
        return x


INPAINT_MODELS = {cls.name: cls for cls in (SingleGridNet, InpaintUNet, FMGNet, IteratedUNet)}


def build_inpainter(name: str, **kwargs) -> Inpainter:
    if name not in INPAINT_MODELS:
        raise ValueError(f"unknown inpainting model {name!r}; choose one of {sorted(INPAINT_MODELS)}")
    return INPAINT_MODELS[name](**kwargs)
