"""Pieces shared by the reports of the denoising sweeps (Figs. 5, 6, 7): labels, look-ups,
provenance and table sections, and the one-panel-per-activation figure."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["ARCHS", "ACTS", "LABELS", "CLASSICAL_OF", "value", "provenance_lines", "psnr_tables", "sibling",
           "averaging_lines", "progress_lines",
           "profile_comparison_lines",
           "params_table", "classical_lines", "failed_lines", "sweep_figure", "read_provenance"]

ARCHS = ["resnet", "symresnet", "dufort_frankel", "fsi"]
ACTS = ["relu", "charbonnier", "perona_malik"]
LABELS = {"resnet": "ResNet", "symresnet": "SymResNet", "dufort_frankel": "Du Fort-Frankel", "fsi": "FSI",
          "relu": "ReLU", "charbonnier": "Charbonnier", "perona_malik": "Perona-Malik", "linear": "linear"}
#: the classical filter each activation is compared with (ReLU: linear diffusion)
CLASSICAL_OF = {"relu": "linear", "charbonnier": "charbonnier", "perona_malik": "perona_malik"}


def value(best: pd.DataFrame, model: str, act: str, depth: int | None = None) -> float | None:
    """Test PSNR of one configuration (``depth=None``: the best over depths)."""
    sel = best[(best.model == model) & (best.activation == act)]
    if depth is not None:
        sel = sel[sel.depth == depth]
    return None if sel.empty else float(sel.test_psnr.max() if depth is None else sel.test_psnr.iloc[0])


def sibling(folder: Path, fig: str) -> Path:
    """The folder of artefact ``fig`` beside ``folder`` under the same protocol: ``results/fig5`` beside
    ``results/fig6``, ``results/fig5-paper`` beside ``results/fig6-paper``."""
    return folder.parent / (fig + ("-paper" if folder.name.endswith("-paper") else ""))


def profile_comparison_lines(folder: Path, best: pd.DataFrame) -> list[str]:
    """For an artefact under the paper's protocol (``<fig>-paper``): per configuration, its best-of-seeds test
    PSNR minus that of the reduced profile's runs in ``<fig>`` where both exist."""
    from numnet.report.collect import best_of_seeds, collect

    if not folder.name.endswith("-paper") or not (folder.parent / folder.name[:-6] / "runs").is_dir():
        return []
    ref = best_of_seeds(collect(folder.parent / folder.name[:-6] / "runs"))
    keys = ["model", "activation", "depth"]
    both = best[best.model != "classical"].merge(ref[ref.model != "classical"], on=keys, suffixes=("", "_ref"))
    if both.empty:
        return []
    both["diff"] = both.test_psnr - both.test_psnr_ref
    other = ", ".join(sorted(set(both.profile_ref.dropna())))
    lines = ["## Against the reduced profile", "",
             f"{len(both)} configurations trained under both protocols: test PSNR here minus profile `{other}` "
             f"(`results/{folder.name[:-6]}`, best of its seeds): mean {both['diff'].mean():+.2f} dB, from "
             f"{both['diff'].min():+.2f} to {both['diff'].max():+.2f} dB; higher here in {(both['diff'] > 0).sum()} "
             f"of {len(both)}.", ""]
    for act in ACTS:
        sel = both[both.activation == act]
        if sel.empty:
            continue
        pivot = sel.pivot_table(index="depth", columns="model", values="diff")
        pivot = pivot.reindex(columns=[a for a in ARCHS if a in pivot.columns])
        pivot.columns = [LABELS[c] for c in pivot.columns]
        lines += [f"{LABELS[act]}: difference [dB] by number of blocks", "", pivot.round(2).to_markdown(), ""]
    return lines


def progress_lines(folder: Path, runs: pd.DataFrame) -> list[str]:
    """A notice while the folder's sweep has not run to its end (its in-progress marker is there)."""
    from numnet.runs import SWEEP_MARKER

    if not (folder / SWEEP_MARKER).exists():
        return []
    nets = runs[runs.model != "classical"]
    return [f"**Sweep in progress**: {int((nets.status == 'complete').sum())} networks complete so far; the tables "
            "below hold what is finished, and the same make target resumes the sweep. Its provenance is written "
            "when it ends; each run's is in its `summary.json`.", ""]


