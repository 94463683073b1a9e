"""Piecewise-affine 1D signals with Gaussian noise (Sec. 7.1.1).

Signals of length ``n`` (256 in the paper) consist of affine segments whose lengths lie in
``[n/10, n/2]``; each segment has independent end values drawn from ``U[0, 255]``, so values
stay in ``[0, 255]`` and the signal jumps between segments. The last segment is cut off at the end of
the signal; the paper leaves open what happens when that leaves it shorter than ``n/10``. Two readings,
``task.short_last``: ``reject`` (the default) draws the segment lengths again, so every segment
respects the bound (about a third of the candidates are redrawn; the data is then slightly easier for
the classical filters: ``results/fig5/table.md`` compares them under both readings), ``keep`` keeps the
short last segment. Gaussian noise of standard
deviation ``sigma`` (10 in the paper) is added without clipping. Everything is generated
from a seed with numpy's ``Generator`` and held in memory as float32 tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["piecewise_affine", "NoisySignals", "make_splits", "TensorBatches", "SHORT_LAST"]


#: readings of a truncated last segment shorter than n/10 (``task.short_last``)
SHORT_LAST = ("reject", "keep")


def piecewise_affine(count: int, length: int, rng: np.random.Generator, short_last: str = "reject") -> np.ndarray:
    """``count`` clean signals, shape ``(count, length)``, float64 in ``[0, 255]``; ``short_last``: what to do
    with a candidate whose truncated last segment is shorter than ``n/10`` (:data:`SHORT_LAST`)."""
    if count < 1 or length < 10:
        raise ValueError(f"need count >= 1 and length >= 10, got count={count}, length={length}")
    if short_last not in SHORT_LAST:
        raise ValueError(f"task.short_last must be one of {SHORT_LAST}, got {short_last!r}")
    lo, hi = int(np.ceil(length / 10)), length // 2
    max_segments = int(np.ceil(length / lo)) + 1
    out = np.empty((count, length))
    done = 0
    pos = np.arange(length)
    while done < count:
        m = 2 * (count - done) + 8
        seg = rng.integers(lo, hi + 1, size=(m, max_segments))
        ends = np.cumsum(seg, axis=1)
        n_seg = (ends < length).sum(axis=1) + 1  # segments needed to cover the signal
        starts = ends - seg
        last_len = length - starts[np.arange(m), n_seg - 1]
        # `reject`: the truncated last segment must also be at least n/10 long; `keep`: any length
        ok = last_len >= lo if short_last == "reject" else last_len >= 1
        seg, starts = seg[ok], starts[ok]
        take = min(int(ok.sum()), count - done)
        seg, starts = seg[:take], starts[:take]
        values = rng.uniform(0.0, 255.0, size=(take, max_segments, 2))
        idx = (pos[None, :, None] >= starts[:, None, :]).sum(axis=2) - 1  # segment of each sample
        rows = np.arange(take)[:, None]
        s0 = starts[rows, idx]
        ln = seg[rows, idx]
        a, b = values[rows, idx, 0], values[rows, idx, 1]
        t = (pos[None, :] - s0) / np.maximum(ln - 1, 1)
        out[done : done + take] = a + (b - a) * t
        done += take
    return out


@dataclass
class NoisySignals:
    """Pairs of noisy and clean signals, tensors shaped ``(N, 1, n)``."""

    noisy: torch.Tensor
    clean: torch.Tensor

    def __len__(self) -> int:
        return self.noisy.shape[0]


def _make(count: int, length: int, sigma: float, seed_seq: np.random.SeedSequence,
          short_last: str = "reject") -> NoisySignals:
    rng = np.random.default_rng(seed_seq)
    clean = piecewise_affine(count, length, rng, short_last)
    noisy = clean + rng.normal(0.0, sigma, size=clean.shape)
    as_t = lambda x: torch.from_numpy(x.astype(np.float32))[:, None, :]  # noqa: E731
    return NoisySignals(as_t(noisy), as_t(clean))


def make_splits(
    n_train: int, n_val: int, n_test: int, seed: int, length: int = 256, sigma: float = 10.0,
    short_last: str = "reject",
) -> dict[str, NoisySignals]:
    """Train / val / test splits, independent streams derived from one data seed.

    The test split depends only on ``(seed, n_test, length, sigma, short_last)``, so a test set can be
    regenerated exactly without the training data (``numnet.evaluate``).
    """
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"dataset sizes must be >= 1, got {n_train}/{n_val}/{n_test}")
    if sigma < 0:
        raise ValueError(f"task.sigma must be >= 0, got {sigma}")
    ss = np.random.SeedSequence(seed).spawn(3)
    return {
        "train": _make(n_train, length, sigma, ss[0], short_last),
        "val": _make(n_val, length, sigma, ss[1], short_last),
        "test": _make(n_test, length, sigma, ss[2], short_last),
    }


class TensorBatches:
    """Minibatches straight from in-memory tensors: no Dataset, no DataLoader, no workers.

    Each pass draws a fresh permutation from its own seeded generator when ``shuffle``.
    """

    def __init__(self, data: NoisySignals, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data = data
        self.batch_size = min(batch_size, len(data))
        self.shuffle = shuffle
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def state_dict(self) -> dict:
        """The shuffling generator's state: a resumed run draws the same minibatches as an uninterrupted one."""
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])

    def __iter__(self):
        n = len(self.data)
        noisy, clean = self.data.noisy, self.data.clean
        if self.shuffle:
            perm = torch.randperm(n, generator=self.gen)
            noisy, clean = noisy[perm], clean[perm]
        for start in range(0, n, self.batch_size):
            yield noisy[start : start + self.batch_size], clean[start : start + self.batch_size]
