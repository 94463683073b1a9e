"""The packed engine of a Hydra multirun (``hydra/launcher=packed``; ``ENGINE=packed`` in the make targets).

:func:`launch_packed` does for a sweep's jobs what one process per job does (``numnet.train.main``):
it composes each job's configuration, validates it (an invalid one is recorded ``failed``), skips a
run whose folder holds a complete summary, and then trains the rest in packs of compatible networks
(:func:`numnet.train.pack_key`: same dataset, profile, trainer, logger) with
:func:`numnet.train.train_pack`, each network into its own run folder. ``n_jobs`` packs train at once,
each in its own process (joblib).

The packed engine trains one-channel and multi-channel networks on the CPU, network by network within the
loop; with ``trainer.stacked=true`` (``trainer=gpu`` sets it) its compatible networks train as stacks
(:mod:`numnet.tasks.stacked`), on the CPU or a GPU. A run that asks for a GPU without stacking is refused
with one line (the per-run engine handles it). A network is recorded
the moment it is done, and each pack keeps a resume checkpoint (``<sweep>/.packs``): the same sweep run
again resumes the interrupted packs where they were and skips the finished runs.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, open_dict, read_write

__all__ = ["launch_packed", "packs"]


def packs(keys: list[str], size: int) -> list[list[int]]:
    """Indices grouped by equal key (in order of first appearance), each group cut into packs of ``size``."""
    if size < 1:
        raise ValueError(f"hydra.launcher.pack_size must be >= 1, got {size}")
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def _job(hydra_context, config: DictConfig, overrides: Sequence[str], idx: int):
    """The job's full config (with its ``hydra`` node), its task config and its output folder."""
    from hydra.core.hydra_config import HydraConfig

    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)  # resolvers that read Hydra's config see this job's
    out_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    with read_write(sweep_config.hydra.runtime):
        sweep_config.hydra.runtime.output_dir = str(out_dir.absolute())
    HydraConfig.instance().set_config(sweep_config)
    task_cfg = copy.deepcopy(sweep_config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return sweep_config, task_cfg, out_dir


def _resumable(jobs: list, todo: list[int], sweep_dir: Path) -> list[tuple[list[int], set[int]]]:
    """The packs of this sweep that an interrupted invocation left checkpoints of (``<sweep>/.packs``) and that
    hold runs still to train: each as the job indices of all its members (in the checkpoint's order: the
    pack is rebuilt as it was) and the set of those it resumes (still training at the checkpoint and not
    recorded since). A checkpoint of other runs is left alone; one with nothing to resume is removed."""
    from numnet.tasks.checkpoint import stored_identity
    from numnet.train import PACKS_DIR

    by_name = {job[3].name: i for i, job in enumerate(jobs)}
    pending = set(todo)
    found = []
    for path in sorted((sweep_dir / PACKS_DIR).glob("*.ckpt")):
        try:
            identity, ckpt = stored_identity(path)
            names, active = [n for n, _ in identity], ckpt["numnet_pack"]["active"]
        except (ValueError, KeyError) as exc:
            print(f"[numnet] pack checkpoint {path} ignored: {exc}", flush=True)
            continue
        members = [by_name.get(n) for n in names]
        if None in members:
            print(f"[numnet] pack checkpoint {path} holds runs this sweep does not have: left alone", flush=True)
            continue
        live = {members[k] for k in active if members[k] in pending}
        if not live:
            path.unlink()  # every run it was training is recorded: nothing to resume
            continue
        found.append((members, live))
        pending -= live
    return found


def _train(cfgs: list[DictConfig], dirs: list[Path], overrides: list[list[str]], done: set[int]) -> list[dict | None]:
    from numnet.train import train_pack

    return train_pack(cfgs, dirs, overrides, done=done)


def launch_packed(hydra_context, config: DictConfig, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
                  pack_size: int, n_jobs: int):
    """The packed engine as a Hydra launcher: one :class:`hydra.core.utils.JobReturn` per job, the
    return value the run's best validation PSNR (``None`` for a skipped, invalid or failed run)."""
    from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals

    from numnet.config import ConfigError, validate
    from numnet.runs import already_done, record_invalid
    from numnet.train import pack_key, run_identity

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    jobs, todo = [], []
    for i, overrides in enumerate(job_overrides):
        sweep_config, task_cfg, out_dir = _job(hydra_context, config, overrides, initial_job_idx + i)
        out_dir.mkdir(parents=True, exist_ok=True)
        jobs.append((list(overrides), sweep_config, task_cfg, out_dir))
        try:
            validate(task_cfg)
            if task_cfg.trainer.accelerator not in ("cpu", "auto") and not task_cfg.trainer.get("stacked", False):
                raise ConfigError(f"the packed engine trains on another accelerator than the CPU only with stacked "
                                  f"networks: trainer.accelerator={task_cfg.trainer.accelerator} needs "
                                  "trainer.stacked=true (trainer=gpu sets it) or the per-run engine (hydra/launcher=basic)")
            if already_done(task_cfg, out_dir, run_identity):
                continue
        except ConfigError as exc:
            print(f"error: {exc}", flush=True)
            record_invalid(task_cfg, out_dir, exc)
            continue
        todo.append(i)
    todo_all = list(todo)
    resumed = _resumable(jobs, todo, Path(str(config.hydra.sweep.dir)))
    for _, live in resumed:
        todo = [i for i in todo if i not in live]
    fresh = [[todo[j] for j in g] for g in packs([pack_key(jobs[i][2]) for i in todo], pack_size)]
    groups = [g for g, _ in resumed] + fresh
    trains = [live for _, live in resumed] + [set(g) for g in fresh]
    print(f"[numnet] packed engine: {len(todo_all)} of {len(jobs)} runs to train in {len(groups)} pack(s) "
          f"of up to {pack_size}, {n_jobs} at a time" + (f"; {len(resumed)} pack(s) resume" if resumed else ""),
          flush=True)
    calls = [([jobs[i][2] for i in g], [jobs[i][3] for i in g], [jobs[i][0] for i in g],
              {k for k, i in enumerate(g) if i not in live}) for g, live in zip(groups, trains)]
    if n_jobs > 1 and len(calls) > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs)(delayed(_train)(*c) for c in calls)
    else:
        results = [_train(*c) for c in calls]
    values: dict[int, float | None] = {}
    for g, res in zip(groups, results):
        for i, s in zip(g, res):
            if s is None:
                continue
            values[i] = (s or {}).get("metrics", {}).get("val_psnr") if (s or {}).get("status") == "complete" else None
    return [JobReturn(overrides=ov, cfg=tc, hydra_cfg=sc, working_dir=os.getcwd(), task_name="train",
                      status=JobStatus.COMPLETED, _return_value=values.get(i))
            for i, (ov, sc, tc, _) in enumerate(jobs)]
