"""Reproduce a paper artefact into ``results/<artefact>/``: ``python -m numnet.reproduce fig6 [--profile paper]``
(``make reproduce-fig6``).

An artefact is defined by one experiment file, ``configs/experiment/<name>.yaml``: the Hydra grid of its runs,
its folder (``artefact``, ``hydra.sweep.dir``) and a ``reproduce`` block with its default profile, its seeds
(``null``: the profile's), the report that turns its runs into tables and figures (``module:function``), the
classical baselines it trains beside the networks and whether its networks are also tested on the other data
rule's test set. Adding an artefact means adding such a file. Artefacts without a grid of runs (Fig. 2, the
theory, the kernels, stability, Fig. 9) are modules of :mod:`numnet.artefacts`, which this driver also starts.

For an artefact with an experiment file:

1. the classical baselines (``numnet.classical``) on the profile's dataset;
2. the Hydra multirun ``experiment=<name>`` over the seeds, in parallel jobs through Hydra's joblib
   launcher (or the packed engine). ``<artefact>/.sweep-in-progress.json`` marks a sweep until it has run to
   its end: running the same command again resumes an interrupted sweep (finished runs are skipped, a run
   cut off part-way continues from its checkpoint), while a finished sweep is redone, its runs moved to
   ``<artefact>/previous-runs/``;
3. ``PROVENANCE.json`` and the report (``runs.csv``, ``table.md``, figures).

A failed run does not stop the sweep; it is listed in ``table.md``. The exit code is non-zero
when any run failed or the sweep itself broke.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from numnet.classical import run_classical
from numnet.config import (CONFIG_DIR, ConfigError, check_sweep_args, choices, compose_config, fixed_overrides,
                           sweep_grid_errors)
from numnet.data.signals import SHORT_LAST
from numnet.evaluate import CheckpointError, record_pooled, record_rule
from numnet.runs import ENGINES, end_sweep, launch_sweep, start_sweep

__all__ = ["experiments", "scripted", "main"]

#: where the artefacts without a grid of runs have their modules (``numnet/artefacts/<name>.py``)
ARTEFACTS_DIR = Path(__file__).resolve().parent / "artefacts"


def experiments() -> dict[str, str]:
    """Artefact name -> experiment file (stem) for every ``configs/experiment/*.yaml`` with a ``reproduce`` block
    (read without composing; a file that inherits the block from another names its own artefact)."""
    out = {}
    for path in sorted((CONFIG_DIR / "experiment").glob("*.yaml")):
        raw = OmegaConf.load(path)
        if "reproduce" in raw and "artefact" in raw:
            out[str(raw.artefact)] = path.stem
    return out


def scripted() -> dict[str, str]:
    """Artefact name -> module for the artefacts without a grid of runs (``numnet.artefacts.<name>``)."""
    return {p.stem.replace("_", "-"): f"numnet.artefacts.{p.stem}" for p in sorted(ARTEFACTS_DIR.glob("*.py"))
            if not p.stem.startswith("_")}


def _report(spec: str):
    """The report writer named ``module:function`` in an experiment's ``reproduce.report``."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _what(extra: str) -> str:
    """The overrides of ``extra`` that say what a sweep trains, for its in-progress marker: ``trainer`` settings say
    only where and how (a sweep begun on the CPU resumes on a GPU with ``trainer=gpu``)."""
    return " ".join(o for o in shlex.split(extra) if not o.lstrip("+~").split("=", 1)[0].split(".")[0] == "trainer")


def sweep_profile(experiment: str, profile: str, extra: list[str]):
    """The ``profile`` node a sweep trains under, for ``PROVENANCE.json``: the experiment's overrides in, and the
    user's ``extra`` that hold for every run. Where those do not compose without the grid's choices, the profile
    without them (PROVENANCE's ``command`` names them; each run's own config is checked before the sweep)."""
    try:
        return compose_config(f"experiment={experiment}", f"profile={profile}", *fixed_overrides(extra)).profile
    except Exception:  # noqa: BLE001 - Hydra's and OmegaConf's errors
        return compose_config(f"experiment={experiment}", f"profile={profile}").profile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m numnet.reproduce", description=__doc__.splitlines()[0])
    arts, scripts = experiments(), scripted()
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] not in arts and argv[0] in scripts:  # an artefact without a grid: its own module
        return int(importlib.import_module(scripts[argv[0]]).main(argv[1:]) or 0)
    ap.add_argument("artefact", choices=sorted(arts), help="which artefact (configs/experiment/*.yaml; the others: "
                    f"{', '.join(a for a in sorted(scripts) if a not in arts)})")
    ap.add_argument("--profile", default="default",
                    help=f"one of {choices('profile')}; 'default' picks the artefact's default profile")
    ap.add_argument("--jobs", type=int, default=2, help="parallel training jobs (joblib launcher)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--logger", default="wandb", help=f"one of {choices('logger')}")
    ap.add_argument("--results", default="results", help="results root; the figure goes to <results>/<fig>")
    ap.add_argument("--extra", default="", help="further Hydra overrides, e.g. 'trainer=gpu'")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds (default: the artefact's, else its profile's), e.g. 0,1,2")
    ap.add_argument("--engine", default="runs", choices=ENGINES,
                    help="runs: one process per run; packed: compatible networks trained together (numnet.packing)")
    args = ap.parse_args(argv)
    art = args.artefact
    experiment = arts[art]
    rep = compose_config(f"experiment={experiment}").reproduce
    if args.profile == "default":
        args.profile = str(rep.profile)
    try:
        out = Path(args.results) / art
        check_sweep_args(args.profile, "profile", args.logger, args.jobs, args.threads, out)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # a setting that is wrong for every run stops here, before any compute (the classical baselines included)
    errors = sweep_grid_errors(experiment, args.profile, shlex.split(args.extra))
    bad = [e for e in errors if e]
    if errors and len(bad) == len(errors):
        print(f"error: {bad[0]} (every run of the sweep)", file=sys.stderr)
        return 2
    if bad:
        print(f"[{art}] {len(bad)} of {len(errors)} runs have an invalid configuration and will be recorded as failed, "
              f"e.g. {bad[0]}", flush=True)
    prof = sweep_profile(experiment, args.profile, shlex.split(args.extra))
    try:
        seed_list = [int(x) for x in args.seeds.split(",")] if args.seeds else list(rep.seeds or prof.seeds)
    except ValueError:
        print(f"error: --seeds must be comma-separated integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    seeds = ",".join(str(s) for s in seed_list)
    try:  # an interrupted invocation resumes; a finished sweep is redone (its runs move to previous-runs/)
        start_sweep(out, {"profile": args.profile, "extra": _what(args.extra)}, art)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    since = time.time()
    print(f"[{art}] profile={args.profile}: classical baselines", flush=True)
    rule = next((o.split("=", 1)[1] for o in shlex.split(args.extra) if o.startswith("task.short_last=")), "reject")
    try:  # also the check that results/<fig>/runs holds no runs of another profile
        if rep.classical:
            run_classical(args.profile, out / "runs", art, args.threads, rule)
        if rep.classical_other_rule:  # the classical filters under the other reading of the data rule, for comparison
            other = next(r for r in SHORT_LAST if r != rule)
            run_classical(args.profile, out / f"classical-{other}", art, args.threads, other)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cmd = ["-m", "numnet.train", "-m", f"experiment={experiment}", f"profile={args.profile}", f"seed={seeds}",
           f"logger={args.logger}", f"threads={args.threads}", "trainer.progress_bar=false",
           f"results_root={args.results}"]
    settings = {"artefact": art, "profile": args.profile,
                "dataset": {"n_train": prof.n_train, "n_val": prof.n_val, "n_test": prof.n_test},
                "epochs": prof.max_epochs, "val_every": prof.val_every, "patience": prof.patience,
                "batch_size": prof.batch_size, "lr": prof.lr,
                "seeds": seed_list,
                "threads": args.threads}
    rc, wall = launch_sweep(cmd, out, settings, args.jobs, art, shlex.split(args.extra), since, args.engine)
    if rc == 0:  # ran to its end; a sweep that broke off stays marked and resumes
        end_sweep(out)
    try:  # runs recorded before the pooled PSNR: evaluated once from their weights (numnet.evaluate --record)
        record_pooled(out / "runs")
    except (ValueError, CheckpointError) as exc:
        print(f"[{art}] pooled PSNR not recorded: {exc}", flush=True)
    if rep.record_rule is not None:
        try:
            record_rule(out / "runs", str(rep.record_rule))
        except (ValueError, CheckpointError) as exc:
            print(f"[{art}] the other data rule's test PSNR not recorded: {exc}", flush=True)
    runs = _report(str(rep.report))(out)
    n_failed = int((runs.status != "complete").sum())
    print(f"[{art}] {len(runs)} runs ({n_failed} failed) in {wall / 60:.1f} min -> {out}/table.md and its figures", flush=True)
    return 1 if rc != 0 or n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
