"""Fig. 9 measurements (Sec. 7.2.3): the trained inpainting networks against the CG solver.

``python -m numnet.evaluate_inpainting results/fig9`` reads ``runs/<model>-s<seed>/model.pt``, inpaints the
held-out test image under one seeded random mask of the training density (the paper's case) and, beyond the
paper, three further held-out images and sparser masks, solves each problem with the lagged-diffusivity CG
solver (the reference), times the networks and the CG solver on the paper's case, and stores what it measured:

* ``metrics.csv``: ``method, image, density, params, mean_abs_residual, psnr_vs_cg, psnr_vs_original, seconds``
  (seconds for the paper's case);
* ``evaluation.json``: the cases, the CG solver's history on the paper's case, and per method its CG times to
  the same residual and to the same PSNR against the original;
* ``fields.npz``: the paper's case's images and residual maps (float16) for the figure.

:func:`numnet.report.fig9.write_fig9` then builds ``table.md`` and ``fig9.png`` from those files alone.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from numnet.config import ConfigError
from numnet.runs import git_commit
from numnet.summary import RunSummary, read_summaries

__all__ = ["METHODS", "DENSITIES", "evaluate_fig9", "trained_networks", "cg_time_to", "cg_time_to_psnr"]

METHODS = ("single_grid", "fmg", "unet", "unet_iter")
#: the columns of ``metrics.csv``; the CG comparisons of the paper's case go to ``evaluation.json``
COLUMNS = ["method", "image", "density", "params", "mean_abs_residual", "psnr_vs_cg", "psnr_vs_original", "seconds"]
TIMING = ["cg_seconds_to_same_residual", "cg_over_net", "cg_seconds_to_same_psnr", "cg_over_net_psnr",
          "train_steps", "train_wall_s"]


def trained_networks(folder: str | Path, seed: int = 0) -> dict[str, RunSummary]:
    """The complete runs of seed ``seed`` in ``folder/runs``, by model name."""
    return {s.model: s for s in read_summaries(Path(folder) / "runs") if s.complete and s.seed == seed}


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(255.0 ** 2 / mse)).item()


def cg_time_to(history: list[dict], residual: float) -> float | None:
    """Seconds the CG solver needed to bring its mean |residual| to ``residual`` (``None``: never)."""
    for h in history:
        if h["mean_abs_residual"] <= residual:
            return h["seconds"]
    return None


def cg_time_to_psnr(history: list[dict], psnr: float) -> float | None:
    """Seconds the CG solver needed until an iterate reached ``psnr`` against the original (``None``: never)."""
    for h in history:
        if h.get("psnr_vs_original", -math.inf) >= psnr:
            return h["seconds"]
    return None


def _timed(fn, repeats: int = 3) -> tuple[torch.Tensor, float]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


#: the paper's case (Fig. 9) and, beyond it, three further held-out images and sparser masks
DENSITIES = (0.2, 0.1, 0.05)


def _mask_seed(image_index: int, density: float, seed: int) -> int:
    """The mask seed of a test case: ``1000 + seed`` for the paper's case (test image, 20 %), distinct otherwise."""
    if image_index == 0 and density == DENSITIES[0]:
        return 1000 + seed
    return 2000 + 100 * image_index + round(1000 * density) + 10000 * seed


