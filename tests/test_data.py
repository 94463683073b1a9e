"""The dataset of Sec. 7.1.1: piecewise-affine signals, segment lengths, noise, seeding."""
import numpy as np
import pytest
import torch

from numnet.data.signals import TensorBatches, make_splits, piecewise_affine


def _segments(signal: np.ndarray) -> list[int]:
    """Lengths of the affine pieces, found from nonzero second differences."""
    d2 = np.abs(np.diff(signal, 2))
    breaks = np.where(d2 > 1e-6)[0]
    # a break between pieces shows as two consecutive large second differences (at k and k+1)
    starts = [0]
    i = 0
    while i < len(breaks):
        starts.append(breaks[i] + 2)
        i += 2 if i + 1 < len(breaks) and breaks[i + 1] == breaks[i] + 1 else 1
    starts.append(len(signal))
    return [b - a for a, b in zip(starts, starts[1:])]


def test_values_segments_and_jumps():
    x = piecewise_affine(300, 256, np.random.default_rng(0))
    assert x.shape == (300, 256)
    assert x.min() >= 0 and x.max() <= 255
    lengths = [l for s in x[:100] for l in _segments(s)]
    assert min(lengths) >= 256 // 10 - 1 and max(lengths) <= 256 // 2 + 1
    # jumps between segments: the largest first difference is far above the affine slopes
    assert np.median(np.abs(np.diff(x, axis=1)).max(axis=1)) > 20


def test_noise_level_and_psnr_of_noisy_input():
    d = make_splits(2000, 10, 10, seed=3)["train"]
    noise = (d.noisy - d.clean).numpy()
    assert noise.std() == pytest.approx(10.0, rel=0.02)
    assert abs(noise.mean()) < 0.1
    assert float((d.noisy < 0).float().mean()) > 0  # no clipping
    mse = ((d.noisy - d.clean) ** 2).mean(dim=(1, 2))
    assert float((10 * torch.log10(255**2 / mse)).mean()) == pytest.approx(28.1, abs=0.1)


def test_seeded_and_test_split_independent_of_other_sizes():
    a = make_splits(50, 20, 30, seed=7)
    b = make_splits(80, 10, 30, seed=7)
    c = make_splits(50, 20, 30, seed=8)
    assert torch.equal(a["test"].noisy, b["test"].noisy)
    assert torch.equal(a["train"].clean, make_splits(50, 20, 30, seed=7)["train"].clean)
    assert not torch.equal(a["test"].clean, c["test"].clean)
    assert a["train"].noisy.shape == (50, 1, 256) and a["train"].noisy.dtype == torch.float32


def test_batches_cover_the_data_once_per_epoch():
    d = make_splits(37, 5, 5, seed=0)["train"]
    batches = TensorBatches(d, 8, shuffle=True, seed=1)
    assert len(batches) == 5
    seen = torch.cat([x for x, _ in batches])
    assert seen.shape[0] == 37
    assert torch.equal(seen.sum(dim=0), d.noisy.sum(dim=0)) or torch.allclose(seen.sum(0), d.noisy.sum(0))
    first = torch.cat([x for x, _ in batches])
    assert not torch.equal(first, seen)  # a new permutation each pass


@pytest.mark.parametrize("sizes", [(0, 1, 1), (1, -1, 1)])
def test_bad_sizes_rejected(sizes):
    with pytest.raises(ValueError, match="dataset sizes"):
        make_splits(*sizes, seed=0)


def test_the_data_rule_for_a_short_last_segment():
    """``reject`` redraws a signal whose cut-off last segment is shorter than n/10; ``keep`` keeps it (about a
    third of the candidates), which makes the data harder for a classical filter; records made before the
    option read as ``reject``; an unknown rule is refused."""
    from numnet.config import ConfigError, compose_config, validate
    from numnet.train import run_identity

    last = lambda x: [_segments(s)[-1] for s in x]  # noqa: E731
    rejected = piecewise_affine(300, 256, np.random.default_rng(1), "reject")
    kept = piecewise_affine(300, 256, np.random.default_rng(1), "keep")
    assert min(last(rejected)) >= 25
    short = sum(l < 25 for l in last(kept))
    assert 0.15 * 300 < short < 0.5 * 300
    with pytest.raises(ValueError, match="short_last"):
        piecewise_affine(3, 256, np.random.default_rng(1), "drop")
    cfg = compose_config("profile=smoke")
    old = {"task": {k: v for k, v in cfg.task.items() if k != "short_last"}, "profile": dict(cfg.profile)}
    assert run_identity(old) == run_identity({"task": dict(cfg.task), "profile": dict(cfg.profile)}) == {
        **run_identity(old), "task": old["task"]}  # identities stored before the option still match
    keep = compose_config("profile=smoke", "task.short_last=keep")
    assert run_identity({"task": dict(keep.task), "profile": dict(keep.profile)}) != run_identity(old)
    with pytest.raises(ConfigError, match="task.short_last"):
        validate(compose_config("profile=smoke", "task.short_last=drop"))
