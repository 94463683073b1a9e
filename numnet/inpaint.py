"""Hydra entry point for learned EED inpainting (Sec. 7.2): ``python -m numnet.inpaint [overrides]``.

One run trains one network (``inpaint_model=fmg|unet|single_grid``) with the residual loss of
Eq. (29) and writes ``summary.json`` (atomically) and ``model.pt`` into its output folder. The
config is checked before any compute; a run whose summary is complete for the same configuration
is skipped (a complete run of another one is an error); in a multirun a failed run writes a
``failed`` summary and the sweep goes on.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("WANDB_SILENT", "true")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from numnet.config import CONFIG_DIR, ConfigError, check_writable, choices  # noqa: E402

__all__ = ["validate_inpaint", "eed_params", "model_kwargs"]


def eed_params(cfg: DictConfig):
    from numnet.schemes.eed import EEDParams

    return EEDParams(lam=float(cfg.eed.lam), sigma=float(cfg.eed.sigma), alpha=float(cfg.eed.alpha))


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kw = {k: v for k, v in OmegaConf.to_container(cfg.inpaint_model, resolve=True).items() if k not in ("name", "lr")}
    if "widths" in kw:
        kw["widths"] = tuple(kw["widths"])
    return kw


def learning_rate(cfg: DictConfig) -> float:
    """Adam's step size: the network's own (``inpaint_model.lr``) where it names one, else the profile's."""
    own = OmegaConf.select(cfg, "inpaint_model.lr")
    return float(cfg.inpaint_profile.lr if own is None else own)


def lr_schedule(cfg: DictConfig) -> str:
    """Adam's step-size schedule: the profile's ``lr_schedule``, ``constant`` where it names none."""
    return str(OmegaConf.select(cfg, "inpaint_profile.lr_schedule", default="constant"))


