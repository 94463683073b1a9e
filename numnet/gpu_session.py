"""One prepared GPU session: the stacked engine's benchmark, then Fig. 7's headline under the paper's protocol.

``python -m numnet.gpu_session --out DIR --budget-s S`` (on the GPU machine, through its wrapper script) runs

1. ``python -m numnet.bench_gpu`` (the ``gpu-`` rows of ``results/bench/bench.csv``, ``results/bench/gpu/``);
2. ``python -m numnet.reproduce fig7-paper`` with the packed engine on the GPU (``trainer=gpu``: stacked
   networks, CUDA graphs) and the seeds ``--seeds`` (default 0, 1, 2), stopped when the budget is spent; the
   sweep resumes from its checkpoints (``trainer.checkpoint_every_s``) in the next session;

and copies ``results/bench`` and ``results/fig7-paper`` (finished runs, resume checkpoints, the pack
checkpoints under ``runs/.packs``) into ``DIR/results`` after each step, so that what a session reached comes
back even when it is cut off. ``--skip-bench`` leaves step 1 out; ``--profile`` and ``--extra`` rehearse the
session on the CPU (``--profile smoke --extra 'trainer.stacked=true'``). Each step's output goes to
``DIR/<step>.log``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main"]

_REPO = Path(__file__).resolve().parent.parent


def _copy(results: Path, out: Path, name: str) -> None:
    src = results / name
    if src.exists():
        dst = out / "results" / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("wandb", "__pycache__"))


def _run(cmd: list[str], log: Path, limit_s: float) -> int:
    """``cmd`` with its output in ``log``, interrupted (SIGINT, then SIGKILL after 30 s) after ``limit_s``."""
    print(f"[gpu-session] {' '.join(cmd)} (at most {limit_s:.0f} s)", flush=True)
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=_REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=max(limit_s, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="where the results come back (the device tool's $OUT)")
    ap.add_argument("--budget-s", type=float, default=540.0, help="wall-clock seconds for the whole session")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--results", default="results")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--profile", default="default", help="the headline's profile (default: the artefact's, paper)")
    ap.add_argument("--extra", default="trainer=gpu", help="Hydra overrides of the headline's runs")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = _REPO / args.results
    left = lambda: args.budget_s - (time.monotonic() - t0)  # noqa: E731
    py = sys.executable
    if not args.skip_bench:
        rc = _run([py, "-m", "numnet.bench_gpu", "--results", str(results)], out / "bench.log", min(240.0, left() - 60))
        _copy(results, out, "bench")
        print(f"[gpu-session] bench: exit {rc}, {left():.0f} s left", flush=True)
    rc = _run([py, "-m", "numnet.reproduce", "fig7-paper", "--engine", "packed", "--jobs", "1", "--logger", "none",
               "--seeds", args.seeds, "--results", str(results), "--profile", args.profile, "--extra", args.extra],
              out / "fig7-paper.log", left() - 45)
    _copy(results, out, "fig7-paper")
    print(f"[gpu-session] fig7-paper: exit {rc}, {left():.0f} s left", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
