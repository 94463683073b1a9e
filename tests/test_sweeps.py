"""Sweeps survive faults: a killed sweep resumes without redoing finished runs; a diverging run is
recorded as failed and the sweep goes on; a small sweep runs through the submitit launcher."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from numnet.report.collect import collect

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _cmd(sweep_dir, *overrides):
    return [sys.executable, "-m", "numnet.train", "-m", "profile=smoke", "logger=none", "trainer.progress_bar=false",
            f"hydra.sweep.dir={sweep_dir}", *overrides]


def _env():
    return dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")


def _summaries(d: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in d.glob("*/summary.json")}


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path):
    sweep = tmp_path / "sweep"
    depths = "model.depth=1,2,3,4,5,6"
    proc = subprocess.Popen(_cmd(sweep, depths, "profile.max_epochs=3"), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(_summaries(sweep)) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _summaries(sweep)
    assert 2 <= len(before) < 6, "the sweep must be killed part-way"
    assert all(s["status"] == "complete" for s in before.values())  # atomic: no half-written summary
    stamps = {name: (sweep / name / "summary.json").stat().st_mtime_ns for name in before}
    r = subprocess.run(_cmd(sweep, depths, "profile.max_epochs=3"), cwd=REPO, env=_env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    after = _summaries(sweep)
    assert len(after) == 6 and all(s["status"] == "complete" for s in after.values())
    for name, stamp in stamps.items():  # finished runs were skipped, not redone
        assert (sweep / name / "summary.json").stat().st_mtime_ns == stamp
    assert r.stdout.count("skip") >= len(before)
    table = collect(sweep)
    assert len(table) == 6 and table["depth"].is_unique  # each configuration once


def test_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    r = subprocess.run(_cmd(sweep, "model=resnet", "activation=relu", "profile.lr=1e12", "model.depth=1,20",
                            "profile.max_epochs=3"),
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    s = _summaries(sweep)
    assert len(s) == 2
    failed = [v for v in s.values() if v["status"] == "failed"]
    assert failed and all("FloatingPointError" in v["reason"] or "nan" in v["reason"].lower() for v in failed)
    table = collect(sweep)
    assert set(table.status) >= {"failed"}  # the table lists the failed run instead of hiding it


def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    r = subprocess.run(_cmd(sweep, "hydra/launcher=submitit_local_numnet", "model=symresnet,fsi", "model.depth=2"),
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = _summaries(sweep)
    assert len(s) == 2 and all(v["status"] == "complete" for v in s.values())
    assert (sweep / ".submitit").is_dir()


def test_a_run_of_another_profile_is_neither_skipped_nor_overwritten(tmp_path):
    """Resume skips only the same configuration; a complete run of another one stops with a clear error."""
    from numnet.config import ConfigError, compose_config
    from numnet.train import execute

    run = tmp_path / "run"
    cfg = compose_config("profile=smoke", "logger=none", "trainer.progress_bar=false", "model.depth=1")
    execute(cfg, run)
    before = (run / "summary.json").read_text()
    assert execute(cfg, run) is None  # same configuration: skipped
    other = compose_config("profile=smoke", "profile.max_epochs=3", "logger=none", "trainer.progress_bar=false",
                           "model.depth=1")
    with pytest.raises(ConfigError, match="another configuration"):
        execute(other, run)
    assert execute(compose_config("profile=smoke", "logger=none", "trainer.progress_bar=true", "threads=2",
                                  "model.depth=1"), run) is None  # how it runs does not matter
    assert (run / "summary.json").read_text() == before


def test_reproduce_fig5_refuses_results_of_another_profile(tmp_path):
    from numnet.classical import run_classical
    from numnet.config import ConfigError
    from numnet.runs import begin_sweep

    begin_sweep(tmp_path / "fig5", {"profile": "smoke", "extra": ""})  # a smoke sweep, interrupted after ...
    run_classical("smoke", tmp_path / "fig5" / "runs")  # ... its classical baselines
    with pytest.raises(ConfigError, match="another configuration"):
        run_classical("quick", tmp_path / "fig5" / "runs")
    r = subprocess.run([sys.executable, "-m", "numnet.reproduce", "fig5", "--profile", "quick", "--results", str(tmp_path)],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "interrupted sweep" in r.stderr and "sweep:" not in r.stdout
    assert len(list((tmp_path / "fig5" / "runs").iterdir())) == 3  # nothing moved or lost


def test_provenance_profile_follows_the_overrides_that_hold_for_every_run():
    """PROVENANCE.json's epochs, batch size and step size come from the profile with ``--extra`` applied (it once
    read the profile without them), a sweep override (``seed=0,1``) left to the runs."""
    from numnet.reproduce import sweep_profile

    plain = sweep_profile("fig5", "smoke", [])
    over = sweep_profile("fig5", "smoke", ["profile.max_epochs=3", "profile.lr=0.5", "seed=0,1", "hydra.verbose=true"])
    assert (over.max_epochs, over.lr) == (3, 0.5) != (plain.max_epochs, plain.lr)
    assert over.batch_size == plain.batch_size


def test_make_target_resumes_an_interrupted_sweep_and_redoes_a_finished_one(tmp_path):
    """Killed part-way: the same command resumes (finished runs skipped). Run to its end: the same
    command trains afresh, the earlier runs and record moved to previous-runs/."""
    cmd = [sys.executable, "-m", "numnet.reproduce", "fig5", "--profile", "smoke", "--logger", "none", "--jobs", "1",
           "--results", str(tmp_path)]
    out = tmp_path / "fig5"
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(_summaries(out / "runs")) < 6:  # 3 classical baselines and 3 trainings
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {n: (out / "runs" / n / "summary.json").stat().st_mtime_ns for n in _summaries(out / "runs")}
    assert 6 <= len(before) < 87 and (out / ".sweep-in-progress.json").exists()
    resumed = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout and not (out / ".sweep-in-progress.json").exists()
    for name, stamp in before.items():  # nothing redone twice
        assert (out / "runs" / name / "summary.json").stat().st_mtime_ns == stamp
    record = json.loads((out / "PROVENANCE.json").read_text())
    assert record["runs_written"] == 87 - len(before)
    again = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "training afresh" in again.stdout
    assert json.loads((out / "PROVENANCE.json").read_text())["runs_written"] == 87
    assert json.loads((out / "previous-runs" / "PROVENANCE.json").read_text()) == record
    assert len(_summaries(out / "previous-runs" / "runs")) == 87 and len(_summaries(out / "runs")) == 87


@pytest.mark.parametrize("extra,reason", [("activation.lam=-1", "activation.lam must be > 0"),
                                          ("trainer=gpu", "no CUDA device")])
def test_a_setting_wrong_for_every_run_stops_the_sweep_before_any_compute(tmp_path, extra, reason):
    import torch

    if extra == "trainer=gpu" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    r = subprocess.run([sys.executable, "-m", "numnet.reproduce", "fig5", "--profile", "smoke", "--logger", "none",
                        "--results", str(tmp_path), "--extra", extra], cwd=REPO, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and reason in r.stderr and "every run" in r.stderr
    assert not list((tmp_path / "fig5" / "runs").iterdir())  # no classical baseline, no run


def test_an_invalid_run_in_a_sweep_leaves_a_failed_summary(tmp_path):
    sweep = tmp_path / "sweep"
    r = subprocess.run(_cmd(sweep, "model.depth=0,1"), cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=600)
    s = _summaries(sweep)
    assert len(s) == 2, r.stderr[-2000:]
    failed = [v for v in s.values() if v["status"] == "failed"]
    assert len(failed) == 1 and "model.depth must be an integer >= 1, got 0" in failed[0]["reason"]
    table = collect(sweep)
    assert sorted(table.status) == ["complete", "failed"]


def test_rerunning_a_sweep_changes_nothing_in_the_runs_it_skips(tmp_path):
    """How a sweep is run (threads, logger) is not part of what a run computed: a second invocation that
    only skips touches no file in the run folders, and no run folder holds a Hydra config copy or log."""
    sweep = tmp_path / "sweep"
    first = subprocess.run(_cmd(sweep, "model.depth=1,2"), cwd=REPO, env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    files = {p: p.stat().st_mtime_ns for p in sweep.glob("*/**/*") if p.is_file()}
    assert files and not any(".hydra" in str(p) or p.suffix == ".log" for p in files)
    summary = json.loads(next(sweep.glob("*/summary.json")).read_text())
    assert "model.depth=1" in summary["overrides"] or "model.depth=2" in summary["overrides"]
    again = subprocess.run(_cmd(sweep, "model.depth=1,2", "threads=2", "logger=csv"), cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("skip") == 2
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/**/*") if p.is_file()} == files
