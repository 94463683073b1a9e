"""Whole architectures as plain ``torch.nn.Module``s (no Lightning, no Hydra)."""
from numnet.models.denoisers import Denoiser1D, DuFortFrankelNet, FSINet, ResNet, SymResNet
from numnet.models.implicit import ImplicitNet
from numnet.models.registry import MODELS, build_model, recorded_kwargs

__all__ = ["MODELS", "Denoiser1D", "DuFortFrankelNet", "FSINet", "ImplicitNet", "ResNet", "SymResNet", "build_model",
           "recorded_kwargs"]
