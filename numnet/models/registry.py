"""Model registry: every denoiser class of :mod:`numnet.models` that names itself (a class attribute ``name``,
the ``model.name`` of its yaml), found by importing the package's modules; ``build_model`` raises with the list
of choices. A new architecture is its class (in any module of the package) and its ``configs/model/*.yaml``."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import numnet.models as _package
from numnet.models.denoisers import Denoiser1D

__all__ = ["MODELS", "build_model", "recorded_kwargs"]


def _discover() -> dict[str, type[Denoiser1D]]:
    found: dict[str, type[Denoiser1D]] = {}
    for info in sorted(pkgutil.iter_modules(_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{_package.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            named = "name" in vars(cls) and cls is not Denoiser1D  # the base's "denoiser" is no model
            if named and issubclass(cls, Denoiser1D) and cls.__module__ == module.__name__:
                if cls.name in found and found[cls.name] is not cls:
                    raise RuntimeError(f"two denoisers are named {cls.name!r}: {found[cls.name]} and {cls}")
                found[cls.name] = cls
    return found


MODELS: dict[str, type[Denoiser1D]] = _discover()


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
