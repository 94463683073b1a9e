"""Run summaries -> one pandas table (the only source of every results table and figure)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from numnet.summary import RunSummary, read_summaries

__all__ = ["RUN_COLUMNS", "collect", "best_of_seeds"]

RUN_COLUMNS = [
    "model", "activation", "depth", "channels", "shared", "normalisation", "seed", "params", "val_psnr", "test_psnr",
    "test_psnr_pooled", "epochs", "steps", "wall_s", "profile", "status", "reason", "run",
]


def _row(s: RunSummary) -> dict:
    return {"model": s.model, "activation": s.activation, "depth": s.depth, "channels": s.channels, "shared": s.shared,
            "normalisation": s.normalisation, "seed": s.seed, "params": s.params,
            "val_psnr": s.metrics.get("val_psnr"), "test_psnr": s.metrics.get("test_psnr"),
            "test_psnr_pooled": s.metrics.get("test_psnr_pooled"), "epochs": s.epochs, "steps": s.steps,
            "wall_s": s.wall_s, "profile": s.profile, "status": s.status, "reason": s.reason, "run": s.run}


def collect(runs_dir: str | Path) -> pd.DataFrame:
    """One row per ``summary.json`` below ``runs_dir``, failed runs included (``status``)."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {str(root)!r} does not exist: run the sweep first")
    df = pd.DataFrame([_row(s) for s in read_summaries(root)], columns=RUN_COLUMNS)
    for col in ("depth", "channels", "seed", "steps"):  # integers with gaps (a classical filter has no depth)
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    return df.sort_values(["model", "activation", "depth", "seed"], na_position="last", kind="stable").reset_index(drop=True)


def best_of_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """Per configuration the completed run with the best validation PSNR (Sec. 7.1.1)."""
    ok = df[df["status"] == "complete"].copy()
    if ok.empty:
        return ok
    keys = ["model", "activation", "depth", "channels", "shared", "normalisation"]
    idx = ok.groupby(keys, dropna=False)["val_psnr"].idxmax()
    return ok.loc[idx].reset_index(drop=True)
