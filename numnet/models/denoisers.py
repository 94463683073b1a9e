"""1D denoising networks of Sec. 7.1: ResNet, symmetric ResNet, Du Fort--Frankel and FSI.

All networks take and return signals shaped ``(N, 1, n)``. With ``channels = C`` the input
is copied into ``C`` channels, the blocks act on ``C x C`` block convolutions, and the output
is the channel average (Sec. 7.1.5). With ``shared = True`` all blocks use one set of
weights (Sec. 7.1.2); otherwise each block owns its weights (Sec. 7.1.4--7.1.5), and
``beta > 0`` adds the smoothness regulariser of Eq. (27) (:meth:`Denoiser1D.regulariser`).

Numerical parameters are trainable but constrained by reparametrisation, so that every
value the optimiser can reach satisfies the stability condition the paper derives, given
``||K||_2 <= 1``. The provable normalisation (``normalisation="provable"``) guarantees that; the
paper's rule, the default because it is the model the paper trains, does not (Sec. 3.3,
:mod:`numnet.nn.normalisation`; :meth:`Denoiser1D.condition_ratios` measures what is left):

* symmetric ResNet: ``tau = (2/L) sigmoid(t)`` -- Eq. (14) with ``||K||_2 <= 1``;
* Du Fort--Frankel: ``alpha = L/4 + softplus(a)`` -- Eq. (56); ``tau = softplus(t) > 0``;
* FSI: ``alpha_l = 2 sigmoid(a_l)`` in ``[0, 2]`` (Sec. 7.1.1) and ``tau`` as above.

Initialisation as in Sec. 7.1.1: kernels U[-0.1, 0.1], lambda = 15, tau = 1, alpha = 1.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from numnet.nn import coefficients as co
from numnet.nn.activations import Flux, build_flux
from numnet.nn.blocks import dufort_frankel_weights, resnet_step, two_step_block
from numnet.nn.coefficients import TwoStep
from numnet.nn.normalisation import check_normalisation, normalise
from numnet.nn.stencil import spectral_norm

__all__ = ["Denoiser1D", "TwoStepNet", "ResNet", "SymResNet", "DuFortFrankelNet", "FSINet"]


def _inv_sigmoid(p: float) -> float:
    return math.log(p / (1.0 - p))


def _inv_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"model.{name} must be an integer >= 1, got {value!r}")
    return value


class Denoiser1D(nn.Module):
    """Common structure: channel copy, ``depth`` blocks, channel average; ``evolve`` returns all states."""

    name: str = "denoiser"
    #: whether the blocks apply normalised kernels (``model.normalisation``, Sec. 3.3)
    normalises: bool = True

    def __init__(
        self,
        depth: int,
        channels: int = 1,
        shared: bool = True,
        activation: str = "perona_malik",
        lam: float = 15.0,
        kernel_init: float = 0.1,
        beta: float = 0.0,
        normalisation: str = "paper",
    ) -> None:
        super().__init__()
        #: rule that rescales the kernels (Sec. 3.3, :func:`numnet.nn.normalisation.normalise`): ``paper`` or ``provable``
        self.normalisation = check_normalisation(normalisation)
        self.depth = _check_positive_int("depth", depth)
        self.channels = _check_positive_int("channels", channels)
        self.shared = bool(shared)
        if not kernel_init > 0:
            raise ValueError(f"model.kernel_init must be > 0, got {kernel_init}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ValueError(f"model.beta (smoothness weight of Eq. 27) must be a number >= 0, got {beta!r}")
        self.beta = float(beta)
        self.n_sets = 1 if self.shared else self.depth
        self.fluxes = nn.ModuleList(build_flux(activation, lam) for _ in range(self.n_sets))
        self.activation = activation
        self.kernel_init = kernel_init

    @property
    def lipschitz(self) -> float:
        return self.fluxes[0].lipschitz

    def _kernels(self) -> nn.Parameter:
        c = self.channels
        w = torch.empty(self.n_sets, c, c, 3).uniform_(-self.kernel_init, self.kernel_init)
        return nn.Parameter(w)

    def idx(self, k: int) -> int:
        """Index of the weight set used by block ``k``."""
        return 0 if self.shared else k

    def flux(self, k: int) -> Flux:
        return self.fluxes[self.idx(k)]

    def weights(self, i: int) -> dict:
        """Derived (constrained) weights of weight set ``i``, computed once per forward pass."""
        raise NotImplementedError

    def step(self, k: int, u: torch.Tensor, u_prev: torch.Tensor, p: dict) -> torch.Tensor:
        """Block ``k`` applied to state ``u`` (``u_prev``: the state before) with weights ``p``."""
        raise NotImplementedError

    def normalised(self, w: torch.Tensor) -> torch.Tensor:
        """Kernels ``w`` (one set or a stack) as the blocks apply them, by the model's normalisation rule."""
        return normalise(w, self.normalisation)

    def _all_weights(self) -> list[dict]:
        if hasattr(self, "w"):  # normalised kernels: all sets in one call (one batched bound)
            kn = self.normalised(self.w)
            return [self.weights(i, kn[i]) for i in range(self.n_sets)]
        return [self.weights(i) for i in range(self.n_sets)]

    def _lift(self, f: torch.Tensor) -> torch.Tensor:
        """The input ``(N, 1, n)`` copied into the ``C`` channels (Sec. 7.1.5)."""
        if f.dim() != 3 or f.shape[1] != 1:
            raise ValueError(f"expected signals shaped (N, 1, n), got {tuple(f.shape)}")
        return f.expand(-1, self.channels, -1).contiguous() if self.channels > 1 else f

    def evolve(self, f: torch.Tensor) -> list[torch.Tensor]:
        """States ``u^0 ... u^K`` with all ``C`` channels, each shaped ``(N, C, n)``."""
        u = self._lift(f)
        states = [u]
        prev = u
        ws = self._all_weights()
        for k in range(self.depth):
            nxt = self.step(k, u, prev, ws[self.idx(k)])
            prev, u = u, nxt
            states.append(u)
        return states

    #: use the compiled CPU paths where the architecture has them (``model.fused``; the same numbers as eager)
    fused: bool = False
    #: whether the blocks are of the two-step form with a coefficient map (:class:`TwoStepNet`)
    two_step: bool = False

    def _block_sets(self) -> np.ndarray:
        """The weight set of every block, :meth:`idx` as an array for the fused kernels."""
        return np.zeros(self.depth, dtype=np.int64) if self.shared else np.arange(self.depth, dtype=np.int64)

    def _per_block(self, x: torch.Tensor) -> torch.Tensor:
        """Per-set values (first dimension ``n_sets``) repeated for the blocks that use them."""
        return x.expand(self.depth, *x.shape[1:]) if self.shared else x

    def _fused_applies(self, f: torch.Tensor) -> bool:
        """Whether the compiled CPU kernels can take ``f``: ``fused`` set, numba present, one channel, a CPU
        signal of length >= 3."""
        from numnet.nn.fused import HAVE_NUMBA

        return self.fused and HAVE_NUMBA and self.channels == 1 and f.device.type == "cpu" and f.shape[-1] >= 3

    def uses_fused(self, f: torch.Tensor) -> bool:
        """Whether the forward pass runs in the fused two-step kernel (two-step architectures)."""
        return self.two_step and self._fused_applies(f)

    def uses_matmul(self, f: torch.Tensor) -> bool:
        """Whether the forward pass of a multi-channel network runs as matrix products
        (:mod:`numnet.nn.multichannel`): ``fused`` set, ``C > 1``, a two-step architecture, a CPU signal."""
        from numnet.nn.multichannel import can_use_matmul

        return self.fused and self.two_step and self.channels > 1 and can_use_matmul(f)

    def fused_mse_step(self, f: torch.Tensor, target: torch.Tensor, accumulate: bool = True) -> float | None:
        """Mean squared error of the network on ``f`` against ``target``, with the gradient of the MSE plus
        the regulariser of Eq. (27) (:meth:`regulariser`, where it acts) added to the ``.grad`` of every
        trainable parameter (written over it unless ``accumulate``), in one compiled call (forward, loss
        and backward per signal; :class:`numnet.nn.fused.FusedStep`). The same numbers as
        ``(F.mse_loss(self(f), target) + self.regulariser()).backward()`` up to rounding, without the
        autograd graph. Returns the loss value, or ``None`` where the fused step does not apply (the caller then
        takes the autograd path)."""
        if not self._fused_applies(f) or target.shape != f.shape:
            return None
        step = self.__dict__.get("_fused_step")
        if step is None or not step.valid():
            step = self._build_fused_step()
            if step is None:
                return None
            self.__dict__["_fused_step"] = step  # a plain attribute: not a module, parameter or buffer
        return step(f, target, accumulate)

    def _build_fused_step(self):
        """The architecture's compiled training step, or ``None`` where it has none."""
        return None

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_fused_step", None)  # views of this instance's tensors: never copied or pickled
        return state

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        u = self._lift(f)
        if self.uses_fused(f):
            return self._fused_forward(f)
        if self.uses_matmul(f):
            return self._matmul_forward(f)
        prev = u
        ws = self._all_weights()
        for k in range(self.depth):
            prev, u = u, self.step(k, u, prev, ws[self.idx(k)])
        return u.mean(dim=1, keepdim=True) if self.channels > 1 else u

    # -- smoothness regulariser of Sec. 7.1.4 ------------------------------------------------
    def smooth_parameters(self) -> list[torch.Tensor]:
        """The per-block parameters ``theta^k`` that Eq. (27) ties together, each shaped ``(n_sets, ...)``:
        the kernels as the blocks apply them and the contrast parameters (log lambda). Numerical
        parameters (time steps, extrapolation weights) are left out, as in the paper."""
        groups = [self.normalised(self.w)]
        if self.fluxes[0].has_contrast:
            groups.append(torch.stack([fl.log_lam for fl in self.fluxes]))
        return groups

    def regulariser_steps(self) -> torch.Tensor:
        """Time step ``tau_k`` of each block in Eq. (27): the block's own (learned) step, held fixed
        in the regulariser so that it does not act on the numerical parameters."""
        return self.tau(slice(None)).detach()

    def regulariser_weight(self) -> float:
        """``beta`` where Eq. (27) acts (own weights, ``beta > 0``, two blocks or more), else 0."""
        return 0.0 if self.shared or self.depth < 2 else self.beta

    def regulariser(self) -> torch.Tensor | None:
        """Eq. (27): ``beta sum_k tau_k ||(theta^k - theta^{k-1}) / tau_k||^2`` over the blocks ``k = 1..K-1``;
        ``None`` with shared weights, ``beta = 0`` or a single block (nothing to regularise)."""
        if self.shared or self.beta == 0 or self.depth < 2:
            return None
        sq = sum(((g[1:] - g[:-1]) ** 2).reshape(self.depth - 1, -1).sum(dim=1) for g in self.smooth_parameters())
        return self.beta * (sq / self.regulariser_steps()[1:]).sum()

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @torch.no_grad()
    def stability(self) -> dict[str, float]:
        """Quantities of the stability theory for logging (first weight set)."""
        return {"lipschitz": self.lipschitz}

    @torch.no_grad()
    def kernel_norms(self, n: int = 256) -> list[float]:
        """``||K||_2`` of each weight set's kernels as the blocks apply them (power iteration, length ``n``)."""
        return [spectral_norm(self.normalised(self.w[i]), n) for i in range(self.n_sets)] if self.normalises else []

    #: the stability condition that :meth:`condition_ratios` measures, for tables
    condition: str | None = None

    @torch.no_grad()
    def condition_ratios(self, norms: list[float]) -> list[float]:
        """Per weight set, the quantity of the architecture's stability condition over its bound, given the
        sets' ``||K||_2`` (``norms``): at most 1 where the condition holds (:attr:`condition`)."""
        return []

    @torch.no_grad()
    def kernel_table(self, max_rows: int = 64) -> tuple[list[str], list[list]]:
        """Learned kernels as table rows ``(block set, name, out, in, w_-1, w_0, w_+1)``; the kernels the
        blocks apply (normalised where the architecture normalises)."""
        rows = []
        for i in range(self.n_sets):
            for name, w in self.applied_kernels(i).items():
                for a in range(w.shape[0]):
                    for b in range(w.shape[1]):
                        rows.append([i, name, a, b, *[round(float(x), 6) for x in w[a, b]]])
        return ["set", "kernel", "out", "in", "w_-1", "w_0", "w_+1"], rows[:max_rows]

    def applied_kernels(self, i: int) -> dict[str, torch.Tensor]:
        return {"k": self.normalised(self.w[i])}


