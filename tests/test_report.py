"""Reports are built from run summaries and results folders only; missing artefacts are said to be missing."""
import json
from pathlib import Path

import pytest

from numnet.report.collect import best_of_seeds, collect
from numnet.report.fig5 import anomalies, findings, write_fig5
from numnet.report.overview import build_report

REPO = Path(__file__).resolve().parent.parent


def _summary(folder: Path, model, act, depth, seed, val, test, status="complete"):
    folder.mkdir(parents=True)
    s = {"status": status, "model": model, "activation": act, "depth": depth, "channels": 1, "shared": True,
         "seed": seed, "params": 5, "metrics": {"val_psnr": val, "test_psnr": test}, "epochs": 2, "wall_s": 1.0,
         "profile": "smoke"}
    if status != "complete":
        s = {"status": status, "reason": "FloatingPointError: training loss is nan",
             "config": {"model": {"name": model, "depth": depth}, "activation": {"name": act}, "seed": seed}}
    (folder / "summary.json").write_text(json.dumps(s))


def test_best_of_seeds_picks_validation_best_and_failed_runs_stay_listed(tmp_path):
    runs = tmp_path / "fig5" / "runs"
    _summary(runs / "a", "symresnet", "perona_malik", 3, 0, 30.0, 31.0)
    _summary(runs / "b", "symresnet", "perona_malik", 3, 1, 32.0, 30.5)
    _summary(runs / "c", "symresnet", "perona_malik", 5, 0, 0, 0, status="failed")
    df = collect(runs)
    assert len(df) == 3 and (df.status == "failed").sum() == 1
    best = best_of_seeds(df)
    assert len(best) == 1 and best.iloc[0].seed == 1  # chosen by validation, not by test
    write_fig5(tmp_path / "fig5")
    table = (tmp_path / "fig5" / "table.md").read_text()
    assert "## Failed runs" in table and "FloatingPointError" in table
    assert (tmp_path / "fig5" / "fig5.png").stat().st_size > 0


def test_kernel_table_takes_the_validation_best_complete_seed(tmp_path):
    from numnet.report.kernels import best_run

    runs = tmp_path / "runs"
    _summary(runs / "s0", "resnet", "perona_malik", 20, 0, 37.0, 38.0)
    _summary(runs / "s1", "resnet", "perona_malik", 20, 1, 37.5, 37.2)
    _summary(runs / "s2", "resnet", "perona_malik", 20, 2, 0, 0, status="failed")
    folder, summary = best_run([runs / "s0", runs / "s1", runs / "s2", runs / "missing"])
    assert folder.name == "s1" and summary.seed == 1  # by validation, not by test; failed and missing skipped
    assert best_run([runs / "s2"]) is None


def test_classical_rows_carry_their_steps_not_a_depth_seed_or_sharing(tmp_path):
    runs = tmp_path / "runs"
    _summary(runs / "classical-perona_malik", "classical", "perona_malik", 54, 0, 38.0, 38.1)
    summary = json.loads((runs / "classical-perona_malik" / "summary.json").read_text())
    (runs / "classical-perona_malik" / "summary.json").write_text(json.dumps({**summary, "classical": {"steps": 54}}))
    _summary(runs / "net", "symresnet", "perona_malik", 3, 1, 30.0, 31.0)
    df = collect(runs).set_index("model")
    assert df.loc["classical", "steps"] == 54 and df.loc["symresnet", "depth"] == 3 and df.loc["symresnet", "seed"] == 1
    assert all(df[["depth", "seed", "shared"]].loc["classical"].isna()) and df[["steps"]].loc["symresnet"].isna().all()
    assert len(best_of_seeds(collect(runs))) == 2  # the classical row is not lost to its missing keys


def test_anomalies_flag_a_deeper_run_that_collapsed(tmp_path):
    runs = tmp_path / "runs"
    _summary(runs / "a", "fsi", "relu", 3, 0, 32.0, 32.0)
    _summary(runs / "b", "fsi", "relu", 10, 0, 28.0, 28.0)
    assert anomalies(best_of_seeds(collect(runs)))


