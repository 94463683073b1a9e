"""Interrupted runs resume from their checkpoint with the same numbers; early stopping by patience."""
import pytest
import torch

from numnet.config import ConfigError, compose_config
from numnet.runs import read_summary
from numnet.tasks.checkpoint import RESUME_FILE
from numnet.tasks.denoising import DenoisingTask
from numnet.train import execute


def _cfg(*overrides):
    return compose_config("profile=smoke", "logger=none", "trainer.progress_bar=false", "model=symresnet",
                          "model.depth=3", "model.shared=false", "model.beta=1.0", "activation=perona_malik",
                          "profile.max_epochs=4", "profile.val_every=1", *overrides)


def _interrupt_at(monkeypatch, epoch: int) -> None:
    original = DenoisingTask.on_train_epoch_start

    def stop(self):
        if self.current_epoch == epoch:
            raise RuntimeError("interrupted")
        return original(self)

    monkeypatch.setattr(DenoisingTask, "on_train_epoch_start", stop)


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    straight = execute(_cfg("trainer.checkpoint_every_s=0"), tmp_path / "a")
    assert not (tmp_path / "a" / RESUME_FILE).exists()
    cfg = _cfg("trainer.checkpoint_every_s=1e-9")  # a checkpoint after every epoch
    with monkeypatch.context() as m:
        _interrupt_at(m, 2)
        with pytest.raises(RuntimeError, match="interrupted"):
            execute(cfg, tmp_path / "b")
    assert (tmp_path / "b" / RESUME_FILE).is_file()
    assert read_summary(tmp_path / "b" / "summary.json")["status"] == "failed"
    resumed = execute(cfg, tmp_path / "b")
    assert resumed["resumed"] and not straight["resumed"]
    assert resumed["wall_s_total"] > resumed["wall_s"] and straight["wall_s_total"] == pytest.approx(straight["wall_s"], abs=0.2)
    assert not (tmp_path / "b" / RESUME_FILE).exists()  # removed once the run is complete
    assert resumed["history"] == straight["history"]
    assert resumed["metrics"] == straight["metrics"]
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.integration
def test_checkpoint_of_another_configuration_or_unreadable_is_refused(tmp_path, monkeypatch):
    cfg = _cfg("trainer.checkpoint_every_s=1e-9")
    with monkeypatch.context() as m:
        _interrupt_at(m, 1)
        with pytest.raises(RuntimeError):
            execute(cfg, tmp_path)
    ckpt = (tmp_path / RESUME_FILE).read_bytes()
    with pytest.raises(ConfigError, match="another configuration"):
        execute(_cfg("trainer.checkpoint_every_s=1e-9", "model.depth=4"), tmp_path)
    (tmp_path / RESUME_FILE).write_bytes(ckpt[: len(ckpt) // 2])
    with pytest.raises(ConfigError, match="unreadable"):
        execute(cfg, tmp_path)
    assert (tmp_path / RESUME_FILE).stat().st_size == len(ckpt) // 2  # left in place, not deleted


def test_patience_stops_after_epochs_without_improvement(tmp_path, monkeypatch):
    scores = iter([30.0, 31.0, 30.5, 30.9, 30.2, 35.0])  # best at epoch 1, then three worse epochs
    monkeypatch.setattr(DenoisingTask, "validate", lambda self, chunk=1000: next(scores))
    s = execute(_cfg("profile.max_epochs=6", "profile.patience=3", "trainer.checkpoint_every_s=0"), tmp_path)
    assert s["stopped_early"] and s["metrics"]["best_epoch"] == 1
    assert [h["epoch"] for h in s["history"]] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("key,value", [("profile.patience", "-1"), ("trainer.checkpoint_every_s", "-5")])
def test_negative_patience_or_checkpoint_interval_is_refused(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        execute(_cfg(f"{key}={value}"), tmp_path)


@pytest.mark.slow
def test_sigterm_stops_a_run_with_status_143_and_it_resumes(tmp_path):
    """SIGTERM (a scheduler's stop, ``kill``) ends a run after the current epoch with its checkpoint and exit
    status 143, no summary; the same command resumes it. (Lightning's own exit for it has status 0, which made
    a stopped sweep look finished.)"""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "numnet.train", "profile=smoke", "profile.n_train=2000", "profile.max_epochs=300",
           "logger=none", "trainer.progress_bar=false", "trainer.checkpoint_every_s=0.2", "model.depth=5",
           f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "run" / RESUME_FILE
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), proc.communicate()[1][-2000:]
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "summary.json").exists() and ckpt.exists()
    again = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = read_summary(tmp_path / "run" / "summary.json")
    assert summary["status"] == "complete" and summary["resumed"] and summary["epochs"] == 300


@pytest.mark.slow
def test_ctrl_c_stops_a_run_with_one_line_and_status_130(tmp_path):
    """Ctrl-C (SIGINT) ends a run with one line on stderr and status 130, its checkpoint kept, no summary."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "numnet.train", "profile=smoke", "profile.n_train=2000", "profile.max_epochs=20000",
           "logger=none", "trainer.progress_bar=false", "trainer.checkpoint_every_s=0.2", "model.depth=5",
           f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = tmp_path / "run" / RESUME_FILE
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines() == [err.strip()] and "interrupted" in err
    assert ckpt.exists() and not (tmp_path / "run" / "summary.json").exists()


def _inpaint_cfg(*overrides):
    return compose_config("inpaint_profile=smoke", "logger=none", "inpaint_model=unet", "inpaint_model.widths=[4,4,4]",
                          "inpaint_profile.steps=8", "inpaint_profile.n_crops=4", "inpaint_profile.val_every=2",
                          "+inpaint_profile.lr_schedule=cosine", "data.crop=16", "data.n_val=2", *overrides,
                          name="inpaint")


def test_interrupted_inpainting_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    """Fig. 9's runs resume too: the crop stream, the training masks, Adam's state, the cosine schedule and the
    validation record come back, so the resumed run ends with the uninterrupted run's history and weights."""
    from numnet.inpaint import execute as inpaint
    from numnet.tasks.inpainting import InpaintingTask

    straight = inpaint(_inpaint_cfg("checkpoint_every_s=0"), tmp_path / "a")  # 4 epochs of 2 steps
    cfg = _inpaint_cfg("checkpoint_every_s=1e-9")
    with monkeypatch.context() as m:
        original = InpaintingTask.on_train_epoch_start

        def stop(self):
            if self.current_epoch == 2:
                raise RuntimeError("interrupted")
            return original(self)

        m.setattr(InpaintingTask, "on_train_epoch_start", stop, raising=False)
        with pytest.raises(RuntimeError, match="interrupted"):
            inpaint(cfg, tmp_path / "b")
    assert (tmp_path / "b" / RESUME_FILE).is_file()
    resumed = inpaint(cfg, tmp_path / "b")
    assert resumed["resumed"] and not straight["resumed"] and resumed["steps"] == straight["steps"] == 8
    assert resumed["wall_s_total"] > resumed["wall_s"]
    assert not (tmp_path / "b" / RESUME_FILE).exists()
    assert [h["step"] for h in resumed["history"]] == [2, 4, 6, 8]
    assert resumed["history"] == straight["history"] and resumed["metrics"] == straight["metrics"]
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