def validate_inpaint(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the key and the allowed range, before any compute."""
    from numnet.data.images import TRAIN_SETS
    from numnet.models.inpainting import INPAINT_MODELS, build_inpainter
    from numnet.tasks.inpainting import LR_SCHEDULES

    name = cfg.inpaint_model.name
    if name not in INPAINT_MODELS:
        raise ConfigError(f"inpaint_model={name!r} is unknown; choose one of {sorted(INPAINT_MODELS)}")
    for key in ("inpaint_profile.steps", "inpaint_profile.batch_size", "inpaint_profile.n_crops",
                "inpaint_profile.val_every", "data.n_val", "threads"):
        v = OmegaConf.select(cfg, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{key} must be an integer >= 1, got {v!r}")
    crop = cfg.data.crop
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 8 or crop % 4:
        raise ConfigError(f"data.crop must be a multiple of 4 and >= 8 (three grids), got {crop!r}")
    if not 0 < cfg.data.density <= 1:
        raise ConfigError(f"data.density must lie in (0, 1], got {cfg.data.density}")
    if not 0 <= cfg.data.synthetic <= 1:
        raise ConfigError(f"data.synthetic (share of synthetic training crops) must lie in [0, 1], got {cfg.data.synthetic}")
    if not cfg.data.max_scale >= 1:
        raise ConfigError(f"data.max_scale (largest crop window over the crop side) must be >= 1, got {cfg.data.max_scale}")
    warm = OmegaConf.select(cfg, "loss.squared_warmup")
    if isinstance(warm, bool) or not isinstance(warm, int) or warm < 0:
        raise ConfigError(f"loss.squared_warmup must be an integer >= 0 (steps), got {warm!r}")
    if not cfg.inpaint_profile.lr > 0:
        raise ConfigError(f"inpaint_profile.lr must be > 0, got {cfg.inpaint_profile.lr}")
    if cfg.data.train_set not in TRAIN_SETS:
        raise ConfigError(f"data.train_set must be one of {sorted(TRAIN_SETS)}, got {cfg.data.train_set!r}")
    every = cfg.checkpoint_every_s
    if isinstance(every, bool) or not isinstance(every, (int, float)) or every < 0:
        raise ConfigError(f"checkpoint_every_s must be a number of seconds >= 0 (0: no resume checkpoint), got {every!r}")
    if lr_schedule(cfg) not in LR_SCHEDULES:
        raise ConfigError(f"inpaint_profile.lr_schedule must be one of {list(LR_SCHEDULES)}, got {lr_schedule(cfg)!r}")
    own = OmegaConf.select(cfg, "inpaint_model.lr")
    if own is not None and (isinstance(own, bool) or not isinstance(own, (int, float)) or not own > 0):
        raise ConfigError(f"inpaint_model.lr must be a number > 0 or null (the profile's), got {own!r}")
    try:
        eed_params(cfg)
        build_inpainter(name, **model_kwargs(cfg))
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    if cfg.logger.name not in choices("logger"):
        raise ConfigError(f"logger={cfg.logger.name!r} is unknown; choose one of {choices('logger')}")


#: keys added to the config after runs were recorded, with the value that computes what those runs computed
ADDED_KEYS = {("inpaint_model", "norm"): "none", ("inpaint_model", "layers"): 2, ("inpaint_model", "passes"): 1,
              ("data", "train_set"): "mix"}


def run_identity(config: dict) -> dict:
    """What a run computes (not how it runs or logs). A key of :data:`ADDED_KEYS` at its value counts as absent,
    so that runs recorded before the key existed are the same runs."""
    from numnet.runs import without_added_keys

    return without_added_keys({k: config.get(k) for k in ("inpaint_model", "inpaint_profile", "eed", "loss", "data",
                                                          "seed")}, ADDED_KEYS)


def _loggers(cfg: DictConfig, out_dir: Path, name: str):
    if cfg.logger.name == "none":
        return []
    if cfg.logger.name == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return [CSVLogger(save_dir=str(out_dir), name="", version="")]
    from numnet.runs import wandb_logger

    return [wandb_logger(project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.artefact, name=name,
                         tags=[cfg.artefact, cfg.inpaint_model.name, f"profile={cfg.inpaint_profile.name}"],
                         save_dir=str(out_dir), mode=cfg.logger.mode, config=OmegaConf.to_container(cfg, resolve=True))]


def train(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    import pytorch_lightning as pl
    import torch

    from numnet.data.images import TRAIN_SETS, VAL_IMAGES, CropStream, crop_bank, random_masks
    from numnet.models.inpainting import build_inpainter
    from numnet.models.weights import save_weights
    from numnet.runs import provenance
    from numnet.tasks.inpainting import InpaintingTask
    from numnet.runs import close_loggers, quiet_lightning
    from numnet.tasks.checkpoint import resume_setup, wall_total

    t0 = time.perf_counter()
    quiet_lightning()
    torch.set_num_threads(int(cfg.threads))
    p, d = cfg.inpaint_profile, cfg.data
    train_images = TRAIN_SETS[str(d.train_set)]
    stream = CropStream(train_images, int(p.batch_size), int(d.crop), int(d.data_seed) + 1000 * int(cfg.seed),
                        max(1, int(p.n_crops) // int(p.batch_size)), float(d.synthetic), float(d.max_scale))
    val = crop_bank(VAL_IMAGES, int(d.n_val), int(d.crop), int(d.data_seed) + 1)
    val_masks = random_masks(val.shape, float(d.density), torch.Generator().manual_seed(int(d.data_seed) + 2))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = build_inpainter(cfg.inpaint_model.name, **model_kwargs(cfg))
    task = InpaintingTask(model, lr=learning_rate(cfg), density=float(d.density), eed=eed_params(cfg),
                          squared_warmup=int(cfg.loss.squared_warmup), lr_schedule=lr_schedule(cfg))
    name = f"{cfg.inpaint_model.name}-s{cfg.seed}"
    # a checkpoint at the end of a Lightning epoch (n_crops / batch_size steps), at most every checkpoint_every_s
    resume, callbacks = resume_setup(out_dir, run_identity(OmegaConf.to_container(cfg, resolve=True)), stream,
                                     float(cfg.checkpoint_every_s))
    loggers = _loggers(cfg, out_dir, name)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=int(p.steps), max_epochs=-1,
        logger=loggers or False, callbacks=callbacks,
        enable_checkpointing=bool(callbacks), enable_model_summary=False, enable_progress_bar=False,
        num_sanity_val_steps=0, log_every_n_steps=50, default_root_dir=str(out_dir),
        **_val_schedule(int(p.val_every), int(p.n_crops) // int(p.batch_size), int(p.steps)),
    )
    try:
        trainer.fit(task, train_dataloaders=stream, val_dataloaders=_OneBatch(val, val_masks), ckpt_path=resume)
        wall = time.perf_counter() - t0
        summary = {
            "status": "complete", "name": name, "artefact": cfg.artefact, "profile": p.name,
            "model": cfg.inpaint_model.name, "seed": int(cfg.seed), "params": model.n_params(),
            "steps": int(trainer.global_step), "best_step": task.best_step, "train_images": list(train_images),
            "metrics": {"val_residual": task.best_val,
                        "val_psnr": next((h["val_psnr"] for h in task.history if h["step"] == task.best_step), None)},
            "history": task.history, "wall_s": round(wall, 3), "resumed": resume is not None,
            # over all sittings of a resumed run (`wall_s`: this sitting alone); None where unknown
            "wall_s_total": wall_total(callbacks, wall),
            "config": OmegaConf.to_container(cfg, resolve=True), "provenance": provenance(),
        }
        save_weights(out_dir / "model.pt", cfg.inpaint_model.name, model_kwargs(cfg), model.state_dict(),
                     {k: summary[k] for k in ("name", "params", "steps")})
        return summary
    finally:
        close_loggers(loggers)


class _OneBatch:
    """The validation set as a single in-memory batch."""

    def __init__(self, *tensors) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield self.tensors


def _val_schedule(every: int, steps_per_epoch: int, total: int) -> dict:
    """Validate every ``every`` steps (and at the end): Lightning counts within an epoch."""
    every = min(every, total)
    if every <= steps_per_epoch:
        return {"val_check_interval": every, "check_val_every_n_epoch": 1}
    return {"val_check_interval": None, "check_val_every_n_epoch": max(1, every // max(steps_per_epoch, 1))}


def execute(cfg: DictConfig, out_dir: Path) -> dict[str, Any] | None:
    """Validate, skip if done, train; in a multirun a failure becomes a ``failed`` summary."""
    from numnet.runs import execute_recorded

    def describe(s: dict) -> str:
        m = s["metrics"]
        return (f"[numnet] {s['name']}: val residual {m['val_residual']:.3f} (val PSNR {m['val_psnr']:.2f} dB), "
                f"{s['params']} params, {s['steps']} steps, {s['wall_s']:.0f} s")

    return execute_recorded(cfg, out_dir, validate_inpaint, run_identity, train,
                            f"{cfg.inpaint_model.name}-s{cfg.seed}", describe)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="inpaint")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from numnet.runs import is_multirun

    try:
        summary = execute(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        if is_multirun():
            return None
        sys.exit(2)
    return summary["metrics"]["val_residual"] if summary and summary.get("status") == "complete" else None


if __name__ == "__main__":
    from numnet.runs import run_cli

    run_cli("numnet.inpaint", "inpaint")