class ResNet(Denoiser1D):
    """Standard ResNet, Eq. (6) with ``sigma_2 = Id``: two free kernels and two biases per block."""

    name = "resnet"
    normalises = False

    def __init__(self, depth: int, fused: bool = True, **kw) -> None:
        super().__init__(depth, **kw)
        #: train with the compiled one-channel CPU step (:mod:`numnet.nn.fused_resnet`); same numbers as eager
        self.fused = bool(fused)
        self.w1 = self._kernels()
        self.w2 = self._kernels()
        self.b1 = nn.Parameter(torch.zeros(self.n_sets, self.channels))
        self.b2 = nn.Parameter(torch.zeros(self.n_sets, self.channels))

    def applied_kernels(self, i):
        return {"k1": self.w1[i], "k2": self.w2[i]}

    def smooth_parameters(self):
        groups = [self.w1, self.w2, self.b1, self.b2]
        if self.fluxes[0].has_contrast:
            groups.append(torch.stack([fl.log_lam for fl in self.fluxes]))
        return groups

    def regulariser_steps(self):
        """No time step is learned: ``tau = 1 / depth`` (Sec. 7.1.4)."""
        return torch.full((self.depth,), 1.0 / self.depth, dtype=self.w1.dtype)

    @torch.no_grad()
    def stability(self) -> dict[str, float]:
        return {"lipschitz": self.lipschitz, "norm_W1": spectral_norm(self.w1[0]), "norm_W2": spectral_norm(self.w2[0])}

    def weights(self, i):
        return {"w1": self.w1[i], "b1": self.b1[i], "w2": self.w2[i], "b2": self.b2[i], "act": self.fluxes[i]}

    def _build_fused_step(self):
        from numnet.nn.fused_resnet import FusedResNetStep

        lams = [fl.log_lam for fl in self.fluxes] if self.fluxes[0].has_contrast else None
        own = [self.w1, self.w2, self.b1, self.b2, *(lams or [])]
        if not all(p.requires_grad for p in own) or len(own) != len(list(self.parameters())):
            return None  # a frozen parameter or one the fused step does not know: autograd
        return FusedResNetStep(self.w1, self.w2, self.b1, self.b2, lams, self._block_sets(), self.activation,
                               self.regulariser_weight())

    def step(self, k, u, u_prev, p):
        return resnet_step(u, p["w1"], p["b1"], p["w2"], p["b2"], p["act"])