def test_findings_can_fail(tmp_path):
    runs = tmp_path / "runs"
    for act, v in (("relu", 36.0), ("charbonnier", 33.0), ("perona_malik", 32.0)):  # reversed ranking
        _summary(runs / act, "symresnet", act, 20, 0, v, v)
    rows = {f["paper"]: f["holds"] for f in findings(best_of_seeds(collect(runs)))}
    assert rows["Perona-Malik above Charbonnier above ReLU (Fig. 5)"] is False
    assert rows["SymResNet with Perona-Malik, 20 blocks: at least 36 dB"] is False


def test_overview_of_committed_results():
    if not (REPO / "results" / "fig5" / "runs").is_dir():
        pytest.skip("no committed Fig. 5 results")
    text = build_report(REPO / "results")
    assert "| Fig. 5 |" in text and "| Fig. 2 |" in text
    for row in ("| Fig. 6 |", "| Fig. 7 |", "| Fig. 9 |", "| Stability (beyond the paper) |"):
        assert row in text
    assert "not reproduced yet" not in text  # every artefact is committed
    assert "36.51" not in text.split("| Fig. 5 |")[1].split("\n")[0]  # no paper number in our column
    # the verdict opens the report and counts its own rows
    import re

    verdict = text.split("\n")[2]
    assert verdict.startswith("**Verdict.**")
    rows = [r for r in text.split("\n") if r.startswith("| ") and not r.startswith("| artefact")]
    yes = sum(r.split(" | ")[4].startswith("yes") for r in rows)
    no = sum(r.split(" | ")[4].startswith("**no**") for r in rows)
    assert re.search(rf"Of the {yes + no} findings and numbers checked below, {yes} hold and {no} do not", verdict)


def test_overview_says_what_is_missing(tmp_path):
    text = build_report(tmp_path)
    for name in ("Fig. 5", "Fig. 6", "Fig. 7", "Fig. 9"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert "not reproduced yet" in row


def test_overview_needs_a_results_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "missing")


def test_kernel_symmetry_measure():
    import torch

    from numnet.report.kernels import PAPER, kernel_measures

    k1 = torch.tensor([0.0, -1.0, 1.0], dtype=torch.float64)
    exact = kernel_measures(k1, -0.5 * k1.flip(0))  # a diffusion block at the limit tau = 0.5
    assert exact["symmetry"] < 1e-12 and abs(exact["tau_fit"] - 0.5) < 1e-12 and exact["fit_residual"] < 1e-12
    assert kernel_measures(k1, k1)["fit_residual"] > 0.5  # not a negated mirror
    paper = kernel_measures(torch.tensor(PAPER["k1"]).double(), torch.tensor(PAPER["k2"]).double())
    assert paper["fit_residual"] < 0.2  # the paper's own kernels satisfy the finding


def _point(runs: Path, model, act, depth, params, test):
    folder = runs / f"{model}-{act}-{depth}"
    folder.mkdir(parents=True)
    s = {"status": "complete", "model": model, "activation": act, "depth": depth, "channels": 16, "shared": False,
         "seed": 0, "params": params, "metrics": {"val_psnr": test, "test_psnr": test}, "profile": "smoke"}
    (folder / "summary.json").write_text(json.dumps(s))


def test_equal_parameter_comparison_counts_resnet_points_matched_with_fewer_parameters(tmp_path):
    from numnet.report.fig67 import beats_resnet

    runs = tmp_path / "runs"
    _point(runs, "resnet", "relu", 1, 10, 30.0)
    _point(runs, "resnet", "relu", 2, 20, 33.0)
    _point(runs, "symresnet", "relu", 2, 10, 31.0)   # beats the first ResNet point with as many parameters
    _point(runs, "symresnet", "relu", 4, 25, 34.0)   # more parameters than the second: does not count for it
    assert beats_resnet(best_of_seeds(collect(runs)), "symresnet", "relu") == (1, 2)


