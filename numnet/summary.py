"""A run's ``summary.json`` as one type, :class:`RunSummary`, for complete and failed runs alike.

Every run (a denoiser, a classical filter, an inpainting network) writes one ``summary.json``; every
table and figure is built from them. Readers take :meth:`RunSummary.read` and use its fields, never the
raw record: the fields are the same for a complete and a failed run (a failed run has no metrics), and
the fallbacks for records written by earlier versions of the project live here alone:

* failed runs recorded before they carried the identifying fields: those fields from their config;
* runs recorded before ``model.normalisation`` existed: the provable rule they trained with
  (:func:`numnet.models.recorded_kwargs`); models without normalisation (ResNet) and the classical
  filters: ``None``;
* the wall time: all sittings of a resumed run (``wall_s_total``) where recorded, else the last sitting's,
  flagged by :attr:`RunSummary.wall_partial`;
* the pooled test PSNR: the summary's, else a later evaluation's beside it (``evaluation.json``,
  ``numnet.evaluate --record``);
* a classical filter: its explicit steps as ``steps``, no depth, seed or weight sharing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunSummary", "read_summaries", "normalisation_of"]


def normalisation_of(summary: dict) -> str | None:
    """The kernel normalisation rule of a recorded run (Sec. 3.3): ``paper``, ``provable`` or ``tight``; records
    made before the option existed trained with the provable rule; ``None`` for models that do not normalise
    (ResNet) and for the classical filters."""
    from numnet.models import recorded_kwargs

    model_cfg = (summary.get("config") or {}).get("model") or {}
    name = summary.get("model", model_cfg.get("name"))
    return summary.get("normalisation") or recorded_kwargs(name, model_cfg).get("normalisation")


def _from_config(s: dict, key: str, *paths: str) -> Any:
    """Field ``key`` of a record, else the first of the config ``paths`` (dotted) that it holds."""
    if s.get(key) is not None:
        return s[key]
    for dotted in paths:
        node: Any = s.get("config") or {}
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


@dataclass(frozen=True)
class RunSummary:
    """One recorded run; ``record`` is the stored JSON for fields only some runs have (``classical``,
    ``stability``, ``train_images``)."""

    run: str
    status: str
    name: str | None = None
    artefact: str | None = None
    profile: str | None = None
    model: str | None = None
    activation: str | None = None
    depth: int | None = None
    channels: int | None = None
    shared: bool | None = None
    normalisation: str | None = None
    seed: int | None = None
    params: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    steps: int | None = None
    best_step: int | None = None  # inpainting runs (steps); a denoiser's best epoch is ``metrics["best_epoch"]``
    wall_s: float | None = None
    wall_partial: bool = False
    reason: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def commit(self) -> str:
        """The git commit the run was recorded at (``""`` where unknown)."""
        return str(self.provenance.get("git_commit") or "")

    @classmethod
    def from_dict(cls, s: dict, run: str = "", evaluation: dict | None = None) -> "RunSummary":
        """A stored record as a :class:`RunSummary` (module docstring: the fallbacks for older records)."""
        metrics = dict(s.get("metrics") or {})
        if "test_psnr_pooled" not in metrics and evaluation and "test_psnr_pooled" in evaluation:
            metrics["test_psnr_pooled"] = evaluation["test_psnr_pooled"]
        model = _from_config(s, "model", "model.name", "inpaint_model.name")
        depth, seed, shared, steps = (_from_config(s, "depth", "model.depth"), _from_config(s, "seed", "seed"),
                                      _from_config(s, "shared", "model.shared"), s.get("steps"))
        if model == "classical":  # a filter, not a network: its explicit steps
            steps, depth, seed, shared = (s.get("classical") or {}).get("steps", depth), None, None, None
        total = s.get("wall_s_total")
        return cls(
            run=run, status=str(s.get("status", "unknown")), name=s.get("name"), artefact=s.get("artefact"),
            profile=_from_config(s, "profile", "profile.name", "inpaint_profile.name"), model=model,
            activation=_from_config(s, "activation", "activation.name"), depth=depth,
            channels=_from_config(s, "channels", "model.channels"), shared=shared,
            normalisation=None if model == "classical" else normalisation_of(s), seed=seed, params=s.get("params"),
            metrics=metrics, epochs=s.get("epochs"), steps=steps,
            best_step=s.get("best_step"),
            wall_s=total if total is not None else s.get("wall_s"),
            wall_partial=bool(s.get("resumed")) and total is None, reason=str(s.get("reason") or ""),
            dataset=dict(s.get("dataset") or {}), history=list(s.get("history") or []), config=dict(s.get("config") or {}),
            provenance=dict(s.get("provenance") or {}), record=s)

    @classmethod
    def read(cls, path: str | Path, root: str | Path | None = None) -> "RunSummary":
        """The summary at ``path`` (``run``: its folder relative to ``root``); a later ``evaluation.json`` beside it
        supplies the pooled PSNR. Raises ``OSError`` / ``ValueError`` when it cannot be read."""
        path = Path(path)
        evaluation = path.parent / "evaluation.json"
        run = str(path.parent.relative_to(root)) if root is not None else path.parent.name
        return cls.from_dict(json.loads(path.read_text()), run,
                             json.loads(evaluation.read_text()) if evaluation.exists() else None)


def read_summaries(folder: str | Path, pattern: str = "*/summary.json") -> list[RunSummary]:
    """Every run below ``folder`` matching ``pattern``, sorted by path; one that cannot be read is a
    :class:`RunSummary` of status ``unreadable`` with the reason."""
    root = Path(folder)
    out = []
    for path in sorted(root.glob(pattern)):
        try:
            out.append(RunSummary.read(path, root))
        except (OSError, ValueError) as exc:
            out.append(RunSummary(run=str(path.parent.relative_to(root)), status="unreadable", reason=str(exc)))
    return out