class TwoStepNet(Denoiser1D):
    r"""Networks whose blocks are the two-step form of Eq. (11), (20) and (21),
    :math:`u^{k+1} = a_k u^k - b_k K_k^\top \Phi(K_k u^k) + c_k u^{k-1}` (:math:`u^{-1} := u^0`), with
    normalised kernels ``w``, time-step parameters ``tau_raw`` (one per weight set) and, where the
    architecture has them, extrapolation parameters ``alpha_raw`` (per set, or per block with
    :attr:`alpha_per_block`).

    A subclass states in :meth:`coefficients`, once, how a block's raw parameters become its coefficients
    (:mod:`numnet.nn.coefficients`); the eager blocks, the matrix path for ``C > 1``, the compiled
    one-channel kernel and its training step all read that map. With one channel on the CPU,
    ``fused=True`` runs all blocks in one compiled kernel with hand-derived gradients
    (:mod:`numnet.nn.fused`); the numbers equal the eager path's."""

    two_step = True
    #: one extrapolation parameter per block (FSI's cycle weights) instead of one per weight set
    alpha_per_block = False

    @staticmethod
    def coefficients(t, r, lip: float) -> TwoStep:
        """The block's :class:`TwoStep` from its raw time-step parameter ``t`` and extrapolation parameter ``r``
        (``None`` where the network has none), for a flux of Lipschitz constant ``lip``; written with
        arithmetic and :mod:`numnet.nn.coefficients`' functions, so that it runs on tensors and on symbols."""
        raise NotImplementedError

    def __init__(self, depth: int, fused: bool = True, **kw) -> None:
        super().__init__(depth, **kw)
        self.fused = bool(fused)
        self.w = self._kernels()

    def _alpha_index(self) -> np.ndarray:
        """The extrapolation parameter of every block."""
        return np.arange(self.depth, dtype=np.int64) if self.alpha_per_block else self._block_sets()

    def block_coefficients(self) -> TwoStep:
        """The coefficient map on every block's raw parameters: each field a tensor shaped ``(D,)``."""
        alpha = getattr(self, "alpha_raw", None)
        r = None if alpha is None else alpha[torch.from_numpy(self._alpha_index())]
        return co.evaluate(type(self).coefficients, self._per_block(self.tau_raw), r, self.lipschitz)

    def _block_of_set(self, i: int) -> int:
        return 0 if self.shared else i

    def tau(self, i: int = 0) -> torch.Tensor:
        """Time step of weight set ``i``."""
        return self.block_coefficients().tau[self._block_of_set(i)]

    def kernel(self, i: int = 0) -> torch.Tensor:
        """Kernels of weight set ``i`` as the blocks apply them (``||K||_2 <= 1`` under the provable rule)."""
        return self.normalised(self.w[i])

    def weights(self, i, k=None):
        return {"w": self.normalised(self.w[i]) if k is None else k, "flux": self.fluxes[i]}

    def _all_weights(self) -> list[dict]:
        kn = self.normalised(self.w)  # all sets in one call (one batched bound)
        coef = self.block_coefficients()
        return [dict(self.weights(i, kn[i]), coef=coef) for i in range(self.n_sets)]

    def step(self, k, u, u_prev, p):
        c = p["coef"]
        return two_step_block(u, u_prev, p["w"], c.a[k], c.b[k], c.c[k], p["flux"])

    def fused_coefficients(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a, b, c)``, each ``(D,)``, of every block."""
        return self.block_coefficients()[:3]

    def regulariser_steps(self) -> torch.Tensor:
        return self.block_coefficients().tau.detach()

    def _block_lams(self, dtype: torch.dtype) -> torch.Tensor:
        """The contrast parameter of every block (ones for fluxes without one)."""
        if self.fluxes[0].has_contrast:
            return self._per_block(torch.stack([fl.lam for fl in self.fluxes]))
        return torch.ones(self.depth, dtype=dtype)

    def _fused_forward(self, f: torch.Tensor) -> torch.Tensor:
        from numnet.nn.fused import fused_two_step

        a, b, c = self.fused_coefficients()
        return fused_two_step(f, self.w, self._block_sets(), a, b, c, self._block_lams(f.dtype), self.activation,
                              self.normalisation)

    def _matmul_forward(self, f: torch.Tensor) -> torch.Tensor:
        from numnet.nn.multichannel import two_step_matmul

        a, b, c = self.fused_coefficients()
        u = two_step_matmul(self._lift(f), self.normalised(self.w), self._block_sets(), a, b, c,
                            self._block_lams(f.dtype), self.activation)
        return u.mean(dim=1, keepdim=True)

    def _build_fused_step(self):
        from numnet.nn.fused import FusedStep

        alpha = getattr(self, "alpha_raw", None)
        lams = [fl.log_lam for fl in self.fluxes] if self.fluxes[0].has_contrast else None
        covered = {id(p) for p in [self.w, self.tau_raw, alpha, *(lams or [])] if p is not None and p.requires_grad}
        if covered != {id(p) for p in self.parameters() if p.requires_grad}:
            return None  # a parameter the fused step does not know: autograd
        tape = co.record(type(self).coefficients, self.lipschitz)
        return FusedStep(self.w, self.tau_raw, alpha, lams, self._block_sets(), self._alpha_index(), self.activation,
                         tape, self.normalisation, self.regulariser_weight())


class SymResNet(TwoStepNet):
    """Symmetric ResNet of diffusion blocks, Eq. (11), Theorem 1; ``tau = (2/L) sigmoid(t) <= 2/L``
    (Eq. 14 with ``||K||_2 <= 1``)."""

    name = "symresnet"

    @staticmethod
    def coefficients(t, r, lip):
        tau = (2.0 / lip) * co.sigmoid(t)
        return TwoStep(1.0, tau, 0.0, tau)

    def __init__(self, depth: int, tau_init: float = 1.0, **kw) -> None:
        super().__init__(depth, **kw)
        bound = 2.0 / self.lipschitz
        if not 0 < tau_init < bound:
            raise ValueError(f"model.tau_init must lie in (0, 2/L) = (0, {bound:g}) (Eq. 14), got {tau_init}")
        self.tau_raw = nn.Parameter(torch.full((self.n_sets,), _inv_sigmoid(tau_init / bound)))

    @torch.no_grad()
    def stability(self) -> dict[str, float]:
        return {"lipschitz": self.lipschitz, "tau": float(self.tau(0)), "tau_bound": 2.0 / self.lipschitz,
                "norm_K": spectral_norm(self.kernel(0))}

    condition = "tau L ||K||_2^2 <= 2 (Theorem 2, Eq. 14)"

    @torch.no_grad()
    def condition_ratios(self, norms):
        return [float(self.tau(i)) * self.lipschitz * k**2 / 2.0 for i, k in enumerate(norms)]


class DuFortFrankelNet(TwoStepNet):
    """Du Fort--Frankel network, Eq. (20); ``tau = softplus(t) > 0``, ``alpha = L/4 + softplus(r)``
    (Eq. 56); ``u^{-1} := u^0``."""

    name = "dufort_frankel"

    @staticmethod
    def coefficients(t, r, lip):
        tau = co.softplus(t)
        alpha = lip / 4.0 + co.softplus(r)
        c_now, c_prev = dufort_frankel_weights(tau, alpha)  # Eq. (20): c_now (u - K^T Phi(K u) / (2 alpha))
        return TwoStep(c_now, c_now * 0.5 / alpha, c_prev, tau, alpha)

    def __init__(self, depth: int, tau_init: float = 1.0, alpha_init: float = 1.0, **kw) -> None:
        super().__init__(depth, **kw)
        if not tau_init > 0:
            raise ValueError(f"model.tau_init must be > 0, got {tau_init}")
        low = self.lipschitz / 4.0
        if not alpha_init > low:
            raise ValueError(f"model.alpha_init must be > L/4 = {low:g} (Eq. 56), got {alpha_init}")
        self.tau_raw = nn.Parameter(torch.full((self.n_sets,), _inv_softplus(tau_init)))
        self.alpha_raw = nn.Parameter(torch.full((self.n_sets,), _inv_softplus(alpha_init - low)))

    def alpha(self, i: int = 0) -> torch.Tensor:
        """Extrapolation weight of weight set ``i``."""
        return self.block_coefficients().alpha[self._block_of_set(i)]

    @torch.no_grad()
    def stability(self) -> dict[str, float]:
        return {
            "lipschitz": self.lipschitz,
            "tau": float(self.tau(0)),
            "alpha": float(self.alpha(0)),
            "alpha_bound": self.lipschitz / 4.0,
            "norm_K": spectral_norm(self.kernel(0)),
        }

    condition = "alpha >= L ||K||_2^2 / 4 (Eq. 56)"

    @torch.no_grad()
    def condition_ratios(self, norms):
        return [self.lipschitz * k**2 / (4.0 * float(self.alpha(i))) for i, k in enumerate(norms)]


class FSINet(TwoStepNet):
    """FSI network, Eq. (21): one cycle over all blocks, ``tau = (2/L) sigmoid(t)`` as Eq. (14) and a
    trainable ``alpha_l = 2 sigmoid(r_l)`` in ``[0, 2]`` per block (Sec. 7.1.1)."""

    name = "fsi"
    alpha_per_block = True

    @staticmethod
    def coefficients(t, r, lip):
        tau = (2.0 / lip) * co.sigmoid(t)
        alpha = 2.0 * co.sigmoid(r)
        return TwoStep(alpha, alpha * tau, 1.0 - alpha, tau, alpha)

    def __init__(self, depth: int, tau_init: float = 1.0, alpha_init: float = 1.0, **kw) -> None:
        super().__init__(depth, **kw)
        bound = 2.0 / self.lipschitz
        if not 0 < tau_init < bound:
            raise ValueError(f"model.tau_init must lie in (0, 2/L) = (0, {bound:g}) (Eq. 14), got {tau_init}")
        if not 0 < alpha_init < 2:
            raise ValueError(f"model.alpha_init (FSI extrapolation weight) must lie in (0, 2), got {alpha_init}")
        self.tau_raw = nn.Parameter(torch.full((self.n_sets,), _inv_sigmoid(tau_init / bound)))
        self.alpha_raw = nn.Parameter(torch.full((self.depth,), _inv_sigmoid(alpha_init / 2.0)))

    def alpha(self, k: int) -> torch.Tensor:
        """Extrapolation weight of block ``k``."""
        return self.block_coefficients().alpha[k]

    @torch.no_grad()
    def stability(self) -> dict[str, float]:
        return {"lipschitz": self.lipschitz, "tau": float(self.tau(0)), "tau_bound": 2.0 / self.lipschitz,
                "norm_K": spectral_norm(self.kernel(0))}

    condition = "tau L ||K||_2^2 <= 2 in every inner step (Eq. 14, 21)"
    condition_ratios = SymResNet.condition_ratios  # the inner steps are the symmetric ResNet's (Eq. 14)
