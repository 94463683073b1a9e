"""Whole architectures as plain ``torch.nn.Module``s (no Lightning, no Hydra)."""
from numnet.models.denoisers import (
    MODELS,
    Denoiser1D,
    DuFortFrankelNet,
    FSINet,
    ResNet,
    SymResNet,
    build_model,
)

__all__ = ["MODELS", "Denoiser1D", "DuFortFrankelNet", "FSINet", "ResNet", "SymResNet", "build_model"]
