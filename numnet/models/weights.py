"""One weights format and one loader for every model of the project (denoisers and inpainting networks).

``model.pt`` holds plain tensors and containers, ``{"format": "numnet-weights-v1", "model": <name>, "kwargs":
<constructor arguments>, "state_dict": ..., "summary": <a few fields of the run's summary>}``, and is read with
``weights_only=True`` (no code runs on loading). The model name selects the registry: a denoiser
(:data:`numnet.models.registry.MODELS`) or an inpainting network (:data:`numnet.models.inpainting.INPAINT_MODELS`).
Files that the Fig. 9 networks were saved in before the formats were one (``numnet-inpainter-v1``, the same
fields) load as well.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["WEIGHTS_FORMAT", "CheckpointError", "save_weights", "load_weights"]

WEIGHTS_FORMAT = "numnet-weights-v1"
#: earlier formats with the same fields (the Fig. 9 networks' own format)
_LEGACY_FORMATS = ("numnet-inpainter-v1",)


class CheckpointError(ValueError):
    """A weights file that is missing, unreadable or not numnet's."""


def save_weights(path: str | Path, model: str, kwargs: dict[str, Any], state_dict: dict, summary: dict) -> None:
    """``model.pt`` in the project's one format, written atomically."""
    from numnet.runs import atomic_torch_save

    atomic_torch_save({"format": WEIGHTS_FORMAT, "model": model, "kwargs": kwargs, "state_dict": state_dict,
                       "summary": summary}, path)


def _build(name: str, kwargs: dict) -> torch.nn.Module:
    from numnet.models.inpainting import INPAINT_MODELS, build_inpainter
    from numnet.models.registry import MODELS, build_model, recorded_kwargs

    if name in MODELS:
        return build_model(name, **recorded_kwargs(name, kwargs))
    if name in INPAINT_MODELS:
        return build_inpainter(name, **{k: tuple(v) if k == "widths" else v for k, v in kwargs.items()})
    raise ValueError(f"unknown model {name!r}")


def load_weights(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """The model stored at ``path`` (a run folder or its ``model.pt``), in eval mode, and the stored record;
    :class:`CheckpointError` with one line for a missing, corrupt or foreign file."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise CheckpointError(f"no weights at {str(path)!r} (expected a run folder with model.pt): train the model first")
    try:
        rec = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for broken files
        raise CheckpointError(f"weights file {str(path)!r} is corrupt or unreadable: {type(exc).__name__}") from None
    if not isinstance(rec, dict) or rec.get("format") not in (WEIGHTS_FORMAT, *_LEGACY_FORMATS):
        raise CheckpointError(f"{str(path)!r} is not a numnet weights file (format {WEIGHTS_FORMAT})")
    try:
        model = _build(rec["model"], rec["kwargs"])
        model.load_state_dict(rec["state_dict"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"weights in {str(path)!r} do not fit the model: {exc}") from None
    return model.eval(), rec