def evaluate_fig9(folder: str | Path, threads: int = 1, seed: int = 0) -> pd.DataFrame:
    """Evaluate every trained network in ``folder/runs`` and the CG solver on the held-out test images and mask
    densities (:data:`DENSITIES`); write ``metrics.csv`` (one row per method, image and density),
    ``evaluation.json`` and ``fields.npz`` (module docstring), then the report's ``table.md`` and ``fig9.png``."""
    from numnet.data.images import FURTHER_TEST_IMAGES, TEST_IMAGE, random_masks, test_image
    from numnet.models.weights import load_weights
    from numnet.models.inpainting import initial_guess
    from numnet.schemes.eed import EEDParams, cg_inpaint, eed_residual, mean_abs_residual

    folder = Path(folder)
    runs = folder / "runs"
    if not runs.is_dir():
        raise FileNotFoundError(f"results folder {str(runs)!r} does not exist: run `make reproduce-fig9` first")
    torch.set_num_threads(threads)
    summaries = trained_networks(folder, seed)
    if not summaries:
        raise FileNotFoundError(f"no complete inpainting run below {str(runs)!r}")
    cfg = next(iter(summaries.values())).config
    eed = EEDParams(lam=cfg["eed"]["lam"], sigma=cfg["eed"]["sigma"], alpha=cfg["eed"]["alpha"])
    trained_density = float(cfg["data"]["density"])
    models = {m: load_weights(runs / summaries[m].run / "model.pt")[0] for m in METHODS if m in summaries}
    images = (TEST_IMAGE, *FURTHER_TEST_IMAGES)
    densities = (trained_density, *[d for d in DENSITIES if d != trained_density])
    rows, cases = [], []
    for i, name in enumerate(images):
        img = test_image(name)
        for density in densities:
            main = i == 0 and density == trained_density  # the paper's case: timed, drawn, checked
            mask = random_masks(img.shape, density, torch.Generator().manual_seed(_mask_seed(i, density, seed)))
            f = img * mask
            ref, history = cg_inpaint(f, mask, eed, original=img)
            case = {"image": name, "density": density}
            shown, residuals = {"original": img, "masked": f, "cg": ref}, {}
            for method, model in models.items():
                with torch.no_grad():
                    u, secs = _timed(lambda: model(f, mask), 3 if main else 1)
                residuals[method] = eed_residual(u, f, mask, eed).abs()
                res, to_original = float(residuals[method].mean()), _psnr(u, img)
                t_cg = cg_time_to(history, res)
                t_cg_psnr = cg_time_to_psnr(history, to_original)
                rows.append({"method": method, **case, "params": model.n_params(), "mean_abs_residual": res,
                             "psnr_vs_cg": _psnr(u, ref), "psnr_vs_original": to_original,
                             "seconds": secs if main else None,
                             "cg_seconds_to_same_residual": t_cg if main else None,
                             "cg_over_net": None if t_cg is None or not main else t_cg / secs,
                             "cg_seconds_to_same_psnr": t_cg_psnr if main else None,
                             "cg_over_net_psnr": None if t_cg_psnr is None or not main else t_cg_psnr / secs,
                             "train_steps": summaries[method].steps, "train_wall_s": summaries[method].wall_s})
                shown[method] = u
            residuals["cg"] = eed_residual(ref, f, mask, eed).abs()
            rows.append({"method": "cg", **case, "params": 0, "mean_abs_residual": float(residuals["cg"].mean()),
                         "psnr_vs_cg": float("inf"), "psnr_vs_original": _psnr(ref, img),
                         "seconds": history[-1]["seconds"] if main else None,
                         "cg_seconds_to_same_residual": history[-1]["seconds"] if main else None, "cg_over_net": None,
                         "cg_seconds_to_same_psnr": None, "cg_over_net_psnr": None,
                         "train_steps": None, "train_wall_s": None})
            record = {"mask_seed": _mask_seed(i, density, seed), "known_pixels": int(mask.sum()),
                      "cg_outer_steps": history[-1]["outer"], "cg_inner_iterations": sum(h["cg_iters"] for h in history)}
            cases.append({**case, **record, "cg_seconds": history[-1]["seconds"]})
            if main:
                u0 = initial_guess(f, mask)
                info = {"test_image": name, "density": density, **record, "eed": {"lam": eed.lam, "sigma": eed.sigma},
                        "initial_guess": {"mean_abs_residual": float(mean_abs_residual(u0, f, mask, eed)),
                                          "psnr_vs_cg": _psnr(u0, ref), "psnr_vs_original": _psnr(u0, img)},
                        "threads": threads, "evaluation_commit": git_commit()}
                main_history, main_shown, main_residuals, main_mask = history, shown, residuals, mask
    metrics = pd.DataFrame(rows)
    metrics[COLUMNS].to_csv(folder / "metrics.csv", index=False)
    info["cases"] = cases
    main_rows = metrics[(metrics.image == info["test_image"]) & (metrics.density == info["density"])]
    timing = {r["method"]: {k: None if r[k] is None or r[k] != r[k] else float(r[k]) for k in TIMING}
              for r in main_rows.to_dict("records")}
    (folder / "evaluation.json").write_text(json.dumps({"info": info, "cg_history": main_history,
                                                         "timing": timing}, indent=1))
    fields = {f"image_{k}": v[0, 0] for k, v in main_shown.items()}
    fields.update({f"residual_{k}": v[0, 0] for k, v in main_residuals.items()})
    fields["mask"] = main_mask[0, 0]
    np.savez_compressed(folder / "fields.npz", **{k: v.numpy().astype(np.float16) for k, v in fields.items()})
    from numnet.report.fig9 import write_fig9

    write_fig9(folder)
    return metrics




def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Evaluate the Fig. 9 networks against the CG solver")
    ap.add_argument("folder", nargs="?", default="results/fig9")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        metrics = evaluate_fig9(args.folder, args.threads)
    except (FileNotFoundError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(metrics.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
