"""Model registry: one entry per architecture; ``build_model`` raises with the list of choices."""
from __future__ import annotations

from numnet.models.denoisers import Denoiser1D, DuFortFrankelNet, FSINet, ResNet, SymResNet
from numnet.models.implicit import ImplicitNet

__all__ = ["MODELS", "build_model", "recorded_kwargs"]

MODELS: dict[str, type[Denoiser1D]] = {
    cls.name: cls for cls in (ResNet, SymResNet, DuFortFrankelNet, FSINet, ImplicitNet)
}


def recorded_kwargs(name: str | None, kwargs: dict) -> dict:
    """A recorded model configuration (a run's ``config.model``, a weights file's ``kwargs``) as it was
    trained: records made before ``model.normalisation`` existed trained with the provable rule."""
    kwargs = dict(kwargs)
    if getattr(MODELS.get(name), "normalises", False):
        kwargs.setdefault("normalisation", "provable")
    return kwargs


def build_model(name: str, **kwargs) -> Denoiser1D:
    """Build a denoiser by name."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)
