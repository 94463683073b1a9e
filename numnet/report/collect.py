"""Run summaries -> one pandas table (the only source of every results table and figure)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

__all__ = ["RUN_COLUMNS", "collect", "best_of_seeds", "normalisation_of"]

RUN_COLUMNS = [
    "model", "activation", "depth", "channels", "shared", "normalisation", "seed", "params", "val_psnr", "test_psnr",
    "test_psnr_pooled", "epochs", "steps", "wall_s", "profile", "status", "reason", "run",
]


def normalisation_of(summary: dict) -> str | None:
    """The kernel normalisation rule of a run (Sec. 3.3): ``paper``, ``provable`` or ``tight``; summaries written
    before the option existed trained with the provable rule; ``None`` for models that do not normalise
    (ResNet) and for the classical filters."""
    from numnet.models import recorded_kwargs

    model_cfg = (summary.get("config") or {}).get("model") or {}
    name = summary.get("model", model_cfg.get("name"))
    return summary.get("normalisation") or recorded_kwargs(name, model_cfg).get("normalisation")


def _evaluated(run: Path) -> dict:
    path = run / "evaluation.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _row(path: Path, root: Path) -> dict:
    s = json.loads(path.read_text())
    cfg = s.get("config") or {}
    m = s.get("metrics") or {}
    model_cfg = cfg.get("model") or {}
    row = {
        "model": s.get("model", model_cfg.get("name")),
        "activation": s.get("activation", (cfg.get("activation") or {}).get("name")),
        "depth": s.get("depth", model_cfg.get("depth")),
        "channels": s.get("channels", model_cfg.get("channels")),
        "shared": s.get("shared", model_cfg.get("shared")),
        "normalisation": normalisation_of(s),
        "seed": s.get("seed", cfg.get("seed")),
        "params": s.get("params"),
        "val_psnr": m.get("val_psnr"),
        "test_psnr": m.get("test_psnr"),
        # pooled PSNR: the summary's, else the later evaluation's (numnet.evaluate --record), else None
        "test_psnr_pooled": m.get("test_psnr_pooled", _evaluated(path.parent).get("test_psnr_pooled")),
        "epochs": s.get("epochs"),
        "wall_s": s.get("wall_s_total") or s.get("wall_s"),  # all sittings of a resumed run where recorded
        "profile": s.get("profile", (cfg.get("profile") or {}).get("name")),
        "status": s.get("status", "unknown"),
        "reason": s.get("reason", ""),
        "run": str(path.parent.relative_to(root)),
    }
    if row["model"] == "classical":  # a filter, not a network: its explicit steps, no blocks, seed or sharing
        row.update(steps=(s.get("classical") or {}).get("steps", row["depth"]), depth=None, seed=None, shared=None)
    return row


def collect(runs_dir: str | Path) -> pd.DataFrame:
    """One row per ``summary.json`` below ``runs_dir``, failed runs included (``status``)."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {str(root)!r} does not exist: run the sweep first")
    rows = []
    for path in sorted(root.glob("*/summary.json")):
        try:
            rows.append(_row(path, root))
        except (OSError, ValueError) as exc:
            rows.append({"run": str(path.parent.relative_to(root)), "status": "unreadable", "reason": str(exc)})
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
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
