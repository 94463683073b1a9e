"""Training runs: summaries, weights, re-evaluation, resume, failures, CLI runs and multiruns."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from numnet.config import compose_config
from numnet.evaluate import CheckpointError, evaluate, load_model
from numnet.evaluate import main as evaluate_main
from numnet.runs import read_summary
from numnet.train import execute

REPO = Path(__file__).resolve().parent.parent


def _cfg(*overrides):
    return compose_config("profile=smoke", "logger=none", "trainer.progress_bar=false", *overrides)


def test_smoke_training_writes_summary_and_weights(tmp_path):
    cfg = _cfg("model=fsi", "activation=perona_malik", "model.depth=3")
    summary = execute(cfg, tmp_path)
    on_disk = read_summary(tmp_path / "summary.json")
    assert on_disk["status"] == "complete" and summary["name"] == on_disk["name"]
    for key in ("config", "seed", "params", "metrics", "epochs", "wall_s", "provenance"):
        assert key in on_disk
    assert on_disk["params"] == 3 + 1 + 1 + 3
    assert on_disk["epochs"] == 2 and len(on_disk["history"]) == 2
    assert on_disk["provenance"]["git_commit"]
    assert 0 < on_disk["metrics"]["test_psnr"] < 60
    # stored weights reproduce the stored test PSNR on a regenerated test set
    model, rec = load_model(tmp_path)
    res = evaluate(model, seed=cfg.task.data_seed, n=cfg.profile.n_test)
    assert res["test_psnr"] == pytest.approx(on_disk["metrics"]["test_psnr"], abs=1e-4)


def test_training_improves_over_noisy_input(tmp_path):
    cfg = _cfg("model=symresnet", "activation=perona_malik", "model.depth=5", "profile.n_train=256",
               "profile.max_epochs=6", "profile.lr=1e-2")
    s = execute(cfg, tmp_path)
    assert s["metrics"]["test_psnr"] > s["metrics"]["noisy_test_psnr"] + 2.0


def test_completed_run_is_skipped(tmp_path, capsys):
    cfg = _cfg("model.depth=1")
    execute(cfg, tmp_path)
    before = (tmp_path / "summary.json").read_text()
    assert execute(cfg, tmp_path) is None
    assert "skip" in capsys.readouterr().out
    assert (tmp_path / "summary.json").read_text() == before


def test_diverging_run_leaves_failed_summary(tmp_path, monkeypatch):
    from numnet.runs import IDENTIFICATION
    from numnet.tasks.denoising import DenoisingTask

    done = execute(_cfg("model.depth=2"), tmp_path / "ok")

    def nan_step(self, batch, batch_idx):
        out = self.model(batch[0]).sum() * float("nan")
        self._train_acc[:] = [out.detach(), 1]
        return out

    monkeypatch.setattr(DenoisingTask, "training_step", nan_step)
    with pytest.raises(FloatingPointError):
        execute(_cfg("model.depth=1"), tmp_path / "nan")
    s = read_summary(tmp_path / "nan" / "summary.json")
    assert s["status"] == "failed" and "FloatingPointError" in s["reason"]
    # a failed summary identifies its run with the same fields as a complete one: readers need no fallbacks
    assert {k: s[k] for k in IDENTIFICATION} == {**{k: done[k] for k in IDENTIFICATION}, "depth": 1}


def test_evaluate_rejects_missing_and_corrupt_weights(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="no weights"):
        load_model(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(tmp_path)
    assert evaluate_main([str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
    torch.save({"format": "other"}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="not a numnet weights file"):
        load_model(tmp_path)


def test_pooled_psnr_is_below_the_mean_psnr_and_equal_for_equal_errors(gen):
    from numnet.metrics import pooled_psnr, psnr

    clean = torch.zeros(4, 1, 50)
    same = clean + torch.tensor([1.0, -1.0]).repeat(100).reshape(4, 1, 50)  # MSE 1 in every signal
    assert pooled_psnr(same, clean) == pytest.approx(float(psnr(same, clean).mean()), abs=1e-5)  # float32 psnr
    noisy = clean + torch.randn(4, 1, 50, generator=gen) * torch.tensor([1.0, 2.0, 5.0, 9.0]).reshape(4, 1, 1)
    assert pooled_psnr(noisy, clean) < float(psnr(noisy, clean).mean()) - 0.5


def test_summary_records_pooled_psnr_and_older_runs_get_an_evaluation(tmp_path):
    """New summaries carry the pooled test PSNR; a run recorded without it gets ``evaluation.json`` from its
    weights on its own test set (the mean PSNR must match the stored one), and the run table reads it."""
    import json

    from numnet.evaluate import EVALUATION_FILE, record_pooled
    from numnet.report.collect import collect

    s = execute(_cfg("model.depth=2"), tmp_path / "runs" / "a")
    pooled = s["metrics"]["test_psnr_pooled"]
    assert pooled < s["metrics"]["test_psnr"]
    path = tmp_path / "runs" / "a" / "summary.json"
    old = json.loads(path.read_text())
    del old["metrics"]["test_psnr_pooled"]  # as recorded before the pooled PSNR
    path.write_text(json.dumps(old))
    assert record_pooled(tmp_path / "runs") == 1 and record_pooled(tmp_path / "runs") == 0
    ev = json.loads((tmp_path / "runs" / "a" / EVALUATION_FILE).read_text())
    assert ev["test_psnr_pooled"] == pytest.approx(pooled, abs=1e-4)
    assert collect(tmp_path / "runs").test_psnr_pooled.iloc[0] == pytest.approx(pooled, abs=1e-4)
    (tmp_path / "runs" / "a" / EVALUATION_FILE).unlink()
    old["metrics"]["test_psnr"] += 0.5  # not what the weights give on the test set: refused
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="not the run's"):
        record_pooled(tmp_path / "runs")


def test_a_run_is_evaluated_under_its_own_data_rule_and_recorded_under_the_other(tmp_path, capsys):
    """``evaluate`` builds the test set under the run's data rule (a run trained with ``keep`` is not tested on
    ``reject`` signals); ``record_rule`` writes the other rule's reading once, and it differs from the run's."""
    from numnet.evaluate import record_rule, rule_file

    s = execute(_cfg("model.depth=2", "task.short_last=keep"), tmp_path / "runs" / "a")
    capsys.readouterr()
    ds = s["dataset"]
    model, _ = load_model(tmp_path / "runs" / "a")
    own = evaluate(model, int(ds["data_seed"]), int(ds["n_test"]), short_last="keep")
    assert own["test_psnr"] == pytest.approx(s["metrics"]["test_psnr"], abs=1e-4)
    assert evaluate_main([str(tmp_path / "runs" / "a"), "--json"]) == 0  # the CLI's default: the run's rule
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["short_last"] == "keep" and printed["test_psnr"] == pytest.approx(own["test_psnr"], abs=1e-6)
    assert record_rule(tmp_path / "runs", "keep") == 0  # its own rule: nothing to record
    assert record_rule(tmp_path / "runs", "reject") == 1 and record_rule(tmp_path / "runs", "reject") == 0
    other = json.loads((tmp_path / "runs" / "a" / rule_file("reject")).read_text())
    assert other["dataset"]["short_last"] == "reject" and other["test_psnr"] != pytest.approx(own["test_psnr"], abs=1e-3)
    with pytest.raises(ValueError, match="data rule"):
        record_rule(tmp_path / "runs", "drop")


def _cli(*args, env_extra=None, timeout=600):
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.cli
def test_cli_bad_input_fails_before_compute(tmp_path):
    r = _cli("numnet.train", "model.depth=0", "profile=smoke", "logger=none", f"output_root={tmp_path}")
    assert r.returncode == 2
    assert "model.depth must be an integer >= 1" in r.stderr
    assert not list(tmp_path.rglob("summary.json"))
    r = _cli("numnet.train", "model=densenet", "profile=smoke", f"output_root={tmp_path}")
    assert r.returncode != 0 and "symresnet" in (r.stderr + r.stdout)


@pytest.mark.slow
def test_cli_multirun_writes_every_summary(tmp_path):
    r = _cli("numnet.train", "-m", "model=resnet,dufort_frankel", "activation=relu,perona_malik", "model.depth=1,3",
             "profile=smoke", "logger=none", "trainer.progress_bar=false", f"output_root={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    summaries = sorted(tmp_path.rglob("summary.json"))
    assert len(summaries) == 8
    names = {json.loads(p.read_text())["name"] for p in summaries}
    assert "dufort_frankel-perona_malik-d3-c1-shared-s0" in names
    assert all(json.loads(p.read_text())["status"] == "complete" for p in summaries)
    assert all((p.parent / "model.pt").is_file() for p in summaries)


@pytest.mark.slow
def test_wandb_offline_run_records_metrics(tmp_path):
    r = _cli("numnet.train", "profile=smoke", "logger=wandb", "trainer.progress_bar=false", "model.depth=2",
             f"output_root={tmp_path}", env_extra={"WANDB_MODE": "offline"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list(tmp_path.rglob("offline-run-*"))
    assert len(runs) == 1
    from numnet.report.wandb_offline import read_offline_run

    rec = read_offline_run(runs[0])
    keys = set().union(*[h.keys() for h in rec["history"]])
    assert {"train/loss", "val/psnr", "test/psnr", "test/signal", "kernels"} <= keys
    per_epoch = [h["val/psnr"] for h in rec["history"] if "val/psnr" in h]
    assert len(per_epoch) == 2  # smoke profile: 2 epochs, logged once per epoch
    assert rec["config"]["model"]["name"] == "symresnet"
    assert rec["config"]["model"]["depth"] == 2
    assert rec["summary"]["params"] == 5
    assert 0 < rec["summary"]["stability/norm_K"] <= 1.0 + 1e-6
    assert rec["summary"]["stability/tau"] <= rec["summary"]["stability/tau_bound"]
    assert rec["group"] == "adhoc"
    assert {"symresnet", "perona_malik", "depth=2", "channels=1", "profile=smoke"} <= set(rec["tags"])


@pytest.mark.cli
@pytest.mark.parametrize("override,choice", [("profile=nope", "quick"), ("experiment=fig99", "fig5"),
                                             ("activation=tanh", "perona_malik")])
def test_unknown_group_names_list_the_choices(tmp_path, override, choice):
    r = _cli("numnet.train", override, "logger=none", f"output_root={tmp_path}")
    assert r.returncode != 0
    assert choice in r.stderr + r.stdout
    assert not list(tmp_path.rglob("summary.json"))


@pytest.mark.cli
def test_unwritable_results_folder_is_reported_before_compute(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = subprocess.run([sys.executable, "-m", "numnet.reproduce", "fig5", "--profile", "smoke", "--results", str(blocker / "r")],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ, WANDB_MODE="disabled"))
    assert r.returncode == 2
    assert "cannot be written" in r.stderr and "classical" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "numnet.reproduce", "fig5", "--profile", "huge"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "quick" in r.stderr


def test_report_on_missing_results_folder_fails_clearly(tmp_path, capsys):
    from numnet.report.fig5 import main as report_main

    assert report_main([str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.cli
def test_cli_unwritable_output_root_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = _cli("numnet.train", "profile=smoke", "logger=none", f"output_root={blocker}/sub")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: output folder") and "cannot be written" in r.stderr
    assert "Traceback" not in r.stderr


def test_implicit_model_trains(tmp_path):
    s = execute(_cfg("model=implicit", "model.depth=2", "model.inner_steps=2"), tmp_path)
    assert s["status"] == "complete" and s["stability"]["contraction"] < 1


def test_task_validates_every_val_every_epochs_and_restores_the_best_weights():
    """The task's own validation: epochs 1 and 3 of 4 with ``val_every=2`` (as Lightning's
    ``check_val_every_n_epoch``), each with its training loss, and the best epoch's weights at the end."""
    import copy

    import pytorch_lightning as pl

    from numnet.data.signals import TensorBatches, make_splits
    from numnet.metrics import psnr
    from numnet.models import SymResNet
    from numnet.tasks.denoising import DenoisingTask

    data = make_splits(64, 40, 8, seed=0)
    task = DenoisingTask(SymResNet(depth=3, activation="perona_malik"), lr=3e-2, batch_size=16,
                         val_data=(data["val"].noisy, data["val"].clean), val_every=2)
    states = {}
    original = task.validate

    def validate(chunk=1000):
        states[task.current_epoch] = copy.deepcopy(task.model.state_dict())
        return original(chunk=7)  # chunks smaller than the set: the mean over all signals all the same

    task.validate = validate
    trainer = pl.Trainer(accelerator="cpu", max_epochs=4, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False)
    trainer.fit(task, train_dataloaders=TensorBatches(data["train"], 32, shuffle=True, seed=0))
    assert [h["epoch"] for h in task.history] == [1, 3]
    assert all(h["train_loss"] > 0 and math.isfinite(h["val_psnr"]) for h in task.history)
    best = max(task.history, key=lambda h: h["val_psnr"])
    assert task.best_epoch == best["epoch"] and task.best_val == best["val_psnr"]
    for name, value in task.model.state_dict().items():
        assert torch.equal(value, states[best["epoch"]][name]), name
    with torch.no_grad():
        direct = float(psnr(task.model(data["val"].noisy), data["val"].clean, 255.0).mean())
    assert direct == pytest.approx(best["val_psnr"], rel=1e-6)
    with pytest.raises(ValueError, match="val_every"):
        DenoisingTask(SymResNet(depth=1), val_every=0)
