"""Reproduce a denoising sweep (Figs. 5, 6, 7 of Sec. 7.1) into ``results/<fig>/``:
``python scripts/reproduce_sweep.py fig6 [--profile paper]`` (``make reproduce-fig6``).

1. the classical baselines (``numnet.classical``) on the profile's dataset;
2. the Hydra multirun ``experiment=<fig>`` over the profile's seeds, in parallel jobs through
   Hydra's joblib launcher. ``<fig>/.sweep-in-progress.json`` marks a sweep until it has run to its
   end: running the same command again resumes an interrupted sweep (finished runs are skipped, a run
   cut off part-way continues from its checkpoint), while a finished sweep is redone, its runs moved
   to ``<fig>/previous-runs/``;
3. ``PROVENANCE.json`` and the report (``runs.csv``, ``table.md``, ``<fig>.png``).

A failed run does not stop the sweep; it is listed in ``table.md``. The exit code is non-zero
when any run failed or the sweep itself broke.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from numnet.classical import run_classical
from numnet.data.signals import SHORT_LAST
from numnet.config import ConfigError, check_sweep_args, choices, compose_config, sweep_grid_errors
from numnet.evaluate import CheckpointError, record_pooled, record_rule
from numnet.report.fig5 import write_fig5
from numnet.report.fig67 import write_fig6, write_fig7
from numnet.report.early_stop import write_early_stop
from numnet.report.fig7_paper import write_fig7_paper
from numnet.runinfo import ENGINES, begin_sweep, end_sweep, launch_sweep


#: artefact -> (experiment config, report writer, default profile: for figs 5-7 the one whose sweep fits about
#: 30 minutes on 2 cores, seeds: None for the profile's). ``<fig>-paper``: the same grid under the paper's protocol
#: (Sec. 7.1.1, ``profile=paper``) in its own folder, beside the reduced profile's results.
ARTEFACTS = {"fig5": ("fig5", write_fig5, "quick", None), "fig6": ("fig6", write_fig6, "quick", None),
             "fig7": ("fig7", write_fig7, "quick16", None), "fig7-paper": ("fig7_paper", write_fig7_paper, "paper", [0]),
             "fig5-paper": ("fig5", write_fig5, "paper", None), "fig6-paper": ("fig6", write_fig6, "paper", None),
             "early-stop": ("early_stop", write_early_stop, "paper", [0])}
#: artefacts whose report also tests the networks on the other data rule's test set (numnet.evaluate --record-rule)
OTHER_RULE = {"fig7-paper": "keep"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artefact", choices=sorted(ARTEFACTS), help="which figure")
    ap.add_argument("--profile", default="default",
                    help=f"one of {choices('profile')}; 'default' picks the artefact's default profile")
    ap.add_argument("--jobs", type=int, default=2, help="parallel training jobs (joblib launcher)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--logger", default="wandb", help=f"one of {choices('logger')}")
    ap.add_argument("--results", default="results", help="results root; the figure goes to <results>/<fig>")
    ap.add_argument("--extra", default="", help="further Hydra overrides, e.g. 'trainer=gpu'")
    ap.add_argument("--engine", default="runs", choices=ENGINES,
                    help="runs: one process per run; packed: compatible networks trained together (numnet.packing)")
    args = ap.parse_args(argv)
    art = args.artefact
    experiment, write_report, default_profile, art_seeds = ARTEFACTS[art]
    if args.profile == "default":
        args.profile = default_profile
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
    prof = compose_config(f"experiment={experiment}", f"profile={args.profile}").profile  # the experiment's overrides in
    seeds = ",".join(str(s) for s in (art_seeds or prof.seeds))
    try:  # an interrupted invocation resumes; a finished sweep is redone (its runs move to previous-runs/)
        resuming = begin_sweep(out, {"profile": args.profile, "extra": args.extra})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[{art}] " + ("resuming the interrupted sweep: finished runs are skipped" if resuming else
                         f"training afresh into {out}/runs (earlier runs, if any, in {out}/previous-runs)"), flush=True)
    since = time.time()
    print(f"[{art}] profile={args.profile}: classical baselines", flush=True)
    rule = next((o.split("=", 1)[1] for o in shlex.split(args.extra) if o.startswith("task.short_last=")), "reject")
    try:  # also the check that results/<fig>/runs holds no runs of another profile
        run_classical(args.profile, out / "runs", art, args.threads, rule)
        if experiment == "fig5":  # the classical filters under the other reading of the data rule, for comparison
            other = next(r for r in SHORT_LAST if r != rule)
            run_classical(args.profile, out / f"classical-{other}", art, args.threads, other)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cmd = ["-m", "numnet.train", "-m", f"experiment={experiment}", f"profile={args.profile}", f"seed={seeds}",
           f"logger={args.logger}", f"threads={args.threads}", "trainer.progress_bar=false",
           f"results_root={args.results}"]
    if art != experiment.replace("_", "-"):  # an experiment's grid run as another artefact: its own folder
        cmd += [f"artefact={art}", f"hydra.sweep.dir={out / 'runs'}"]
    settings = {"artefact": art, "profile": args.profile,
                "dataset": {"n_train": prof.n_train, "n_val": prof.n_val, "n_test": prof.n_test},
                "epochs": prof.max_epochs, "val_every": prof.val_every, "patience": prof.patience,
                "batch_size": prof.batch_size, "lr": prof.lr,
                "seeds": list(art_seeds or prof.seeds),
                "threads": args.threads}
    rc, wall = launch_sweep(cmd, out, settings, args.jobs, art, shlex.split(args.extra), since, args.engine)
    if rc == 0:  # ran to its end; a sweep that broke off stays marked and resumes
        end_sweep(out)
    try:  # runs recorded before the pooled PSNR: evaluated once from their weights (numnet.evaluate --record)
        record_pooled(out / "runs")
    except (ValueError, CheckpointError) as exc:
        print(f"[{art}] pooled PSNR not recorded: {exc}", flush=True)
    if art in OTHER_RULE:
        try:
            record_rule(out / "runs", OTHER_RULE[art])
        except (ValueError, CheckpointError) as exc:
            print(f"[{art}] the other data rule's test PSNR not recorded: {exc}", flush=True)
    runs = write_report(out)
    n_failed = int((runs.status != "complete").sum())
    print(f"[{art}] {len(runs)} runs ({n_failed} failed) in {wall / 60:.1f} min -> {out}/table.md and its figures", flush=True)
    return 1 if rc != 0 or n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
