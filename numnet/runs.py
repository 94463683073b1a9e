"""Running and recording runs and sweeps, for every entry point (``numnet.train``, ``numnet.inpaint``, the
packed engine, ``numnet.reproduce``): provenance (commit, machine, versions), crash-safe file writes, run
summaries (complete or failed), the recorded-run framework (:func:`execute_recorded`: check, skip a complete
run, train, record), the loggers, the command-line wrapper (:func:`run_cli`) and the sweep launcher."""
from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

__all__ = ["git_commit", "machine", "provenance", "write_json_atomic", "read_summary", "without_added_keys",
           "is_complete", "RunConflict", "atomic_torch_save", "SWEEP_MARKER", "begin_sweep", "start_sweep",
           "end_sweep", "launch_sweep", "RESUME_FILE", "execute_recorded", "already_done", "failed_summary",
           "record_invalid", "run_cli", "run_overrides", "is_multirun", "quiet_lightning", "wandb_logger",
           "close_loggers", "precheck_output_roots", "IDENTIFICATION", "identification"]

_REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """``<sha>`` of the checkout, with ``+dirty`` when tracked code differs; outside git the commit a copy of the
    checkout was made from (``NUMNET_GIT_COMMIT``, set by :mod:`numnet.gpu_session`'s caller), else ``unknown``."""
    if not (_REPO / ".git").exists() and os.environ.get("NUMNET_GIT_COMMIT"):
        return os.environ["NUMNET_GIT_COMMIT"] + " (copy)"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        # the code's state: outputs under results/ (which the runs themselves write) do not count
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=_REPO, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    import torch

    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def provenance() -> dict[str, Any]:
    return {
        "git_commit": git_commit(),
        "machine": machine(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON through a temporary file and ``os.replace``: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=_jsonable)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_summary(path: str | os.PathLike) -> dict | None:
    """The summary at ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class RunConflict(ValueError):
    """A folder already holds a complete run of another configuration."""


def without_added_keys(identity: dict, added: dict[tuple[str, str], Any]) -> dict:
    """``identity`` (a run's config by group) without each key ``(group, key)`` of ``added`` that holds the value
    ``added`` gives it: keys added to the config after runs were recorded, at the value that computes what those
    runs computed, count as absent, so that the runs recorded before the key (and their checkpoints) still match."""
    identity = dict(identity)
    for (group, key), value in added.items():
        if isinstance(identity.get(group), dict) and identity[group].get(key) == value:
            identity[group] = {k: v for k, v in identity[group].items() if k != key}
    return identity


def is_complete(path: str | os.PathLike, identity: Callable[[dict], Any] | None = None, expected: Any = None) -> bool:
    """Whether ``path`` holds a complete summary of the run that is asked for.

    With ``identity``, a complete summary counts only when ``identity(summary) == expected``; a
    complete summary of another configuration raises :class:`RunConflict` instead of being
    skipped (reused under the wrong name) or overwritten (lost).
    """
    s = read_summary(path)
    if not s or s.get("status") != "complete":
        return False
    if identity is not None and identity(s) != expected:
        raise RunConflict(
            f"{Path(path).parent} already holds a complete run of another configuration (profile "
            f"{s.get('profile')!r}); use another results folder (e.g. RESULTS=results-<profile>) or remove that run"
        )
    return True


def launch_sweep(cmd: list[str], out: Path, settings: dict[str, Any], jobs: int, tag: str,
                 extra: list[str] = (), since: float | None = None, engine: str = "runs") -> tuple[int, float]:
    """Run the Hydra multirun ``python cmd`` (``engine="runs"``: one process per run, joblib launcher for
    ``jobs > 1``; ``engine="packed"``: the packed launcher, :mod:`numnet.packing`, ``jobs`` packs at once;
    then the user's ``extra`` overrides, which win) whose runs land in
    ``out/runs``, then record ``out/PROVENANCE.json``: ``settings`` plus commit, machine, start, wall
    time, exit code, command and the number of runs written. A rerun that wrote nothing keeps the
    record of the sweep that made the runs; a partial rerun keeps it under ``previous``.
    ``since`` (a ``time.time()`` taken before earlier steps of the same job, e.g. the classical
    baselines) is where the wall time and the count of written runs start. Returns the exit code and
    the wall time in seconds."""
    import shlex
    import sys
    import time

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if engine == "packed":
        launcher = ["hydra/launcher=packed", f"hydra.launcher.n_jobs={jobs}"]
    else:
        launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 else []
    cmd = list(cmd) + launcher + list(extra)
    t_start = time.time() if since is None else since
    started = datetime.fromtimestamp(t_start, timezone.utc).isoformat(timespec="seconds")
    print(f"[{tag}] sweep: {shlex.join(cmd)}", flush=True)
    rc = subprocess.call([sys.executable, *cmd], env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wall = time.time() - t_start
    trained = sum(p.stat().st_mtime >= t_start for p in (out / "runs").glob("*/summary.json"))
    previous = read_summary(out / "PROVENANCE.json")
    prov = {**settings, "jobs": jobs, "engine": engine, "git_commit": git_commit(), "machine": machine(), "started_utc": started,
            "sweep_wall_s": round(wall, 1), "sweep_exit_code": rc, "command": shlex.join([sys.executable, *cmd]),
            "runs_written": trained}
    if previous and trained == 0:
        print(f"[{tag}] every run was already trained; PROVENANCE.json of the sweep that made them is kept", flush=True)
    else:
        if previous:
            prov["previous"] = previous  # earlier invocations that wrote part of these runs
        write_json_atomic(out / "PROVENANCE.json", prov)
    return rc, wall


#: how a sweep trains its runs: one process per run, or packs of networks in one loop (numnet.packing)
ENGINES = ("runs", "packed")

#: name of a run's resume checkpoint inside its folder (:mod:`numnet.tasks.checkpoint`)
RESUME_FILE = "resume.ckpt"

#: marker of a sweep that started and has not finished in a results folder (its settings and start)
SWEEP_MARKER = ".sweep-in-progress.json"


def start_sweep(out: Path, state: dict[str, Any], tag: str) -> bool:
    """:func:`begin_sweep`, saying on one line whether the sweep resumes or trains afresh (``tag``: the artefact)."""
    resuming = begin_sweep(out, state)
    print(f"[{tag}] " + ("resuming the interrupted sweep: finished runs are skipped" if resuming else
                         f"training afresh into {out}/runs (earlier runs, if any, in {out}/previous-runs)"), flush=True)
    return resuming


def begin_sweep(out: Path, state: dict[str, Any]) -> bool:
    """Start a sweep into ``out``: resume the interrupted one that ``out/.sweep-in-progress.json`` records
    (returns ``True``), or start afresh (``False``): the runs and ``PROVENANCE.json`` of a finished sweep
    move to ``out/previous-runs/`` (nothing is deleted but an older ``previous-runs``), so that the
    target reproduces instead of skipping. Raises ``ValueError`` when an interrupted sweep of other
    settings (``state``: profile, overrides) is in progress there."""
    import shutil

    out = Path(out)
    marker = out / SWEEP_MARKER
    current = read_summary(marker)
    if current is not None:
        theirs = {k: current.get(k) for k in state}
        if theirs != state:
            raise ValueError(f"{out} holds an interrupted sweep with {theirs}; run it again with those settings to "
                             f"resume it, or remove {marker} to start afresh")
        return True
    runs = out / "runs"
    if (runs.is_dir() and any(runs.iterdir())) or (out / "PROVENANCE.json").exists():
        previous = out / "previous-runs"
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir(parents=True)
        extra = sorted(p.name for p in out.glob("classical-*") if p.is_dir())  # baselines under the other data rule
        for name in ("runs", "PROVENANCE.json", "runs.csv", *extra):
            if (out / name).exists():
                shutil.move(str(out / name), str(previous / name))
    runs.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, {**state, "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return False


def end_sweep(out: Path) -> None:
    """The sweep in ``out`` ran to its end (failed runs included): the next invocation starts afresh."""
    (Path(out) / SWEEP_MARKER).unlink(missing_ok=True)


def wandb_logger(**kwargs):
    """Lightning's ``WandbLogger`` without the ``anonymous`` argument it always passes to ``wandb.init`` (wandb
    warns on every run that the setting has no effect)."""
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(**kwargs)
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    return logger


def quiet_lightning() -> None:
    """Drop Lightning's advertising tips and deprecation chatter; real warnings stay."""
    import warnings

    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def close_loggers(loggers) -> None:
    """Ends the run's wandb run where it logs to wandb (each run of a process gets its own)."""
    if any(lg.__class__.__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish()


def run_overrides() -> list[str]:
    """The command-line overrides of this run (Hydra's ``overrides.task``); empty outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def already_done(cfg: DictConfig, out_dir: Path, identity) -> bool:
    """Whether ``out_dir`` holds a complete run of this configuration (``identity`` of the resolved
    config), to be skipped; a complete run of another configuration is a :class:`ConfigError`."""
    from numnet.config import ConfigError, check_writable


    check_writable(out_dir)
    expected = identity(OmegaConf.to_container(cfg, resolve=True))
    try:
        done = cfg.skip_completed and is_complete(out_dir / "summary.json", lambda s: identity(s.get("config", {})), expected)
    except RunConflict as exc:
        raise ConfigError(str(exc)) from None
    if done:
        print(f"[numnet] skip {out_dir} (summary complete)", flush=True)
    return bool(done)


def execute_recorded(cfg: DictConfig, out_dir: Path, check, identity, train_fn, name: str, describe) -> dict | None:
    """Check the config, skip a complete run (:func:`already_done`), train with ``train_fn`` and write
    ``summary.json`` atomically. A failure writes a ``failed`` summary with its reason; in a multirun
    the sweep goes on (the failed summary is returned), otherwise it is raised."""

    summary_path = out_dir / "summary.json"
    check(cfg)
    if already_done(cfg, out_dir, identity):
        return None
    t0 = time.perf_counter()
    try:
        summary = train_fn(cfg, out_dir)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, then re-raised or reported
        failed = failed_summary(cfg, name, f"{type(exc).__name__}: {exc}", round(time.perf_counter() - t0, 3),
                                traceback=traceback.format_exc(limit=8))
        write_json_atomic(summary_path, failed)
        if is_multirun():
            print(f"[numnet] FAILED {name}: {failed['reason']}", file=sys.stderr, flush=True)
            return failed
        raise
    write_json_atomic(summary_path, summary)
    (out_dir / RESUME_FILE).unlink(missing_ok=True)  # the run is complete: nothing to resume
    print(describe(summary), flush=True)
    print(f"[numnet] run folder: {out_dir}", flush=True)
    return summary


#: what a summary says about which run it is, complete or failed (a denoiser's or an inpainting network's keys)
IDENTIFICATION = {"artefact": ("artefact",), "profile": ("profile.name", "inpaint_profile.name"),
                  "model": ("model.name", "inpaint_model.name"), "activation": ("activation.name",),
                  "depth": ("model.depth",), "channels": ("model.channels",), "shared": ("model.shared",),
                  "normalisation": ("model.normalisation",), "seed": ("seed",)}


def identification(cfg: DictConfig) -> dict:
    """The identifying fields of a run's summary (:data:`IDENTIFICATION`) from its config; ``None`` where a key
    does not apply (an inpainting network has no depth) or cannot be resolved (an invalid config)."""
    out = {}
    for field, keys in IDENTIFICATION.items():
        value = None
        for key in keys:
            try:
                value = OmegaConf.select(cfg, key, default=None)
            except Exception:  # noqa: BLE001 - an unresolvable value of an invalid config: not known
                value = None
            if value is not None:
                break
        out[field] = value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
    return out


def failed_summary(cfg: DictConfig, name: str, reason: str, wall_s: float, **extra) -> dict:
    """The ``failed`` summary of a run: its name and the same identifying fields as a complete run's summary
    (:func:`identification`), the reason, wall time, config (unresolved where it cannot be resolved) and
    provenance, plus ``extra`` (e.g. the traceback)."""
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an unresolvable config is still recorded, unresolved
        config = OmegaConf.to_container(cfg, resolve=False)
    return {"status": "failed", "name": name, **identification(cfg), "reason": reason, **extra, "wall_s": wall_s,
            "config": config, "provenance": provenance()}


def record_invalid(cfg: DictConfig, out_dir: Path, exc: Exception) -> None:
    """In a sweep, a run whose configuration is invalid leaves a ``failed`` summary with the reason, so
    that the sweep's table lists it and the sweep's exit status says so; a folder that holds a complete
    run (of another configuration) is left as it is."""

    path = out_dir / "summary.json"
    if (read_summary(path) or {}).get("status") == "complete":
        return
    write_json_atomic(path, failed_summary(cfg, out_dir.name, f"ConfigError: {exc}", 0.0))


def precheck_output_roots(argv: list[str]) -> None:
    """Fail with one line before Hydra starts when an output root given on the command line cannot be
    written (Hydra would otherwise stop with a traceback while creating its run folder)."""
    from numnet.config import check_writable

    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if sep and key in ("output_root", "results_root", "hydra.run.dir", "hydra.sweep.dir") and "$" not in value:
            check_writable(value)


#: what to do after an interruption (the checkpoint stays in the run folder)
_RESUME_HINT = ("a sweep resumes when the same command runs again (finished runs are kept); a single run resumes "
                "with hydra.run.dir=<its run folder>")


def run_cli(module: str, config_name: str = "train") -> None:
    """``python -m <module>``: the output-root and override prechecks (one line for an unknown group
    option or key), then ``<module>.main`` imported by name, so that launchers that pickle the task
    (joblib, submitit) find it by reference in their workers (not in ``__main__``)."""
    import importlib

    from numnet.config import ConfigError, check_overrides

    try:
        precheck_output_roots(sys.argv[1:])
        check_overrides(sys.argv[1:], config_name)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        importlib.import_module(module).main()
    except KeyboardInterrupt:
        print(f"[numnet] interrupted; {_RESUME_HINT}", file=sys.stderr, flush=True)
        sys.exit(130)
    except SystemExit as exc:
        # Lightning stops a run on SIGTERM at the end of the epoch (its checkpoint written) with a bare
        # SystemExit, status 0: say so and exit with 143, so that a sweep stopped this way is not taken for
        # a finished one
        if type(exc).__name__ == "SIGTERMException":
            print(f"[numnet] stopped by SIGTERM; {_RESUME_HINT}", file=sys.stderr, flush=True)
            sys.exit(143)
        raise
