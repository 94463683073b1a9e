"""Re-evaluate stored weights: ``python -m numnet.evaluate RUN_DIR_OR_MODEL_PT [--seed S --n N]``.

Loads ``model.pt`` written by ``numnet.train`` (plain tensors and containers, read with
``weights_only=True``), generates a fresh test set with the given data seed and size (by
default the run's own), and prints the mean PSNR, so a committed result can be checked
without retraining. Exit code 2 with a one-line message for a missing or corrupt file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from numnet.data.signals import make_splits
from numnet.metrics import psnr
from numnet.models import build_model, recorded_kwargs

__all__ = ["load_model", "evaluate"]

WEIGHTS_FORMAT = "numnet-weights-v1"


class CheckpointError(ValueError):
    """A weights file that is missing, unreadable or not numnet's."""


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """The model stored at ``path`` (a run folder or its ``model.pt``) and the stored record."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise CheckpointError(f"no weights at {str(path)!r} (expected a run folder with model.pt)")
    try:
        rec = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for broken files
        raise CheckpointError(f"weights file {str(path)!r} is corrupt or unreadable: {type(exc).__name__}") from None
    if not isinstance(rec, dict) or rec.get("format") != WEIGHTS_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a numnet weights file (format {WEIGHTS_FORMAT})")
    try:
        model = build_model(rec["model"], **recorded_kwargs(rec["model"], rec["kwargs"]))
        model.load_state_dict(rec["state_dict"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"weights in {str(path)!r} do not fit the model: {exc}") from None
    return model.eval(), rec


@torch.no_grad()
def evaluate(model: torch.nn.Module, seed: int, n: int, length: int = 256, sigma: float = 10.0) -> dict:
    data = make_splits(1, 1, n, seed, length, sigma)["test"]
    out = model(data.noisy)
    return {
        "test_psnr": float(psnr(out, data.clean).mean()),
        "noisy_psnr": float(psnr(data.noisy, data.clean).mean()),
        "n": n,
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", help="run folder or model.pt")
    ap.add_argument("--seed", type=int, default=None, help="data seed of the test set (default: the run's)")
    ap.add_argument("--n", type=int, default=None, help="number of test signals (default: the run's)")
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
    res = evaluate(model, seed, n, int(ds.get("length", 256)), float(ds.get("sigma", 10.0)))
    stored = rec.get("summary", {}).get("metrics", {}).get("test_psnr")
    res["stored_test_psnr"] = stored
    if args.json:
        print(json.dumps(res))
    else:
        extra = f" (stored: {stored:.2f} dB)" if stored is not None else ""
        print(f"{rec.get('summary', {}).get('name', rec['model'])}: test PSNR {res['test_psnr']:.2f} dB on "
              f"{n} signals, data seed {seed}{extra}; noisy input {res['noisy_psnr']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
