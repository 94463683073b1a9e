"""Reproduce Fig. 9 (Sec. 7.2.3) into ``results/fig9/``: ``make reproduce-fig9 [PROFILE=long|paper]`` (those two
profiles into ``results/fig9-long/`` and ``results/fig9-paper/``, beside the default quick profile's).

1. the Hydra multirun ``python -m numnet.inpaint -m inpaint_model=fmg,single_grid,unet`` (joblib
   jobs in parallel). As for the denoising sweeps (``numnet.reproduce``), ``fig9/.sweep-in-progress.json``
   marks it until it has run to its end: the same command resumes an interrupted one (finished networks are
   skipped) and redoes a finished one, its runs moved to ``fig9/previous-runs/``;
2. ``PROVENANCE.json``;
3. the evaluation against the CG solver on the held-out image (``numnet.evaluate_inpainting``, then ``numnet.report.fig9``):
   ``metrics.csv``, ``table.md``, ``fig9.png``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from numnet.config import (ConfigError, check_overrides, check_sweep_args, choices, compose_config, fig9_folder,
                           fixed_overrides)
from numnet.evaluate_inpainting import evaluate_fig9
from numnet.inpaint import learning_rate, lr_schedule
from numnet.runs import end_sweep, launch_sweep, start_sweep

MODELS = "fmg,single_grid,unet"  # the slowest first, so that two jobs finish together


def sweep_settings(profile: str, extra: list[str], models: str = MODELS) -> dict:
    """What the sweep trains, for ``PROVENANCE.json``: the profile's settings as each network's composed config has
    them, the overrides ``extra`` that hold for every run included (the step size and, where they differ, anything
    else per network; PROVENANCE's ``command`` names ``extra`` itself)."""
    fixed = fixed_overrides(extra)
    cfgs = {m: compose_config(f"inpaint_model={m}", f"inpaint_profile={profile}", *fixed, name="inpaint")
            for m in models.split(",")}
    per = {"steps": lambda c: c.inpaint_profile.steps, "batch_size": lambda c: c.inpaint_profile.batch_size,
           "n_crops": lambda c: c.inpaint_profile.n_crops, "lr": learning_rate, "lr_schedule": lr_schedule,
           "train_set": lambda c: c.data.train_set, "synthetic": lambda c: c.data.synthetic}
    settings: dict = {"artefact": "fig9", "profile": profile, "models": models.split(",")}
    for key, get in per.items():
        values = {m: get(c) for m, c in cfgs.items()}
        settings[key] = values if key == "lr" or len(set(values.values())) > 1 else values[models.split(",")[0]]
    settings["seeds"] = [0]
    return settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", help=f"one of {choices('inpaint_profile')}")
    ap.add_argument("--jobs", type=int, default=2, help="parallel training jobs (joblib launcher)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--logger", default="wandb", help=f"one of {choices('logger')}")
    ap.add_argument("--results", default="results",
                    help="results root; Fig. 9 goes to <results>/fig9 (profiles long and paper: fig9-long, fig9-paper)")
    ap.add_argument("--extra", default="", help="further Hydra overrides")
    ap.add_argument("--models", default=MODELS,
                    help=f"comma-separated networks to train, of {choices('inpaint_model')} "
                         f"(default: the paper's {MODELS})")
    args = ap.parse_args(argv)
    try:
        out = Path(args.results) / fig9_folder(args.profile)
        check_sweep_args(args.profile, "inpaint_profile", args.logger, args.jobs, args.threads, out)
        models = args.models.split(",")
        unknown = [m for m in models if m not in choices("inpaint_model")]  # "" too: [""] is unknown
        if unknown:
            raise ConfigError(f"--models {args.models!r}: unknown {unknown}; choose from {choices('inpaint_model')}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cmd = ["-m", "numnet.inpaint", "-m", f"inpaint_model={args.models}", f"inpaint_profile={args.profile}",
           f"logger={args.logger}", f"threads={args.threads}", f"hydra.sweep.dir={out / 'runs'}"]
    try:
        check_overrides(shlex.split(args.extra), "inpaint")
        settings = sweep_settings(args.profile, shlex.split(args.extra), args.models)
    except Exception as exc:  # noqa: BLE001 - ConfigError, Hydra's and OmegaConf's errors: before any compute
        print(f"error: --extra {args.extra!r}: {'; '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2
    settings["threads"] = args.threads
    try:  # an interrupted invocation resumes; a finished one is redone (its runs move to previous-runs/)
        state = {"profile": args.profile, "extra": args.extra}
        start_sweep(out, state if args.models == MODELS else {**state, "models": args.models}, "fig9")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rc, wall = launch_sweep(cmd, out, settings, args.jobs, "fig9", shlex.split(args.extra))
    if rc == 0:
        end_sweep(out)
    print("[fig9] evaluating against the CG solver", flush=True)
    try:
        metrics = evaluate_fig9(out, threads=args.threads)
    except (FileNotFoundError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(metrics.to_string(index=False), flush=True)
    print(f"[fig9] {wall / 60:.1f} min training -> {out}/table.md, metrics.csv, fig9.png", flush=True)
    return 1 if rc != 0 or set(models) - set(metrics.method) else 0


if __name__ == "__main__":
    sys.exit(main())