def test_fig7_report_checks_the_papers_claims_and_can_say_no(tmp_path):
    from numnet.report.fig67 import write_fig7

    runs = tmp_path / "fig7" / "runs"
    for arch, params in (("resnet", 100), ("symresnet", 50), ("dufort_frankel", 50), ("fsi", 60)):
        for act, v in (("relu", 35.0), ("charbonnier", 34.0), ("perona_malik", 33.0)):  # reversed ranking
            _point(runs, arch, act, 20, params, v)
    write_fig7(tmp_path / "fig7")
    table = (tmp_path / "fig7" / "table.md").read_text()
    assert "| activation ranking kept, with a smaller margin than with 1 channel |" in table
    assert "| **no** |" in table and "40.88" in table
    assert (tmp_path / "fig7" / "fig7_params.png").stat().st_size > 0


def test_fig7_paper_report_holds_the_papers_rule_to_the_target_and_lists_unfinished_runs(tmp_path):
    from numnet.report.fig7_paper import write_fig7_paper

    runs = tmp_path / "fig7-paper" / "runs"
    for act, rule, test in (("perona_malik", "paper", 40.70), ("relu", "paper", 39.00), ("perona_malik", "provable", 38.40)):
        d = runs / f"symresnet-{act}-d20-c16-own{'' if rule == 'paper' else '-' + rule}-s0"
        d.mkdir(parents=True)
        s = {"status": "complete", "model": "symresnet", "activation": act, "depth": 20, "channels": 16, "shared": False,
             "normalisation": rule, "seed": 0, "params": 15400, "epochs": 80, "wall_s": 1500.0, "profile": "paper",
             "metrics": {"val_psnr": test, "test_psnr": test, "best_epoch": 60},
             "history": [{"epoch": e, "val_psnr": test - 1 + e / 80, "train_loss": 1.0} for e in range(80)]}
        (d / "summary.json").write_text(json.dumps(s))
    (runs / "symresnet-charbonnier-d20-c16-own-s0").mkdir()  # still training
    write_fig7_paper(tmp_path / "fig7-paper")
    table = (tmp_path / "fig7-paper" / "table.md").read_text()
    pm = next(line for line in table.splitlines() if line.startswith("| Perona-Malik") and "| paper " in line)
    relu = next(line for line in table.splitlines() if line.startswith("| ReLU"))
    provable = next(line for line in table.splitlines() if line.startswith("| Perona-Malik") and "provable" in line)
    assert "40.88" in pm and "| yes " in pm and "-0.18" in pm
    assert "**no**" in relu and "(not the paper's model)" in provable
    assert "symresnet-charbonnier-d20-c16-own-s0" in table.split("## Runs not finished yet")[1]
    assert (tmp_path / "fig7-paper" / "curves.png").stat().st_size > 0
    curves = table.split("## The paper's numbers along our training curves")[1].split("\n## ")[0]
    pm_curve = next(line for line in curves.splitlines() if line.startswith("| Perona-Malik"))
    cells = [c.strip() for c in pm_curve.strip("|").split("|")]
    assert cells[:6] == ["Perona-Malik", "40.88", "40.19", "40.69", "", ""]  # 39.70 + e / 80, e < 40 and e < 80
    assert cells[6] == "" and cells[7] == "40.69 (79)"  # never reached the paper's number
    assert "40 epochs -1.55 to -0.69 dB; 80 epochs -1.05 to -0.19 dB." in curves
    rows = [line for line in build_report(tmp_path).splitlines() if line.startswith("| Fig. 7, paper's protocol |")]
    assert len(rows) == 3 and sum("| yes (gap -0.18 dB" in r for r in rows) == 1
    assert any("another model" in r for r in rows)


def test_early_stop_replay_stops_where_the_task_stops():
    """The replay of a validation history stops at the first validation that is ``patience`` epochs past the
    best one and keeps that best; without running out of patience it ends with the history."""
    from numnet.report.early_stop import replay

    hist = [{"epoch": e, "val_psnr": v} for e, v in [(9, 30.0), (19, 31.0), (29, 30.5), (39, 30.9), (49, 31.5)]]
    assert replay(hist, 20) == (39, 31.0, 19)
    assert replay(hist, 30) == (49, 31.5, 49)
    assert replay(hist, 0) == (49, 31.5, 49)


