"""Resuming an interrupted training run: a Lightning checkpoint of the whole training state, written
atomically into the run folder at most every ``every_s`` seconds (and at the last epoch), read back
by the next invocation of the same run, and removed when the run is complete.

The checkpoint holds the model, Adam's state, the loop's epoch, the task's validation record (best
epoch, its weights, the history; :class:`numnet.tasks.denoising.DenoisingTask`) and the state of
the minibatch shuffler, so that a resumed run computes the same numbers as an uninterrupted one.
It also holds the identity of the run's configuration: a checkpoint of another configuration is
refused, never resumed.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from numnet.runs import RESUME_FILE

__all__ = ["RESUME_FILE", "ResumeCheckpoint", "read_resume", "stored_identity", "resume_setup", "wall_total"]


class ResumeCheckpoint(pl.callbacks.Checkpoint):
    """Saves ``<out_dir>/resume.ckpt`` at the end of a training epoch when ``every_s`` seconds have
    passed since the last save, and at the last epoch; carries the shuffler's state (``batches``)."""

    def __init__(self, out_dir: str | os.PathLike, identity: Any, batches, every_s: float = 60.0,
                 name: str = RESUME_FILE) -> None:
        self.path = Path(out_dir) / name
        self.identity = identity
        self.batches = batches
        self.every_s = float(every_s)
        self._last = self._start = time.monotonic()
        #: seconds the run trained in earlier sittings (read back from the checkpoint it resumes; ``None``
        #: where that checkpoint did not record them)
        self.earlier_s: float | None = 0.0

    def state_dict(self) -> dict:
        elapsed = None if self.earlier_s is None else self.earlier_s + time.monotonic() - self._start
        return {"identity": self.identity, "batches": self.batches.state_dict(), "elapsed_s": elapsed}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state["batches"])
        self.earlier_s = state.get("elapsed_s")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        last = trainer.should_stop or trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if not last and time.monotonic() - self._last < self.every_s:
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            trainer.save_checkpoint(tmp)
            os.replace(tmp, self.path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._last = time.monotonic()


def read_resume(out_dir: str | os.PathLike, identity: Any, name: str = RESUME_FILE) -> Path | None:
    """The resume checkpoint ``out_dir/name`` when there is one of this configuration (``identity``);
    ``None`` when there is none. Raises ``ValueError`` naming the file when it is unreadable or of
    another configuration (it is left in place: nothing already computed is deleted)."""
    path = Path(out_dir) / name
    if not path.is_file():
        return None
    try:
        stored, _ = stored_identity(path)
    except ValueError as exc:
        raise ValueError(f"cannot resume: {exc}; remove it to train this run from the start") from None
    if stored != identity:
        raise ValueError(f"{path} is a checkpoint of another configuration; remove it to train this run from the start")
    return path


def stored_identity(path: str | os.PathLike) -> tuple[Any, dict]:
    """The identity a resume checkpoint was written for, and the checkpoint itself (read once); ``ValueError``
    when the file is unreadable."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        return ckpt["callbacks"][ResumeCheckpoint.__qualname__]["identity"], ckpt
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path} is unreadable ({type(exc).__name__})") from None


def resume_setup(out_dir: str | os.PathLike, identity: Any, batches, every_s: float) -> tuple[Path | None, list]:
    """For a run about to train in ``out_dir``: the checkpoint to resume from (:func:`read_resume`; ``None``: train
    from the start) and the callbacks that write the next ones (none when ``every_s`` is 0). An unusable checkpoint
    is a :class:`numnet.config.ConfigError`, raised before any compute."""
    from numnet.config import ConfigError

    try:
        resume = read_resume(out_dir, identity)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if resume is not None:
        print(f"[numnet] resume {out_dir} from its checkpoint", flush=True)
    return resume, [ResumeCheckpoint(out_dir, identity, batches, every_s)] if every_s > 0 else []


def wall_total(callbacks: list, this_sitting: float) -> float | None:
    """Seconds over all sittings of a run: this one and those its resume checkpoint recorded (``None``: unknown)."""
    earlier = [getattr(c, "earlier_s", 0.0) for c in callbacks if hasattr(c, "earlier_s")]
    return None if None in earlier else round(this_sitting + sum(earlier), 3)
