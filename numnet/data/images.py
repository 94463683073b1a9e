"""Natural greyscale images for EED inpainting (Sec. 7.2.2), from scikit-image's wheel: offline.

ImageNet cannot be downloaded here, so training crops come from the photographs that ship inside
scikit-image (colour ones converted to grey), validation crops from two further ones, and the
held-out test image is ``astronaut`` (a portrait, standing in for the paper's *trui*, which ships
in no package), area-downsampled to 256 x 256 like *trui*. Grey values in [0, 255]. Nothing is
fetched at run time: every name here is a file inside the installed package.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["TRAIN_IMAGES", "VAL_IMAGES", "TEST_IMAGE", "load_grey", "test_image", "crop_bank", "random_masks",
           "CropBatches"]

TRAIN_IMAGES = ("camera", "moon", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "cell",
                "hubble_deep_field", "immunohistochemistry", "page", "text")
VAL_IMAGES = ("coins", "clock")
TEST_IMAGE = "astronaut"


def load_grey(name: str) -> torch.Tensor:
    """One scikit-image sample image as a float32 ``(H, W)`` tensor in [0, 255]."""
    from skimage import data
    from skimage.color import rgb2gray

    if not hasattr(data, name):
        raise ValueError(f"scikit-image ships no image {name!r}")
    img = np.asarray(getattr(data, name)())
    if img.ndim == 3:
        img = rgb2gray(img[..., :3]) * 255.0
    return torch.from_numpy(img.astype(np.float32))


def test_image(size: int = 256) -> torch.Tensor:
    """The held-out test image, ``(1, 1, size, size)``: centre square, area-averaged to ``size``."""
    img = load_grey(TEST_IMAGE)
    s = min(img.shape)
    top, left = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
    img = img[top : top + s, left : left + s][None, None]
    if s % size:
        raise ValueError(f"test image side {s} is not a multiple of {size}")
    return torch.nn.functional.avg_pool2d(img, s // size)


def crop_bank(names: tuple[str, ...], count: int, size: int, seed: int) -> torch.Tensor:
    """``count`` random ``size x size`` crops, ``(count, 1, size, size)``, with random flips and
    transpositions, drawn evenly from the images ``names`` (seeded: the same call gives the same crops)."""
    if count < 1 or size < 4:
        raise ValueError(f"crop count must be >= 1 and size >= 4, got {count} and {size}")
    gen = np.random.default_rng(seed)
    images = [load_grey(n) for n in names]
    small = [n for n, im in zip(names, images) if min(im.shape) < size]
    if small:
        raise ValueError(f"images {small} are smaller than the crop size {size}")
    which = gen.integers(0, len(images), count)
    out = torch.empty(count, 1, size, size)
    for k, im in enumerate(images):  # one vectorised gather per image, not per crop
        idx = np.flatnonzero(which == k)
        if idx.size == 0:
            continue
        top = torch.from_numpy(gen.integers(0, im.shape[0] - size + 1, idx.size))
        left = torch.from_numpy(gen.integers(0, im.shape[1] - size + 1, idx.size))
        r = torch.arange(size)
        rows = (top[:, None] + r)[:, :, None]
        cols = (left[:, None] + r)[:, None, :]
        out[torch.from_numpy(idx), 0] = im[rows, cols]
    flips = torch.from_numpy(gen.integers(0, 2, (count, 3)).astype(bool))
    out[flips[:, 0]] = out[flips[:, 0]].flip(-1)
    out[flips[:, 1]] = out[flips[:, 1]].flip(-2)
    out[flips[:, 2]] = out[flips[:, 2]].transpose(-1, -2)
    return out


def random_masks(shape: tuple[int, ...], density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary masks, each pixel known with probability ``density`` (Sec. 7.2.2), float32."""
    if not 0 < density <= 1:
        raise ValueError(f"mask density must lie in (0, 1], got {density}")
    return (torch.rand(shape, generator=generator) < density).float()


class CropBatches:
    """Shuffled minibatches of an in-memory crop bank (no Dataset, no DataLoader, no workers)."""

    def __init__(self, bank: torch.Tensor, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.bank = bank
        self.batch_size = min(batch_size, len(bank))
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.bank) // self.batch_size

    def __iter__(self):
        perm = torch.randperm(len(self.bank), generator=self.gen)
        for k in range(len(self)):
            yield self.bank[perm[k * self.batch_size : (k + 1) * self.batch_size]]