def test_paper_protocol_table_compares_with_the_reduced_profile(tmp_path):
    """``results/fig5-paper/table.md`` sets each configuration beside the same one of ``results/fig5``."""
    for folder, tests in (("fig5", (30.0, 31.0)), ("fig5-paper", (31.5, 30.5))):
        for depth, test in zip((3, 7), tests):
            _summary(tmp_path / folder / "runs" / f"d{depth}", "symresnet", "perona_malik", depth, 0, test, test)
    write_fig5(tmp_path / "fig5-paper")
    text = (tmp_path / "fig5-paper" / "table.md").read_text()
    assert "## Against the reduced profile" in text
    assert "mean +0.50 dB, from -0.50 to +1.50 dB; higher here in 1 of 2" in text
    write_fig5(tmp_path / "fig5")
    assert "## Against the reduced profile" not in (tmp_path / "fig5" / "table.md").read_text()


def test_every_committed_markdown_table_has_one_column_count():
    """A ``|`` inside a cell (``mean |residual|``) splits it: every row of every committed table must have as many
    cells as its header (escaped pipes ``\\|`` do not count)."""
    import re

    root = Path(__file__).resolve().parent.parent / "results"
    cells = lambda line: len(re.split(r"(?<!\\)\|", line.strip().strip("|")))  # noqa: E731
    bad = []
    for path in sorted(root.rglob("*.md")):
        block: list[str] = []
        for line in path.read_text().splitlines() + [""]:
            if line.startswith("|"):
                block.append(line)
                continue
            bad += [f"{path.relative_to(root)}: {row[:80]}" for row in block[1:] if cells(row) != cells(block[0])]
            block = []
    assert not bad, bad[:5]


def test_overview_checks_a_finished_paper_protocol_sweep_and_counts_a_training_one(tmp_path):
    """A finished ``results/fig5-paper`` sweep contributes the figure's findings under profile ``paper`` (so the
    verdict counts them, and they can fail); while its sweep trains it is one progress row."""
    for act, v in (("relu", 36.0), ("charbonnier", 33.0), ("perona_malik", 32.0)):  # reversed ranking
        _summary(tmp_path / "fig5-paper" / "runs" / act, "symresnet", act, 20, 0, v, v)
    for p in (tmp_path / "fig5-paper" / "runs").glob("*/summary.json"):
        p.write_text(p.read_text().replace('"smoke"', '"paper"'))
    rows = [r for r in build_report(tmp_path).splitlines() if "fig5-paper/fig5.png" in r]
    ranking = next(r for r in rows if "Perona-Malik above Charbonnier above ReLU" in r)
    assert "| paper | **no** |" in ranking
    assert "paper: 0 of" in build_report(tmp_path).split("\n")[2]
    (tmp_path / "fig5-paper" / ".sweep-in-progress.json").write_text("{}")
    rows = [r for r in build_report(tmp_path).splitlines() if "fig5-paper/fig5.png" in r]
    assert len(rows) == 1 and "3 networks complete" in rows[0] and "| see table |" in rows[0]


def test_fig9_findings_ask_the_single_grid_net_to_stay_clearly_below_both():
    import pandas as pd

    from numnet.report.fig9 import findings_fig9

    def rows(sg, fmg, unet):
        return pd.DataFrame({"method": ["single_grid", "fmg", "unet", "cg"], "psnr_vs_cg": [sg, fmg, unet, float("inf")],
                             "mean_abs_residual": [2.0, 0.5, 0.4, 0.0]})

    held = {f["paper"].split(" (")[0]: f["holds"] for f in findings_fig9(rows(27.0, 33.0, 32.5))}
    assert held == {"FMG net and U-net approximate the EED inpainting result": True,
                    "the single-grid net does not": True, "the U-net's residual is slightly better than the FMG net's": True}
    held = {f["paper"].split(" (")[0]: f["holds"] for f in findings_fig9(rows(27.2, 28.2, 27.3))}
    assert held["the single-grid net does not"] is False  # below 32 dB, but not clearly below the others
    assert held["FMG net and U-net approximate the EED inpainting result"] is False
