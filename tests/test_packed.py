"""Packed training: networks trained together equal the same networks trained one by one."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from numnet.config import compose_config
from numnet.train import execute, pack_key, train_pack

ROOT = Path(__file__).resolve().parents[1]

#: every architecture, shared and own weights (with Eq. 27), several activations, depths and seeds
CONFIGS = [
    ("resnet", "charbonnier", 3, True, 0),
    ("resnet", "perona_malik", 4, False, 1),
    ("symresnet", "perona_malik", 5, True, 2),
    ("symresnet", "perona_malik", 2, False, 1),
    ("symresnet", "relu", 3, False, 0),
    ("dufort_frankel", "charbonnier", 2, False, 1),
    ("fsi", "perona_malik", 4, True, 0),
    ("fsi", "relu", 3, False, 2),
]
PROFILE = ["profile=smoke", "profile.n_train=320", "profile.max_epochs=30", "profile.val_every=3",
           "logger=none", "trainer.checkpoint_every_s=0", "trainer.progress_bar=false"]


def _cfg(model, act, depth, shared, seed, *extra):
    return compose_config(f"model={model}", f"activation={act}", f"model.depth={depth}",
                          f"model.shared={str(shared).lower()}", f"seed={seed}", *PROFILE, *extra)


def _state(folder: Path) -> dict:
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


@pytest.mark.integration
@pytest.mark.parametrize("stacked", [False, True], ids=["packed", "stacked"])
def test_pack_equals_the_networks_trained_one_by_one(tmp_path, stacked):
    """300 Adam steps per network (10 per epoch, 30 epochs): parameters, validation history, best epoch and
    test PSNR of every network of a pack equal those of the network trained alone by the per-run engine;
    also with the compatible networks stacked (``trainer.stacked``: one computation for a stack)."""
    cfgs = [_cfg(*c) for c in CONFIGS]
    packs = [_cfg(*c, f"trainer.stacked={str(stacked).lower()}") for c in CONFIGS]
    assert len({pack_key(c) for c in cfgs}) == 1
    alone = [tmp_path / "alone" / str(i) for i in range(len(cfgs))]
    packed = [tmp_path / "packed" / str(i) for i in range(len(cfgs))]
    for cfg, d in zip(cfgs, alone):
        d.mkdir(parents=True)
        execute(cfg, d)
    for d in packed:
        d.mkdir(parents=True)
    summaries = train_pack(packs, packed)
    for c, a, p, s in zip(CONFIGS, alone, packed, summaries):
        ref = json.loads((a / "summary.json").read_text())
        got = json.loads((p / "summary.json").read_text())
        assert got == s and got["status"] == "complete" and got["engine"] == "packed", c
        stack = {"symresnet": 3, "dufort_frankel": 1, "fsi": 2}  # one stack per class, activations mixed
        assert got.get("stack_size") == (stack.get(c[0]) if stacked else None), c
        assert got["epochs"] == ref["epochs"] == 30
        assert [h["epoch"] for h in got["history"]] == [h["epoch"] for h in ref["history"]]
        assert got["metrics"]["best_epoch"] == ref["metrics"]["best_epoch"], c
        assert got["metrics"]["test_psnr"] == pytest.approx(ref["metrics"]["test_psnr"], abs=1e-4), c
        for h, r in zip(got["history"], ref["history"]):
            assert h["val_psnr"] == pytest.approx(r["val_psnr"], abs=1e-4), c
        sa, sp = _state(a), _state(p)
        assert sa.keys() == sp.keys()
        for k in sa:
            assert torch.allclose(sa[k], sp[k], rtol=1e-5, atol=1e-6), (c, k)
        moved = torch.cat([v.flatten() for v in sa.values()])
        assert float(moved.abs().max()) > 0


@pytest.mark.integration
def test_pack_members_stop_and_fail_on_their_own(tmp_path):
    """A network whose patience runs out leaves the pack at its own epoch and one whose loss is not finite is
    recorded ``failed``; the others train on to the end with the numbers they have alone."""
    from numnet.tasks.packed import PackedDenoising
    from numnet.train import _build

    cfgs = [_cfg("symresnet", "perona_malik", 3, True, 0), _cfg("fsi", "relu", 2, True, 1),
            _cfg("resnet", "relu", 2, True, 2)]
    built = [_build(c) for c in cfgs]
    tasks = [b[2] for b in built]
    tasks[0].val_every, tasks[0].patience = 1, 2
    tasks[0].validate = lambda: 30.0  # never better after its first validation: stops at epoch 2
    broken = tasks[1].model
    broken.fused_mse_step = lambda *a, **k: math.nan  # its loss is not finite from the first step
    reference = tmp_path / "alone"
    reference.mkdir()
    execute(cfgs[2], reference)
    done = {}
    data = built[0][0]["train"]
    pack = PackedDenoising(tasks, (data.noisy, data.clean), 32, [0, 1, 2], 1e-3,
                           on_done=lambda m, task, err: done.setdefault(m, (err, len(task.history))))
    import pytorch_lightning as pl

    trainer = pl.Trainer(accelerator="cpu", max_epochs=30, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(pack, train_dataloaders=pack.loader())
    assert isinstance(done[1][0], FloatingPointError) and done[1][1] == 0
    assert done[0][0] is None and tasks[0].stopped_early and [h["epoch"] for h in tasks[0].history] == [0, 1, 2]
    assert done[2][0] is None and len(tasks[2].history) == 10 and not tasks[2].stopped_early
    ref = _state(reference)
    for k, v in tasks[2].model.state_dict().items():
        assert torch.allclose(v, ref[k], rtol=1e-5, atol=1e-6), k


@pytest.mark.integration
@pytest.mark.parametrize("legacy,stacked", [(False, False), (True, False), (False, True)],
                         ids=["current", "legacy-records", "stacked"])
def test_interrupted_pack_resumes_as_if_uninterrupted(tmp_path, monkeypatch, legacy, stacked):
    """A pack stopped by an error after its checkpoint of epoch 5 resumes from it (the network that stopped
    early before is not trained again) and ends with the parameters of an uninterrupted pack; also from a
    checkpoint whose network records are stored bare, as packs saved them before the tasks' hooks did, and
    with stacked networks (one of which stops early and leaves its stack)."""
    from numnet.tasks.packed import PackedDenoising
    from numnet.train import pack_file

    extra = ["profile.max_epochs=12", "trainer.checkpoint_every_s=1e-9", f"trainer.stacked={str(stacked).lower()}"]
    cfgs = [_cfg("symresnet", "perona_malik", 3, False, 0, *extra), _cfg("resnet", "charbonnier", 2, True, 1, *extra),
            _cfg("fsi", "relu", 2, True, 2, *extra, "profile.patience=3", "profile.val_every=1"),
            _cfg("fsi", "relu", 3, False, 1, *extra, "profile.patience=3", "profile.val_every=1")]
    whole = [tmp_path / "whole" / str(i) for i in range(len(cfgs))]
    cut = [tmp_path / "cut" / str(i) for i in range(len(cfgs))]
    for d in whole + cut:
        d.mkdir(parents=True)
    train_pack(cfgs, whole)
    assert not pack_file(whole).exists()  # removed when the pack is done
    original = PackedDenoising.on_train_epoch_end

    def broken(self):
        if self.current_epoch == 6:
            raise RuntimeError("interrupted")
        original(self)

    monkeypatch.setattr(PackedDenoising, "on_train_epoch_end", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        train_pack(cfgs, cut)
    assert pack_file(cut).exists()
    first = json.loads((cut[2] / "summary.json").read_text())  # the early stop came before the interruption
    assert first["stopped_early"] and first["epochs"] <= 6
    if legacy:
        ckpt = torch.load(pack_file(cut), weights_only=False)
        ckpt["numnet_pack"]["tasks"] = [r["numnet_task"] for r in ckpt["numnet_pack"]["tasks"]]
        torch.save(ckpt, pack_file(cut))
    monkeypatch.setattr(PackedDenoising, "on_train_epoch_end", original)
    summaries = train_pack(cfgs, cut, done={2})
    assert summaries[2] is None and json.loads((cut[2] / "summary.json").read_text()) == first
    assert summaries[0]["resumed"] and not pack_file(cut).exists()
    for a, b in zip(whole, cut):
        sa, sb = _state(a), _state(b)
        for k in sa:
            assert torch.allclose(sa[k], sb[k], rtol=1e-6, atol=1e-7), (a.name, k)
        ha = json.loads((a / "summary.json").read_text())["history"]
        hb = json.loads((b / "summary.json").read_text())["history"]
        assert [h["epoch"] for h in ha] == [h["epoch"] for h in hb]
        assert [h["val_psnr"] for h in ha] == pytest.approx([h["val_psnr"] for h in hb], abs=1e-5)


@pytest.mark.slow
def test_packed_launcher_runs_a_sweep_like_the_per_run_engine(tmp_path):
    """``hydra/launcher=packed`` writes the runs a plain multirun writes (same folders, same numbers), records
    an invalid grid point ``failed`` and skips complete runs when the sweep is run again."""
    grid = ["-m", "experiment=fig5", "model=resnet,symresnet", "activation=relu,perona_malik", "model.depth=0,2",
            "profile=smoke", "logger=none"]

    def sweep(root, *extra):
        return subprocess.run([sys.executable, "-m", "numnet.train", *grid, f"results_root={root}", *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)

    plain = sweep(tmp_path / "plain")
    packed = sweep(tmp_path / "packed", "hydra/launcher=packed", "hydra.launcher.pack_size=3")
    assert plain.returncode == 0 and packed.returncode == 0, packed.stderr[-2000:]
    assert "4 of 8 runs to train in 2 pack(s)" in packed.stdout
    runs = sorted(p.parent.name for p in (tmp_path / "plain" / "fig5" / "runs").glob("*/summary.json"))
    assert runs == sorted(p.parent.name for p in (tmp_path / "packed" / "fig5" / "runs").glob("*/summary.json"))
    assert len(runs) == 8
    for name in runs:
        a = json.loads((tmp_path / "plain" / "fig5" / "runs" / name / "summary.json").read_text())
        b = json.loads((tmp_path / "packed" / "fig5" / "runs" / name / "summary.json").read_text())
        assert a["status"] == b["status"], name
        if "-d0-" in name:
            assert b["status"] == "failed" and "depth" in b["reason"]
        else:
            assert b["metrics"]["test_psnr"] == pytest.approx(a["metrics"]["test_psnr"], abs=1e-4), name
    again = sweep(tmp_path / "packed", "hydra/launcher=packed")
    assert again.returncode == 0 and "0 of 8 runs to train" in again.stdout


def test_packs_group_equal_keys_in_order_and_cut_them_to_size():
    from numnet.packing import packs

    assert packs(["a", "b", "a", "a", "b", "a"], 2) == [[0, 2], [3, 5], [1, 4]]
    assert packs([], 3) == []
    with pytest.raises(ValueError, match="pack_size"):
        packs(["a"], 0)


def test_pack_key_ignores_what_a_network_may_have_of_its_own():
    base = _cfg("symresnet", "relu", 3, True, 0)
    assert pack_key(base) == pack_key(_cfg("resnet", "perona_malik", 7, False, 2, "profile.patience=5",
                                           "profile.val_every=2"))
    assert pack_key(base) != pack_key(_cfg("symresnet", "relu", 3, True, 0, "profile.max_epochs=31"))
    assert pack_key(base) != pack_key(_cfg("symresnet", "relu", 3, True, 0, "profile.lr=0.01"))
