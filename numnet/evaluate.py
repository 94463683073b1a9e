"""Re-evaluate stored weights: ``python -m numnet.evaluate RUN_DIR_OR_MODEL_PT [--seed S --n N]``.

Loads ``model.pt`` written by ``numnet.train`` (:mod:`numnet.models.weights`: plain tensors and containers,
read with ``weights_only=True``), generates a fresh test set with the given data seed and size (by
default the run's own), and prints the mean and the pooled PSNR, so a committed result can be
checked without retraining. Exit code 2 with a one-line message for a missing or corrupt file.

``python -m numnet.evaluate --record RUNS_DIR``: for every complete run below ``RUNS_DIR`` whose summary
predates the pooled PSNR, its test set rebuilt exactly (the summary's dataset record), the mean PSNR
checked against the stored one and both readings written to ``<run>/evaluation.json`` with provenance
(:func:`record_pooled`); the reports read it.

``python -m numnet.evaluate --record-rule RULE RUNS_DIR``: the same networks on the test set their summary
describes but generated under the other data rule (``task.short_last``, :mod:`numnet.data.signals`), written to
``<run>/evaluation-short_last-RULE.json`` (:func:`record_rule`): how much of a result is the data rule.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch

from numnet.data.signals import make_splits
from numnet.metrics import pooled_psnr, psnr
from numnet.models.weights import WEIGHTS_FORMAT, CheckpointError, load_weights
from numnet.summary import RunSummary, read_summaries

__all__ = ["load_model", "CheckpointError", "WEIGHTS_FORMAT", "evaluate", "psnr_readings", "record_pooled", "record_rule", "rule_file", "EVALUATION_FILE"]

#: a run's later evaluation (``record_pooled``), beside its ``summary.json``
EVALUATION_FILE = "evaluation.json"

#: the one weights format and loader (numnet.models.weights); ``load_model`` is its name here
load_model = load_weights


@torch.no_grad()
def psnr_readings(model: torch.nn.Module, noisy: torch.Tensor, clean: torch.Tensor, data_range: float = 255.0,
                  chunk: int = 1000) -> dict[str, float]:
    """The model's test PSNR on ``(noisy, clean)`` read both ways: the mean of the per-signal PSNRs
    (``test_psnr``, the tables' headline) and the pooled one over the whole set (``test_psnr_pooled``)."""
    out = torch.cat([model(x) for x in noisy.split(chunk)])
    return {"test_psnr": float(psnr(out, clean, data_range).mean()), "test_psnr_pooled": pooled_psnr(out, clean, data_range)}


@torch.no_grad()
def evaluate(model: torch.nn.Module, seed: int, n: int, length: int = 256, sigma: float = 10.0,
             short_last: str = "reject") -> dict:
    data = make_splits(1, 1, n, seed, length, sigma, short_last)["test"]
    return {**psnr_readings(model, data.noisy, data.clean), "noisy_psnr": float(psnr(data.noisy, data.clean).mean()),
            "n": n, "seed": seed, "short_last": short_last}


@functools.lru_cache(maxsize=4)
def _test_split(n_test: int, seed: int, length: int, sigma: float, short_last: str):
    """A run's test split, built once for all runs that share it (it depends only on these, ``make_splits``)."""
    return make_splits(1, 1, n_test, seed, length, sigma, short_last)["test"]


def _network_runs(runs_dir: str | Path, done) -> list[tuple[Path, RunSummary, dict]]:
    """``(run folder, summary, dataset record)`` of every complete network run below ``runs_dir`` with its weights,
    leaving out those for which ``done(run, summary)`` says the evaluation asked for is already there."""
    out = []
    for s in read_summaries(runs_dir):
        run = Path(runs_dir) / s.run
        if s.complete and s.model != "classical" and (run / "model.pt").exists() and not done(run, s):
            out.append((run, s, s.dataset))
    return out


@torch.no_grad()
def record_pooled(runs_dir: str | Path, tolerance_db: float = 1e-3) -> int:
    """``evaluation.json`` (mean and pooled test PSNR, provenance) for each complete network run below
    ``runs_dir`` whose summary does not record the pooled PSNR and that has none yet; the run's own test set
    is rebuilt from its summary and the mean PSNR must match the stored one within ``tolerance_db`` (else
    ``ValueError``: the test set or the weights are not the run's). Returns the number written."""
    from numnet.runs import provenance, write_json_atomic

    written = 0
    for run, s, ds in _network_runs(runs_dir, lambda run, s: "test_psnr_pooled" in s.metrics
                                    or (run / EVALUATION_FILE).exists()):
        m = s.metrics
        model, _ = load_model(run)
        test = _test_split(int(ds["n_test"]), int(ds["data_seed"]), int(ds["length"]), float(ds["sigma"]),
                           ds.get("short_last", "reject"))
        got = psnr_readings(model, test.noisy, test.clean)
        if abs(got["test_psnr"] - float(m["test_psnr"])) > tolerance_db:
            raise ValueError(f"{run}: mean test PSNR {got['test_psnr']:.4f} dB, stored {m['test_psnr']:.4f} dB: not "
                             "the run's test set or weights")
        write_json_atomic(run / EVALUATION_FILE, {**got, "noisy_test_psnr_pooled": pooled_psnr(test.noisy, test.clean),
                                                  "dataset": ds, "provenance": provenance()})
        written += 1
    return written


def rule_file(rule: str) -> str:
    """The file beside a run's summary that :func:`record_rule` writes for the data rule ``rule``."""
    return f"evaluation-short_last-{rule}.json"


@torch.no_grad()
def record_rule(runs_dir: str | Path, rule: str) -> int:
    """For each complete network run below ``runs_dir`` trained under the other data rule: its test PSNR (mean and
    pooled) on the test set of its summary's size, seed, length and noise generated under ``rule``
    (``task.short_last``), in ``<run>/evaluation-short_last-<rule>.json`` with provenance (written once). Returns
    the number written."""
    from numnet.data.signals import SHORT_LAST
    from numnet.runs import provenance, write_json_atomic

    if rule not in SHORT_LAST:
        raise ValueError(f"the data rule must be one of {list(SHORT_LAST)}, got {rule!r}")
    written = 0
    for run, _, ds in _network_runs(runs_dir, lambda run, s: s.dataset.get("short_last", "reject") == rule
                                    or (run / rule_file(rule)).exists()):
        model, _ = load_model(run)
        test = _test_split(int(ds["n_test"]), int(ds["data_seed"]), int(ds["length"]), float(ds["sigma"]), rule)
        write_json_atomic(run / rule_file(rule), {
            **psnr_readings(model, test.noisy, test.clean), "noisy_test_psnr": float(psnr(test.noisy, test.clean).mean()),
            "dataset": {**ds, "short_last": rule}, "provenance": provenance()})
        written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--record-rule"]:
        if len(argv) != 3 or not Path(argv[2]).is_dir():
            print("error: usage: python -m numnet.evaluate --record-rule reject|keep RUNS_DIR (an existing folder)",
                  file=sys.stderr)
            return 2
        try:
            n = record_rule(argv[2], argv[1])
        except (ValueError, CheckpointError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"[numnet] {n} {rule_file(argv[1])} written below {argv[2]}")
        return 0
    if argv[:1] == ["--record"]:
        if len(argv) != 2 or not Path(argv[1]).is_dir():
            print("error: usage: python -m numnet.evaluate --record RUNS_DIR (an existing folder)", file=sys.stderr)
            return 2
        try:
            n = record_pooled(argv[1])
        except (ValueError, CheckpointError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"[numnet] {n} evaluation.json written below {argv[1]}")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", help="run folder or model.pt")
    ap.add_argument("--seed", type=int, default=None, help="data seed of the test set (default: the run's)")
    ap.add_argument("--n", type=int, default=None, help="number of test signals (default: the run's)")
    ap.add_argument("--short-last", choices=("reject", "keep"), default=None,
                    help="data rule of the test set (task.short_last; default: the run's)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        model, rec = load_model(args.weights)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ds = rec.get("summary", {}).get("dataset", {})
    seed = args.seed if args.seed is not None else int(ds.get("data_seed", 0))
    n = args.n if args.n is not None else int(ds.get("n_test", 1000))
    if n < 1:
        print(f"error: --n must be >= 1, got {n}", file=sys.stderr)
        return 2
    rule = args.short_last or ds.get("short_last", "reject")
    res = evaluate(model, seed, n, int(ds.get("length", 256)), float(ds.get("sigma", 10.0)), rule)
    stored = rec.get("summary", {}).get("metrics", {}).get("test_psnr")
    res["stored_test_psnr"] = stored
    if args.json:
        print(json.dumps(res))
    else:
        extra = f" (stored: {stored:.2f} dB)" if stored is not None else ""
        print(f"{rec.get('summary', {}).get('name', rec['model'])}: test PSNR {res['test_psnr']:.2f} dB on "
              f"{n} signals, data seed {seed}, data rule {rule}{extra} (pooled over the set: {res['test_psnr_pooled']:.2f} dB); "
              f"noisy input {res['noisy_psnr']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