def averaging_lines(runs: pd.DataFrame) -> list[str]:
    """How the PSNR columns average over signals, and how far the pooled reading lies from them."""
    nets = runs[(runs.status == "complete") & (runs.model != "classical")]
    both = nets.dropna(subset=["test_psnr_pooled"]) if "test_psnr_pooled" in nets else nets.iloc[:0]
    text = ("PSNR averaging: every PSNR here is the mean of the per-signal PSNRs (the paper does not say how it "
            "averages; its numbers are quoted as printed). The pooled PSNR, from the mean squared error over the "
            "whole test set, is column `test_psnr_pooled` of `runs.csv`")
    if both.empty:
        text += "; these runs predate it and do not record it."
    else:
        gap = both.test_psnr - both.test_psnr_pooled
        text += (f": for the {len(both)} networks that record it, it lies {gap.mean():.2f} dB below the mean "
                 f"(from {gap.min():.2f} to {gap.max():.2f} dB).")
    return [text, ""]


def read_provenance(folder: Path) -> dict:
    path = folder / "PROVENANCE.json"
    return json.loads(path.read_text()) if path.exists() else {}


def provenance_lines(prov: dict) -> list[str]:
    """``## Provenance`` section: profile, sizes, seeds, commit, machine, wall time, earlier invocations."""
    if not prov:
        return []
    lines = ["## Provenance", ""]
    for k in ("profile", "dataset", "epochs", "val_every", "patience", "lr", "seeds", "engine", "git_commit", "machine",
              "jobs", "threads",
              "sweep_wall_s", "runs_written", "started_utc", "command"):
        if k in prov:
            lines.append(f"- {k}: `{json.dumps(prov[k]) if isinstance(prov[k], (dict, list)) else prov[k]}`")
    earlier, rec = [], prov.get("previous")
    while rec:
        earlier.append(f"{rec.get('git_commit')} ({rec.get('runs_written', '?')} runs, {rec.get('sweep_wall_s')} s)")
        rec = rec.get("previous")
    if earlier:
        lines.append(f"- earlier invocations that wrote runs: {'; '.join(earlier)}")
    return lines + [""]


def psnr_tables(nets: pd.DataFrame, what: str) -> list[str]:
    """One table per activation: test PSNR by number of blocks (rows) and architecture (columns)."""
    lines = []
    for act in ACTS:
        sel = nets[nets.activation == act]
        if sel.empty:
            continue
        pivot = sel.pivot_table(index="depth", columns="model", values="test_psnr").reindex(columns=ARCHS)
        pivot.columns = [LABELS[c] for c in pivot.columns]
        lines += [f"## {LABELS[act]} activation: test PSNR [dB] by number of blocks ({what})", "",
                  pivot.round(2).to_markdown(), ""]
    return lines


def params_table(nets: pd.DataFrame, title: str) -> list[str]:
    params = nets.pivot_table(index=["model", "activation"], columns="depth", values="params").astype("Int64")
    params.index = [f"{LABELS[m]} / {LABELS[a]}" for m, a in params.index]
    return [f"## {title}", "", params.to_markdown(), ""]


def classical_lines(best: pd.DataFrame) -> list[str]:
    cl = best[best.model == "classical"]
    if cl.empty:
        return []
    lines = ["## Classical diffusion filters (contrast and stopping time chosen on the validation set)", "",
             "| diffusivity | test PSNR [dB] | val PSNR [dB] | explicit steps (tau = 0.25) |", "|---|---|---|---|"]
    for r in cl.itertuples():
        lines.append(f"| {LABELS.get(r.activation, r.activation)} | {r.test_psnr:.2f} | {r.val_psnr:.2f} | {r.steps:.0f} |")
    return lines + [""]


def failed_lines(runs: pd.DataFrame) -> list[str]:
    failed = runs[runs.status != "complete"]
    lines = ["## Failed runs", ""]
    if failed.empty:
        return lines + ["None.", ""]
    lines += ["| run | status | reason |", "|---|---|---|"]
    return lines + [f"| {r.run} | {r.status} | {r.reason} |" for r in failed.itertuples()] + [""]


def sweep_figure(best: pd.DataFrame, path: Path, title: str, x: str = "depth") -> None:
    """One panel per activation: test PSNR against ``x`` (``depth`` or ``params``, the latter on a log
    axis), one line per architecture, the classical filter with the same diffusivity as a line."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    nets = best[best.model != "classical"]
    for ax, act in zip(axes, ACTS):
        for arch, marker in zip(ARCHS, "osD^"):
            sel = nets[(nets.model == arch) & (nets.activation == act)].sort_values(x)
            if not sel.empty:
                ax.plot(sel[x], sel.test_psnr, marker=marker, label=LABELS[arch])
        c = value(best, "classical", CLASSICAL_OF[act])
        if c is not None:
            ax.axhline(c, color="k", ls="--", lw=1, label=f"classical {LABELS[CLASSICAL_OF[act]]}")
        if x == "params":
            ax.set_xscale("log")
        else:  # whole numbers of blocks only
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{LABELS[act]} activation")
        ax.set_xlabel("number of blocks" if x == "depth" else "trainable parameters")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("test PSNR [dB]")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
