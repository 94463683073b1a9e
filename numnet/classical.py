"""Classical diffusion baselines of Fig. 5: ``python -m numnet.classical --profile quick --out DIR``.

For linear, Charbonnier and Perona--Malik diffusion the contrast ``lambda`` and the stopping
time ``T`` are chosen on the validation set of the profile's dataset (the same signals the
networks see), then the filter is applied to the test set. Each diffusivity writes
``DIR/classical-<name>/summary.json`` in the same format as a training run; a complete
summary is not redone.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from numnet.config import ConfigError, check_writable, choices, compose_config
from numnet.data.signals import make_splits
from numnet.metrics import pooled_psnr, psnr
from numnet.runs import RunConflict, is_complete, provenance, write_json_atomic
from numnet.schemes.explicit import ExplicitDiffusion, select_explicit

__all__ = ["DIFFUSIVITIES", "run_classical"]

DIFFUSIVITIES = ("linear", "charbonnier", "perona_malik")
#: contrast grid (log-spaced) and largest stopping time searched
LAMBDAS = [float(x) for x in np.logspace(-0.5, 2.0, 21)]
MAX_TIME = 60.0
TAU = 0.25


def run_classical(profile: str, out: str | Path, artefact: str = "fig5", threads: int = 1,
                  short_last: str = "reject") -> list[dict]:
    """The classical filters of each diffusivity, contrast and stopping time chosen on the validation set,
    on the profile's dataset (``short_last``: the data rule, :mod:`numnet.data.signals`), each recorded in
    ``out/classical-<diffusivity>/summary.json``; complete ones are skipped."""
    if profile not in choices("profile"):
        raise ConfigError(f"profile={profile!r} is unknown; choose one of {choices('profile')}")
    out = Path(out)
    check_writable(out)
    cfg = compose_config(f"profile={profile}")
    torch.set_num_threads(threads)
    p, t = cfg.profile, cfg.task
    data = make_splits(p.n_train, p.n_val, p.n_test, int(t.data_seed), int(t.length), float(t.sigma),
                       str(short_last))
    dataset = {"n_train": p.n_train, "n_val": p.n_val, "n_test": p.n_test, "data_seed": int(t.data_seed),
               "length": int(t.length), "sigma": float(t.sigma), "short_last": str(short_last)}
    summaries = []
    for act in DIFFUSIVITIES:
        path = out / f"classical-{act}" / "summary.json"
        try:
            # records made before task.short_last used the rule that is the default
            done = is_complete(path, lambda s: (s.get("profile"), {"short_last": "reject", **(s.get("dataset") or {})}),
                               (p.name, dataset))
        except RunConflict as exc:
            raise ConfigError(str(exc)) from None
        if done:
            print(f"[numnet] skip {path.parent} (summary complete)", flush=True)
            continue
        t0 = time.perf_counter()
        sel = select_explicit(act, data["val"].noisy, data["val"].clean, LAMBDAS, MAX_TIME, TAU, float(t.data_range))
        lam = sel["lam"] if act != "linear" else 1.0
        filt = ExplicitDiffusion(act, lam=lam, tau=TAU, steps=sel["steps"])
        with torch.no_grad():
            denoised = filt(data["test"].noisy)
            test_psnr = float(psnr(denoised, data["test"].clean, float(t.data_range)).mean())
            noisy_psnr = float(psnr(data["test"].noisy, data["test"].clean, float(t.data_range)).mean())
            pooled = pooled_psnr(denoised, data["test"].clean, float(t.data_range))
        summary = {
            "status": "complete",
            "name": f"classical-{act}",
            "artefact": artefact,
            "profile": p.name,
            "model": "classical",
            "activation": act,
            "depth": sel["steps"],
            "channels": 1,
            "shared": True,
            "seed": int(t.data_seed),
            "params": 0,
            "metrics": {"val_psnr": sel["val_psnr"], "test_psnr": test_psnr, "noisy_test_psnr": noisy_psnr,
                        "test_psnr_pooled": pooled},
            "classical": {
                "lambda": None if act == "linear" else lam,
                "stopping_time": sel["time"],
                "tau": TAU,
                "steps": sel["steps"],
                "on_grid_edge": bool(sel["on_grid_edge"]),
                "lambda_grid": LAMBDAS if act != "linear" else None,
                "max_time": MAX_TIME,
                "kernel": "forward difference (0, -1, 1), h = 1",
            },
            "epochs": 0,
            "dataset": dataset,
            "wall_s": round(time.perf_counter() - t0, 3),
            "provenance": provenance(),
        }
        write_json_atomic(path, summary)
        print(
            f"[numnet] classical {act}: test {test_psnr:.2f} dB (val {sel['val_psnr']:.2f}; "
            f"lambda={summary['classical']['lambda']}, T={sel['time']}), {summary['wall_s']:.1f} s",
            flush=True,
        )
        summaries.append(summary)
    return summaries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--out", required=True, help="folder that receives classical-<name>/summary.json")
    ap.add_argument("--artefact", default="fig5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--short-last", default="reject", choices=["reject", "keep"],
                    help="the data rule for a cut-off last segment shorter than n/10 (task.short_last)")
    args = ap.parse_args(argv)
    try:
        run_classical(args.profile, args.out, args.artefact, args.threads, args.short_last)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
