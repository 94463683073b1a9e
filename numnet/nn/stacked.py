r"""Several two-step networks as one module with a leading network axis (packed training on a GPU).

``M`` networks of one :class:`numnet.models.denoisers.TwoStepNet` class and channel count ``C`` (activations,
normalisation rules, depths, weight sharing, ``beta`` and the weights themselves may differ) run as one
computation on states shaped ``(M, B, C, n)``; each activation's flux and each rule's normalisation act on
the networks that have it (gathered, then put back in order). Each block is Eq. (11), (20) or (21) in the common form

.. math:: u^{k+1} = a_k u^k - b_k K_k^\top \Phi(K_k u^k) + c_k u^{k-1},

with the coefficients from the class's own map (:mod:`numnet.nn.coefficients`) evaluated for all networks
at once. ``K`` and ``K^T`` (reflecting boundaries, :mod:`numnet.nn.stencil`) are one batched matrix product
each per block: the three taps stacked into a ``C x 3C`` matrix per network act on the three shifted copies
of the state, and ``K^T`` folds its two ghost entries back. Blocks past a network's depth are the identity
(``a = 1, b = c = 0``); weight sets past its count are copies of its first that nothing reads, so their
gradients and Adam's moments stay zero and they never move. The networks share no parameter, so the gradient of the
summed losses is each network's own: training the stack equals training the networks one by one up to
rounding (``tests/test_stacked.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from numnet.nn import coefficients as co
from numnet.nn.activations import flux_function
from numnet.nn.normalisation import normalise

__all__ = ["StackedTwoStep", "stack_key"]


def stack_key(model: nn.Module) -> tuple | None:
    """What networks must share to be stacked (``None``: this one cannot be)."""
    if not getattr(model, "two_step", False):
        return None
    return (type(model), model.channels, model.w.dtype)


def _groups(values: list) -> dict:
    """Each distinct value and the indices of the networks that have it, in order of first appearance."""
    out: dict = {}
    for i, v in enumerate(values):
        out.setdefault(v, []).append(i)
    return out


class StackedTwoStep(nn.Module):
    """``models`` (of one :func:`stack_key`) as one module; :meth:`load_from` and :meth:`alias` tie it to them."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        keys = {stack_key(m) for m in models}
        if not models or None in keys or len(keys) > 1:
            raise ValueError("stacked networks must be two-step networks of one class, channel count and dtype")
        first = models[0]
        self.cls, self.channels, _ = keys.pop()
        #: activation -> its networks; normalisation rule -> its networks
        self.activations = _groups([x.activation for x in models])
        self.rules = _groups([x.normalisation for x in models])
        self.n_nets = m = len(models)
        self.depth = max(x.depth for x in models)
        sets = max(x.n_sets for x in models)
        c = self.channels
        dtype = first.w.dtype
        self.w = nn.Parameter(torch.zeros(m, sets, c, c, 3, dtype=dtype))
        self.tau_raw = nn.Parameter(torch.zeros(m, sets, dtype=dtype))
        self.has_alpha = hasattr(first, "alpha_raw")
        alphas = max(x.alpha_raw.shape[0] for x in models) if self.has_alpha else 1
        self.alpha_raw = nn.Parameter(torch.zeros(m, alphas, dtype=dtype)) if self.has_alpha else None
        self.has_contrast = any(x.fluxes[0].has_contrast for x in models)
        self.log_lam = nn.Parameter(torch.zeros(m, sets, dtype=dtype)) if self.has_contrast else None
        set_idx = torch.zeros(m, self.depth, dtype=torch.long)
        alpha_idx = torch.zeros(m, self.depth, dtype=torch.long)
        active = torch.zeros(m, self.depth, dtype=torch.bool)
        for i, x in enumerate(models):
            set_idx[i, :x.depth] = torch.from_numpy(x._block_sets())
            alpha_idx[i, :x.depth] = torch.from_numpy(x._alpha_index())
            active[i, :x.depth] = True
        self.register_buffer("set_idx", set_idx, persistent=False)
        self.register_buffer("alpha_idx", alpha_idx, persistent=False)
        self.register_buffer("active", active, persistent=False)
        #: Eq. (27)'s weight per network (0 where it does not act: shared weights, beta = 0, one block)
        self.register_buffer("beta", torch.tensor([float(x.regulariser_weight()) for x in models], dtype=dtype),
                             persistent=False)
        self.register_buffer("lipschitz", torch.tensor([[float(x.lipschitz)] for x in models], dtype=dtype),
                             persistent=False)
        for name, groups in (("act", self.activations), ("rule", self.rules)):
            for k, idx in enumerate(groups.values()):
                self.register_buffer(f"_{name}{k}", torch.tensor(idx, dtype=torch.long), persistent=False)
            order = torch.tensor([i for idx in groups.values() for i in idx], dtype=torch.long)
            self.register_buffer(f"_{name}_back", torch.argsort(order), persistent=False)  # grouped order -> own
        #: whether Eq. (27) acts in any network (known here: no host read of ``beta`` in a captured step)
        self.regularised = bool((self.beta > 0).any())
        self.load_from(models)

    # -- the tie to the member networks ----------------------------------------------------------------
    def _pairs(self, model: nn.Module, i: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(member parameter, its slice of the stack) for network ``i``."""
        pairs = [(model.w, self.w[i, :model.n_sets]), (model.tau_raw, self.tau_raw[i, :model.n_sets])]
        if self.has_alpha:
            pairs.append((model.alpha_raw, self.alpha_raw[i, :model.alpha_raw.shape[0]]))
        if model.fluxes[0].has_contrast:
            pairs += [(fl.log_lam, self.log_lam[i, j]) for j, fl in enumerate(model.fluxes)]
        return pairs

    @torch.no_grad()
    def load_from(self, models: list[nn.Module]) -> None:
        """Copy the members' parameters into the stack; a network's unused slots (weight sets past its count)
        get its first set, so that they hold finite kernels with a finite bound and its gradient (a zero kernel
        has none under the provable rule: the square root of its bound)."""
        for i, model in enumerate(models):
            for p, s in self._pairs(model, i):
                s.copy_(p.detach().reshape(s.shape))
            self.w[i, model.n_sets:] = model.w[0].detach()

    def alias(self, models: list[nn.Module]) -> None:
        """Make each member's parameters views of its slice of the stack, so that the members always show the
        stack's current weights (validation, best weights, checkpoints read them); :meth:`release` undoes it."""
        for i, model in enumerate(models):
            for p, s in self._pairs(model, i):
                p.data = s.detach().view(p.shape)

    @staticmethod
    def release(model: nn.Module) -> None:
        """Give a member its own copy of its parameters (it leaves the stack)."""
        for p in model.parameters():
            p.data = p.data.clone()

    # -- the computation --------------------------------------------------------------------------------
    def coefficients(self) -> co.TwoStep:
        """The class's coefficient map on every network's blocks, each field ``(M, D)``; identity past a
        network's depth."""
        t = self.tau_raw.gather(1, self.set_idx)
        r = self.alpha_raw.gather(1, self.alpha_idx) if self.has_alpha else None
        c = co.evaluate(self.cls.coefficients, t, r, self.lipschitz)  # lip: (M, 1), one per network
        one, zero = torch.ones_like(c.a), torch.zeros_like(c.a)
        return co.TwoStep(torch.where(self.active, c.a, one), torch.where(self.active, c.b, zero),
                          torch.where(self.active, c.c, zero), c.tau, c.alpha)

    def _by(self, name: str, groups: dict, fn, x: torch.Tensor, *rest) -> torch.Tensor:
        """``fn(key, x[idx], *rest[idx])`` for each group of networks, put back in the networks' order (one call
        on all of them where they share the key)."""
        if len(groups) == 1:
            return fn(next(iter(groups)), x, *rest)
        parts = []
        for k, key in enumerate(groups):
            idx = getattr(self, f"_{name}{k}")
            parts.append(fn(key, x[idx], *[None if v is None else v[idx] for v in rest]))
        return torch.cat(parts)[getattr(self, f"_{name}_back")]

    def kernels(self) -> torch.Tensor:
        """The normalised kernels of every weight set, ``(M, S, C, C, 3)``, each network by its own rule."""
        return self._by("rule", self.rules, lambda rule, w: normalise(w, rule), self.w)

    def _flux(self, s: torch.Tensor, lam: torch.Tensor | None) -> torch.Tensor:
        """``Phi(s)`` of each network's activation (``lam``: ``(M, 1, 1, 1)`` contrast parameters or ``None``)."""
        return self._by("act", self.activations, lambda act, x, lm: flux_function(act)(x, lm), s, lam)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """The outputs ``(M, B, 1, n)`` of the networks on their inputs ``f`` ``(M, B, 1, n)``."""
        return self._run(f)[0]

    def _run(self, f: torch.Tensor) -> tuple[torch.Tensor, co.TwoStep, torch.Tensor]:
        m, c = self.n_nets, self.channels
        if f.dim() != 4 or f.shape[0] != m or f.shape[2] != 1:
            raise ValueError(f"expected inputs shaped ({m}, B, 1, n), got {tuple(f.shape)}")
        coef = self.coefficients()
        kn = self.kernels()
        lam = self.log_lam.exp().gather(1, self.set_idx) if self.has_contrast else None
        a, b, cc = (x.view(m, self.depth, 1, 1, 1) for x in coef[:3])  # per network and block, broadcast on states
        u = f.expand(-1, -1, c, -1)
        prev = u
        for d in range(self.depth):
            k = kn[torch.arange(m, device=kn.device), self.set_idx[:, d]]  # (M, C, C, 3)
            k3 = k.permute(0, 1, 3, 2).reshape(m, 1, c, 3 * c)  # taps side by side: rows (out), (tap, in)
            s = k3 @ _taps(u)
            phi = self._flux(s, None if lam is None else lam[:, d].view(m, 1, 1, 1))
            kt_phi = _transpose(k3, phi)
            prev, u = u, a[:, d] * u - b[:, d] * kt_phi + cc[:, d] * prev
        return u.mean(dim=2, keepdim=True) if c > 1 else u, coef, kn

    def losses(self, f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per network, the MSE on its minibatch plus its Eq. (27) regulariser, ``(M,)``."""
        out, coef, kn = self._run(f)
        mse = (out - target).pow(2).flatten(1).mean(dim=1)
        if not self.regularised:
            return mse
        # Eq. (27): beta sum_k ||theta_k - theta_{k-1}||^2 / tau_k over the blocks k >= 1 of networks with own
        # weights (set k = block k); theta: normalised kernels and log lambda; tau held fixed
        sets = min(kn.shape[1], self.depth)
        sq = (kn[:, 1:sets] - kn[:, :sets - 1]).pow(2).flatten(2).sum(dim=2)
        if self.has_contrast:
            sq = sq + (self.log_lam[:, 1:sets] - self.log_lam[:, :sets - 1]).pow(2)
        tau = coef.tau.detach()[:, 1:sets]
        acts = self.active[:, 1:sets] & (self.beta > 0)[:, None]
        reg = torch.where(acts, sq / tau, torch.zeros_like(sq)).sum(dim=1)
        return mse + self.beta * reg


def _taps(u: torch.Tensor) -> torch.Tensor:
    """``(M, B, C, n)`` -> ``(M, B, 3C, n)``: the state shifted by -1, 0, +1 with reflecting ghosts."""
    up = torch.cat([u[..., :1], u, u[..., -1:]], dim=-1)
    n = u.shape[-1]
    return torch.cat([up[..., :n], up[..., 1:n + 1], up[..., 2:]], dim=2)


def _transpose(k3: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``K^T v`` for the tap matrices ``k3`` ``(M, 1, C, 3C)``: each tap's transpose applied, the results
    shifted into a signal two samples longer and its ghost entries folded back (:func:`numnet.nn.stencil.apply_kt`)."""
    c = v.shape[2]
    z = k3.transpose(-1, -2) @ v  # (M, B, 3C, n): tap t's K_t^T v
    y = F.pad(z[:, :, :c], (0, 2)) + F.pad(z[:, :, c:2 * c], (1, 1)) + F.pad(z[:, :, 2 * c:], (2, 0))
    return torch.cat([y[..., 1:2] + y[..., :1], y[..., 2:-2], y[..., -2:-1] + y[..., -1:]], dim=-1)
