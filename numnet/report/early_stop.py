"""What the paper profile's early stop costs: ``python -m numnet.report.early_stop [folder]`` (default
``results/early-stop``).

The runs of ``experiment=early_stop`` train the paper's protocol (Sec. 7.1.1) for the full 2000 epochs
without an early stop. Each run's validation history is replayed with the patience of
``configs/profile/paper.yaml``: the epoch at which the profile would have stopped, the best validation
PSNR it would have kept, and what the full run found later. Writes ``early_stop.csv`` and ``table.md``
(the sweep's ``PROVENANCE.json`` is the launcher's).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from numnet.report.artefact import report_main
from numnet.config import CONFIG_DIR
from numnet.report.sweep import LABELS, failed_lines, provenance_lines, read_provenance
from numnet.report.collect import collect
from numnet.summary import RunSummary

__all__ = ["replay", "write_early_stop"]


def replay(history: list[dict], patience: int) -> tuple[int, float, int]:
    """The early stop of :class:`numnet.tasks.denoising.DenoisingTask` replayed on a validation history
    (``[{"epoch", "val_psnr"}, ...]`` in order): ``(stop epoch, best validation PSNR kept, its epoch)``; the
    last epoch of the history where the patience never runs out."""
    best, best_epoch = float("-inf"), -1
    for h in history:
        if h["val_psnr"] > best:
            best, best_epoch = h["val_psnr"], h["epoch"]
        elif patience and h["epoch"] - best_epoch >= patience:
            return h["epoch"], best, best_epoch
    return history[-1]["epoch"], best, best_epoch


def write_early_stop(folder: str | Path) -> pd.DataFrame:
    """``early_stop.csv`` and ``table.md`` from the runs in ``folder/runs``; returns the runs' table."""
    folder = Path(folder)
    runs = collect(folder / "runs")
    patience = int(OmegaConf.load(CONFIG_DIR / "profile" / "paper.yaml").patience)
    rows = []
    for r in runs[(runs.status == "complete") & (runs.model != "classical")].itertuples():
        hist = RunSummary.read(folder / "runs" / r.run / "summary.json").history
        if not hist:
            continue
        stop, kept, kept_epoch = replay(hist, patience)
        full = max(hist, key=lambda h: h["val_psnr"])
        rows.append({"model": r.model, "activation": r.activation, "shared": bool(r.shared), "depth": int(r.depth),
                     "epochs_full": hist[-1]["epoch"] + 1, "best_epoch_full": full["epoch"],
                     "val_best_full": round(full["val_psnr"], 3), "stop_epoch": stop + 1,
                     "best_epoch_kept": kept_epoch, "val_best_kept": round(kept, 3),
                     "loss_db": round(full["val_psnr"] - kept, 3),
                     "epochs_saved": round(1 - (stop + 1) / (hist[-1]["epoch"] + 1), 3),
                     "test_psnr_full": round(float(r.test_psnr), 3)})
    table = pd.DataFrame(rows)
    table.to_csv(folder / "early_stop.csv", index=False)
    prov = read_provenance(folder)
    ds = prov.get("dataset") or {}
    lines = ["# What the paper profile's early stop costs", "",
             f"Runs of profile `{prov.get('profile')}` ({ds.get('n_train')} / {ds.get('n_val')} / {ds.get('n_test')} "
             f"signals, batch {prov.get('batch_size')}, Adam lr {prov.get('lr')}) trained all {prov.get('epochs')} "
             "epochs without an early stop (`experiment=early_stop`, `make reproduce-early-stop`; `profile=paper` is "
             "the paper's protocol, Sec. 7.1.1). Each validation history is replayed with the patience of "
             f"`profile=paper` ({patience} epochs): where that profile stops, the best validation PSNR it keeps, "
             "and how much better the full run's best validation PSNR is. The test PSNR is the full run's "
             "(its best validation epoch); the stopped run's weights are not kept, so its test PSNR is not measured.",
             ""]
    if table.empty:
        lines += ["No complete run yet.", ""]
    else:
        show = table.assign(model=table.model.map(LABELS), activation=table.activation.map(LABELS),
                            weights=table.shared.map({True: "shared", False: "own (Eq. 27)"}))
        show = show[["model", "activation", "weights", "depth", "best_epoch_full", "val_best_full", "stop_epoch",
                     "best_epoch_kept", "val_best_kept", "loss_db", "epochs_saved", "test_psnr_full"]]
        show.columns = ["model", "activation", "weights", "depth", "full: best epoch", "full: best val [dB]",
                        "early stop: stop epoch", "kept: best epoch", "kept: best val [dB]", "loss [dB]",
                        "epochs saved", "full: test [dB]"]
        lines += [show.to_markdown(index=False), "",
                  f"Over {len(table)} runs the early stop loses at most {table.loss_db.max():.3f} dB of validation PSNR "
                  f"(mean {table.loss_db.mean():.3f} dB) and saves {100 * table.epochs_saved.mean():.0f} % of the "
                  "epochs on average.", ""]
    lines += failed_lines(runs) + provenance_lines(prov)
    (folder / "table.md").write_text("\n".join(lines))
    return runs


def _write(folder: str) -> pd.DataFrame:
    if not (Path(folder) / "runs").is_dir():
        raise FileNotFoundError(f"{folder}/runs does not exist: run `make reproduce-early-stop` first")
    return write_early_stop(folder)


def main(argv: list[str] | None = None) -> int:
    return report_main(argv, __doc__.splitlines()[0], "results/early-stop", _write,
                       lambda folder, runs: f"{folder}/table.md ({len(runs)} runs)")


if __name__ == "__main__":
    sys.exit(main())
