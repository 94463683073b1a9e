r"""Architectures as data: how a two-step block's raw parameters become its coefficients.

The symmetric ResNet (Eq. 11), Du Fort--Frankel (Eq. 20) and FSI (Eq. 21) blocks are all

.. math:: u^{k+1} = a_k u^k - b_k K_k^\top \Phi(K_k u^k) + c_k u^{k-1}, \qquad u^{-1} := u^0,

and differ only in how the trainable raw parameters ``t`` (time step) and ``r`` (extrapolation) of a
block become ``(a, b, c)`` and its time step ``tau``, constrained so that the stability condition holds
(Eq. 14: ``tau <= 2/L``; Eq. 56: ``alpha >= L/4``; Sec. 7.1.1: FSI weights in ``[0, 2]``). An
architecture states that map once, as a function ``coefficients(t, r, lip) -> TwoStep`` written with
arithmetic and the functions of this module (:func:`sigmoid`, :func:`softplus`, :func:`exp`). Like a
Butcher tableau it is read by several engines:

* called on torch tensors it is the eager path's (and the matrix path's) map, differentiated by autograd;
* called on :class:`Sym` symbols (:func:`record`) it records a :class:`Tape`, a straight-line program of
  a few registers, which the compiled training step (:mod:`numnet.nn.fused`) evaluates for every block
  and differentiates in reverse mode, without a torch call per step.

So adding an architecture of this form is one class with its ``coefficients``; no engine changes.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TwoStep", "Sym", "Tape", "OPS", "sigmoid", "softplus", "exp", "record", "evaluate"]

#: opcodes of a tape (the compiled evaluator in :mod:`numnet.nn.fused` reads the same numbers)
OPS = {"const": 0, "t": 1, "r": 2, "add": 3, "sub": 4, "mul": 5, "div": 6, "sigmoid": 7, "softplus": 8, "exp": 9}

#: ``softplus(x) = x`` above this, as ``torch.nn.functional.softplus`` computes it
SOFTPLUS_THRESHOLD = 20.0


class TwoStep(NamedTuple):
    """The coefficients of the blocks (per block, or a float for all) and the quantities the stability
    conditions name: ``tau`` (Eq. 14, 27) and, where the architecture has one, ``alpha`` (Eq. 21, 56)."""

    a: object
    b: object
    c: object
    tau: object
    alpha: object = None


class _Builder:
    """The registers of a tape being recorded."""

    def __init__(self) -> None:
        self.op: list[int] = []
        self.args: list[tuple[int, int]] = []
        self.val: list[float] = []

    def add(self, op: str, x: int = -1, y: int = -1, val: float = 0.0) -> "Sym":
        self.op.append(OPS[op])
        self.args.append((x, y))
        self.val.append(float(val))
        return Sym(self, len(self.op) - 1)

    def reg(self, v) -> int:
        """The register of ``v``: a symbol of this tape, or a new constant."""
        if isinstance(v, Sym):
            if v.builder is not self:
                raise ValueError("a symbol of another tape")
            return v.reg
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return self.add("const", val=v).reg
        raise TypeError(f"a coefficient map may combine symbols and numbers only, got {type(v).__name__}")


class Sym:
    """A register of a tape being recorded: arithmetic with symbols and numbers records new registers."""

    __slots__ = ("builder", "reg")

    def __init__(self, builder: _Builder, reg: int) -> None:
        self.builder, self.reg = builder, reg

    def _bin(self, op: str, x, y) -> "Sym":
        b = self.builder
        return b.add(op, b.reg(x), b.reg(y))

    def __add__(self, o):
        return self._bin("add", self, o)

    def __radd__(self, o):
        return self._bin("add", o, self)

    def __sub__(self, o):
        return self._bin("sub", self, o)

    def __rsub__(self, o):
        return self._bin("sub", o, self)

    def __mul__(self, o):
        return self._bin("mul", self, o)

    def __rmul__(self, o):
        return self._bin("mul", o, self)

    def __truediv__(self, o):
        return self._bin("div", self, o)

    def __rtruediv__(self, o):
        return self._bin("div", o, self)

    def __neg__(self):
        return self._bin("sub", 0.0, self)


def _unary(op: str, x, torch_fn: Callable, float_fn: Callable):
    if isinstance(x, Sym):
        return x.builder.add(op, x.reg)
    if isinstance(x, torch.Tensor):
        return torch_fn(x)
    return float_fn(float(x))


def sigmoid(x):
    """``1 / (1 + e^-x)`` of a symbol, a tensor or a number."""
    return _unary("sigmoid", x, torch.sigmoid, lambda v: 1.0 / (1.0 + math.exp(-v)))


def softplus(x):
    """``log(1 + e^x)`` (``x`` above 20), as ``torch.nn.functional.softplus``."""
    return _unary("softplus", x, F.softplus, lambda v: v if v > SOFTPLUS_THRESHOLD else math.log1p(math.exp(v)))


def exp(x):
    """``e^x``."""
    return _unary("exp", x, torch.exp, math.exp)


class Tape(NamedTuple):
    """A recorded coefficient map: register ``k`` is ``op[k]`` of registers ``args[k]`` (or the constant
    ``val[k]``, or the block's raw ``t`` / ``r``); ``out`` holds the registers of ``a``, ``b``, ``c`` and
    ``tau``; ``uses_r`` whether the map reads ``r``."""

    op: np.ndarray
    args: np.ndarray
    val: np.ndarray
    out: np.ndarray
    uses_r: bool


def record(fn: Callable[..., TwoStep], lip: float) -> Tape:
    """The tape of ``fn(t, r, lip)`` for a flux of Lipschitz constant ``lip``."""
    b = _Builder()
    t, r = b.add("t"), b.add("r")
    co = fn(t, r, float(lip))
    if not isinstance(co, TwoStep):
        raise TypeError(f"a coefficient map returns a TwoStep, got {type(co).__name__}")
    out = np.array([b.reg(v) for v in (co.a, co.b, co.c, co.tau)], dtype=np.int64)
    read = {x for pair in b.args for x in pair}
    return Tape(np.array(b.op, dtype=np.int64), np.array(b.args, dtype=np.int64).reshape(-1, 2),
                np.array(b.val, dtype=np.float64), out, r.reg in read or r.reg in set(out.tolist()))


def evaluate(fn: Callable[..., TwoStep], t: torch.Tensor, r: torch.Tensor | None,
             lip: float | torch.Tensor) -> TwoStep:
    """``fn`` on the per-block raw parameters ``t`` (D,) and ``r`` (D,) or ``None``: every field a tensor
    shaped like ``t`` (numbers broadcast), ``alpha`` ``None`` where the architecture has none. ``lip``: a
    number, or a tensor that broadcasts against ``t`` (one per network of a stack)."""
    co = fn(t, r, lip if isinstance(lip, torch.Tensor) else float(lip))

    def full(v):
        return v if isinstance(v, torch.Tensor) else torch.full_like(t, float(v))

    return TwoStep(*(full(v) for v in co[:4]), None if co.alpha is None else full(co.alpha))
