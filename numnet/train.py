"""Hydra entry point: ``python -m numnet.train [overrides]`` (``-m`` for multirun sweeps).

Each run validates its config before any compute, trains a denoiser with Lightning, tests the
weights of its best validation epoch and writes ``summary.json`` (atomically) and ``model.pt``
into its own output folder. A run whose ``summary.json`` is complete is skipped, so an
interrupted sweep resumes where it stopped. In a multirun a failed run writes a summary marked
``failed`` with its reason and the sweep goes on.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("WANDB_SILENT", "true")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from numnet.config import (  # noqa: E402
    CONFIG_DIR,
    ConfigError,
    model_kwargs,
    norm_tag,
    register_resolvers,
    validate,
)

from numnet.runs import (  # noqa: E402
    close_loggers,
    execute_recorded,
    failed_summary,
    is_multirun,
    quiet_lightning,
    record_invalid,
    run_cli,
    run_overrides,
    wandb_logger,
)

log = logging.getLogger("numnet.train")
register_resolvers()


@functools.lru_cache(maxsize=4)
def _splits(n_train: int, n_val: int, n_test: int, seed: int, length: int, sigma: float, short_last: str = "reject"):
    from numnet.data.signals import make_splits

    return make_splits(n_train, n_val, n_test, seed, length, sigma, short_last)


def _loggers(cfg: DictConfig, out_dir: Path, run_name: str):
    name = cfg.logger.name
    if name == "none":
        return []
    if name == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return [CSVLogger(save_dir=str(out_dir), name="", version="")]
    tags = [
        cfg.artefact, cfg.model.name, cfg.activation.name, f"depth={cfg.model.depth}",
        f"channels={cfg.model.channels}", f"profile={cfg.profile.name}",
    ]
    return [
        wandb_logger(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=cfg.artefact,
            name=run_name,
            tags=tags,
            save_dir=str(out_dir),
            mode=cfg.logger.mode,
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    ]


def run_name(cfg: DictConfig) -> str:
    """``<model>-<activation>-d<depth>-c<channels>-<shared|own>[-<normalisation>]-s<seed>``: the
    normalisation rule only where it is not the default (``paper``); the sweep folders use the same."""
    shared = "shared" if cfg.model.shared else "own"
    norm = norm_tag(OmegaConf.select(cfg, "model.normalisation", default="paper"))
    return f"{cfg.model.name}-{cfg.activation.name}-d{cfg.model.depth}-c{cfg.model.channels}-{shared}{norm}-s{cfg.seed}"


def _fit(trainer, module, batches, ckpt_path) -> None:
    """``trainer.fit``; Lightning ends a Ctrl-C with a bare ``sys.exit(1)`` after its graceful stop, which is
    turned back into the ``KeyboardInterrupt`` it was (SIGTERM's own exit passes through as it is)."""
    try:
        trainer.fit(module, train_dataloaders=batches, ckpt_path=ckpt_path)
    except SystemExit as exc:
        if type(exc).__name__ != "SIGTERMException" and trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def _build(cfg: DictConfig):
    """The run's seeded model, its task (validation data, early stop) and the dataset splits, built exactly
    as every engine builds them: the seed first, then the data, then the model's initial weights."""
    import pytorch_lightning as pl
    import torch

    from numnet.models import build_model
    from numnet.tasks.denoising import DenoisingTask

    torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    p, t = cfg.profile, cfg.task
    data = _splits(p.n_train, p.n_val, p.n_test, int(t.data_seed), int(t.length), float(t.sigma), str(t.short_last))
    model = build_model(cfg.model.name, **model_kwargs(cfg))
    task = DenoisingTask(model, lr=float(t.lr), data_range=float(t.data_range), batch_size=int(p.batch_size),
                         val_data=(data["val"].noisy, data["val"].clean), val_every=int(p.val_every),
                         patience=int(p.patience))
    return data, model, task


def _finish(cfg: DictConfig, out_dir: Path, model, task, data, epochs: int, resumed: bool, wall_s: float,
            wall_s_total: float | None, loggers=(), overrides: list[str] | None = None) -> dict[str, Any]:
    """Test the model (the weights of its best validation epoch), save ``model.pt`` and build the summary
    (``overrides``: the run's command-line overrides; default Hydra's record of the current job)."""
    import torch

    from numnet.evaluate import psnr_readings
    from numnet.metrics import pooled_psnr, psnr
    from numnet.models.weights import save_weights
    from numnet.runs import provenance

    p, t = cfg.profile, cfg.task
    test = data["test"]
    model.eval()
    readings = psnr_readings(model, test.noisy, test.clean, float(t.data_range))
    test_psnr = readings["test_psnr"]
    with torch.no_grad():
        noisy_psnr = float(psnr(test.noisy, test.clean, float(t.data_range)).mean())
        noisy_pooled = pooled_psnr(test.noisy, test.clean, float(t.data_range))
    summary = {
        "status": "complete",
        "name": run_name(cfg),
        "artefact": cfg.artefact,
        "profile": p.name,
        "model": cfg.model.name,
        "activation": cfg.activation.name,
        "depth": int(cfg.model.depth),
        "channels": int(cfg.model.channels),
        "shared": bool(cfg.model.shared),
        "normalisation": model.normalisation if model.normalises else None,
        "seed": int(cfg.seed),
        "params": model.n_params(),
        "metrics": {
            "val_psnr": task.best_val,
            "test_psnr": test_psnr,
            "noisy_test_psnr": noisy_psnr,
            # PSNR from the mean squared error over the whole test set (the headline is the mean per signal)
            "test_psnr_pooled": readings["test_psnr_pooled"],
            "noisy_test_psnr_pooled": noisy_pooled,
            "best_epoch": task.best_epoch,
        },
        "epochs": int(epochs),
        "stopped_early": bool(task.stopped_early),
        "resumed": resumed,
        # wall time over all sittings of a resumed run (`wall_s`: this sitting alone); None where unknown
        "wall_s_total": wall_s_total,
        "dataset": {"n_train": p.n_train, "n_val": p.n_val, "n_test": p.n_test, "data_seed": int(t.data_seed),
                    "length": int(t.length), "sigma": float(t.sigma), "short_last": str(t.short_last)},
        "stability": model.stability(),
        "history": task.history,
        "wall_s": round(wall_s, 3),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "overrides": run_overrides() if overrides is None else list(overrides),
        "provenance": provenance(),
    }
    if cfg.save_weights:
        save_weights(out_dir / "model.pt", cfg.model.name, model_kwargs(cfg), model.state_dict(),
                     {k: summary[k] for k in ("name", "params", "metrics", "dataset", "seed")})
    for lg in loggers:
        lg.log_metrics({"test/psnr": test_psnr, "epoch": int(epochs)}, step=int(epochs))
        lg.save()
        if lg.__class__.__name__ == "WandbLogger":
            _log_wandb_extras(lg, model, test, summary)
    return summary


def train(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Train, test and save one configuration into ``out_dir``; returns the summary."""
    import pytorch_lightning as pl

    from numnet.data.signals import TensorBatches
    from numnet.tasks.checkpoint import ResumeCheckpoint, resume_setup, wall_total

    t0 = time.perf_counter()
    quiet_lightning()
    data, model, task = _build(cfg)
    p = cfg.profile
    # chunks of `steps_per_batch` minibatches: one Adam step per minibatch inside the task
    train_batches = TensorBatches(data["train"], int(p.batch_size) * int(cfg.trainer.steps_per_batch),
                                  shuffle=True, seed=int(cfg.seed))
    resume, callbacks = resume_setup(out_dir, run_identity(OmegaConf.to_container(cfg, resolve=True)), train_batches,
                                     float(cfg.trainer.checkpoint_every_s))
    loggers = _loggers(cfg, out_dir, run_name(cfg))
    if cfg.trainer.progress_bar:
        from numnet.tasks.progress import EpochProgressBar

        chunk = int(p.batch_size) * int(cfg.trainer.steps_per_batch)
        refresh = int(cfg.trainer.progress_refresh) or -(-p.n_train // chunk)
        callbacks.append(EpochProgressBar(refresh_rate=refresh))
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        max_epochs=int(p.max_epochs),
        deterministic=bool(cfg.trainer.deterministic),
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=any(isinstance(c, ResumeCheckpoint) for c in callbacks),  # no default ModelCheckpoint
        enable_model_summary=False,
        enable_progress_bar=bool(cfg.trainer.progress_bar),
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(out_dir),
    )
    try:
        # the task validates (DenoisingTask); `resume`: the checkpoint of an interrupted invocation
        _fit(trainer, task, train_batches, resume)
        model.to("cpu")
        return _finish(cfg, out_dir, model, task, data, trainer.current_epoch, resume is not None,
                       time.perf_counter() - t0, wall_total(callbacks, time.perf_counter() - t0), loggers)
    finally:
        close_loggers(loggers)


def pack_key(cfg: DictConfig) -> str:
    """What networks trained in one pack (:func:`train_pack`) must share: everything but the model, the
    activation, the seed and the per-network bookkeeping of the profile (validation interval, patience):
    the dataset, the rest of the profile, the trainer and threads, the logger."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("model", "activation", "seed", "hydra"):
        c.pop(k, None)
    for k in ("val_every", "patience"):
        c.get("profile", {}).pop(k, None)
    return repr(sorted(c.items()))


#: folder (inside a sweep's folder) of the resume checkpoints of packs still training
PACKS_DIR = ".packs"


def pack_file(out_dirs: list[Path]) -> Path:
    """Where the pack of the runs ``out_dirs`` (one sweep folder) keeps its resume checkpoint."""
    import hashlib

    digest = hashlib.sha1("\n".join(d.name for d in out_dirs).encode()).hexdigest()[:16]
    return out_dirs[0].parent / PACKS_DIR / f"pack-{digest}.ckpt"


def pack_identity(cfgs: list[DictConfig], out_dirs: list[Path]) -> list[list]:
    """What a pack computes: its runs' folder names and identities, in order."""
    return [[d.name, run_identity(OmegaConf.to_container(c, resolve=True))] for c, d in zip(cfgs, out_dirs)]


def train_pack(cfgs: list[DictConfig], out_dirs: list[Path], overrides: list[list[str]] | None = None,
               resume: bool = True, done: set[int] = frozenset()) -> list[dict | None]:
    """Train the configurations ``cfgs`` together (:class:`numnet.tasks.packed.PackedDenoising`: one
    Lightning loop, each network with its own minibatch order, Adam state, validation and early stop; the
    same numbers as training each alone) and record each into its folder as :func:`execute` does: a
    ``summary.json`` (``failed`` with the reason where the network failed) and ``model.pt``, written the
    moment the network is done. The pack checkpoints itself every ``trainer.checkpoint_every_s`` seconds
    into :func:`pack_file` and, with ``resume``, continues from that checkpoint when it holds this pack
    (:func:`pack_identity`; its finished networks are not trained again); the file is removed when the
    pack is done. With ``logger=wandb`` each network's validation history is logged to its own run when it
    is done. Configurations must share :func:`pack_key`; ``overrides``: each run's command-line overrides,
    recorded in its summary; ``done``: indices of runs recorded already (a resumed pack does not train them
    again). Returns the summaries in the order of ``cfgs`` (``None``: done earlier)."""
    import pytorch_lightning as pl

    from numnet.runs import RESUME_FILE, write_json_atomic
    from numnet.tasks.checkpoint import ResumeCheckpoint, read_resume, wall_total
    from numnet.tasks.packed import PackedDenoising
    from numnet.tasks.stacked import StackedDenoising

    if len({pack_key(c) for c in cfgs}) > 1:
        raise ValueError("a pack's configurations must share the dataset, profile, trainer and logger")
    t0 = time.perf_counter()
    quiet_lightning()
    built = [_build(c) for c in cfgs]
    data = built[0][0]
    cfg0 = cfgs[0]
    p = cfg0.profile
    summaries: list[dict | None] = [None] * len(cfgs)
    path = pack_file(out_dirs)
    identity = pack_identity(cfgs, out_dirs)
    ckpt = None
    if resume:
        try:
            ckpt = read_resume(path.parent, identity, path.name)
        except ValueError as exc:
            print(f"[numnet] {exc}; the pack starts afresh", flush=True)
            path = path.with_name(path.stem + f"-{int(time.time())}.ckpt")  # the old file stays as it is
        if ckpt is not None:
            print(f"[numnet] resume the pack of {len(cfgs)} runs from {ckpt}", flush=True)
    callbacks = []

    def on_done(m: int, task, error: BaseException | None) -> None:
        cfg, out_dir = cfgs[m], out_dirs[m]
        name = run_name(cfg)
        wall = round(time.perf_counter() - t0, 3)
        total = wall_total(callbacks, wall)
        if error is not None:
            summaries[m] = failed_summary(cfg, name, f"{type(error).__name__}: {error}", wall, engine="packed")
            write_json_atomic(out_dir / "summary.json", summaries[m])
            print(f"[numnet] FAILED {name}: {summaries[m]['reason']}", file=sys.stderr, flush=True)
            return
        loggers = _loggers(cfg, out_dir, name)
        try:
            for h in task.history:  # the validation record, logged at step = epoch as a single run logs it
                for lg in loggers:
                    lg.log_metrics({"train/loss": h["train_loss"], "val/psnr": h["val_psnr"], "epoch": h["epoch"]},
                                   step=h["epoch"])
            epochs = task.history[-1]["epoch"] + 1 if task.stopped_early and task.history else int(p.max_epochs)
            summary = _finish(cfg, out_dir, task.model, task, data, epochs, ckpt is not None, wall, total, loggers,
                              overrides[m] if overrides else [])
        finally:
            close_loggers(loggers)
        summary["engine"] = "packed"
        summary["pack_size"] = len(cfgs)
        if m in getattr(pack, "place", {}):  # trained in a stack of this many networks (numnet.tasks.stacked)
            summary["stack_size"] = len(pack.members[pack.place[m][0]])
        write_json_atomic(out_dir / "summary.json", summary)
        (out_dir / RESUME_FILE).unlink(missing_ok=True)
        summaries[m] = summary
        met = summary["metrics"]
        print(f"[numnet] {name}: test {met['test_psnr']:.2f} dB (val {met['val_psnr']:.2f}), {summary['params']} params, "
              f"{summary['epochs']} epochs, pack of {len(cfgs)}, {wall:.1f} s", flush=True)
        print(f"[numnet] run folder: {out_dir}", flush=True)

    stacked = bool(cfg0.trainer.get("stacked", False))
    engine = partial(StackedDenoising, cuda_graph=bool(cfg0.trainer.get("cuda_graph", True))) if stacked \
        else PackedDenoising
    pack = engine([b[2] for b in built], (data["train"].noisy, data["train"].clean), int(p.batch_size),
                  [int(c.seed) for c in cfgs], float(cfg0.task.lr), int(cfg0.trainer.steps_per_batch), on_done,
                  skip=done)
    if float(cfg0.trainer.checkpoint_every_s) > 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(ResumeCheckpoint(path.parent, identity, pack.shufflers, float(cfg0.trainer.checkpoint_every_s),
                                          name=path.name))
    trainer = pl.Trainer(accelerator=str(cfg0.trainer.accelerator), devices=1, max_epochs=int(p.max_epochs),
                         deterministic=bool(cfg0.trainer.deterministic), logger=False, callbacks=callbacks,
                         enable_checkpointing=bool(callbacks), enable_model_summary=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, default_root_dir=str(out_dirs[0].parent))
    _fit(trainer, pack, pack.loader(), ckpt)
    for c in callbacks:  # the pack is done: nothing to resume
        c.path.unlink(missing_ok=True)
    return summaries


def _log_wandb_extras(logger, model, test, summary: dict) -> None:
    """Parameter count, stability quantities, a test signal plot and the learned kernels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    with torch.no_grad():
        out = model(test.noisy[:1])
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(test.noisy[0, 0].numpy(), lw=0.8, color="0.6", label="noisy")
    ax.plot(test.clean[0, 0].numpy(), lw=1.2, color="k", label="clean")
    ax.plot(out[0, 0].numpy(), lw=1.2, color="C3", label="denoised")
    ax.legend(fontsize=8)
    ax.set_title(summary["name"])
    fig.tight_layout()
    logger.log_image(key="test/signal", images=[fig])
    plt.close(fig)
    columns, rows = model.kernel_table()
    logger.log_table(key="kernels", columns=columns, data=rows)
    logger.experiment.summary.update({
        "params": summary["params"],
        "val/best_psnr": summary["metrics"]["val_psnr"],
        "test/psnr": summary["metrics"]["test_psnr"],
        **{f"stability/{k}": v for k, v in summary["stability"].items()},
    })


#: keys added to the config after runs were recorded, with the value that computes what those runs computed
#: (``task.short_last``: the rule of every run recorded before the option)
ADDED_KEYS = {("task", "short_last"): "reject"}


def run_identity(config: dict) -> dict:
    """What a run computes: the resolved config without the keys that only change how it runs or logs, and without
    the keys of :data:`ADDED_KEYS` at their value."""
    from numnet.models import recorded_kwargs
    from numnet.runs import without_added_keys

    model = recorded_kwargs(config.get("model", {}).get("name"),
                            {k: v for k, v in config.get("model", {}).items() if k != "fused"})
    if model.get("shared", True):
        model.pop("beta", None)  # Eq. (27) acts only on own weights per block
    profile = dict(config.get("profile") or {})
    profile.setdefault("patience", 0)  # runs recorded before early stopping trained max_epochs
    task = dict(config.get("task") or {})
    return without_added_keys({"model": model, "profile": profile, "task": task,
                               **{k: config.get(k) for k in ("activation", "seed")}}, ADDED_KEYS)


def execute(cfg: DictConfig, out_dir: Path) -> dict[str, Any] | None:
    """Validate, skip if done, train; in a multirun a failure becomes a ``failed`` summary."""

    def describe(s: dict) -> str:
        m = s["metrics"]
        return (f"[numnet] {s['name']}: test {m['test_psnr']:.2f} dB (val {m['val_psnr']:.2f}, "
                f"noisy {m['noisy_test_psnr']:.2f}), {s['params']} params, {s['epochs']} epochs, {s['wall_s']:.1f} s")

    return execute_recorded(cfg, out_dir, validate, run_identity, train, run_name(cfg), describe)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = execute(cfg, out_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        if is_multirun():
            record_invalid(cfg, out_dir, exc)
            return None
        try:  # a single run stopped before any compute leaves no empty folder behind
            out_dir.rmdir()
        except OSError:
            pass
        sys.exit(2)
    if summary and summary.get("status") == "complete":
        return summary["metrics"]["val_psnr"]
    return None


if __name__ == "__main__":
    run_cli("numnet.train")
