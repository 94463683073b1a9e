"""Greyscale images for EED inpainting (Sec. 7.2.2), all offline.

ImageNet cannot be downloaded here, so the training data are every photograph and scan that ships inside the
installed packages, plus synthetic images, with fresh random crops every step:

* scikit-image's sample images (colour ones converted to grey; the ones it would fetch from the network are
  not used) and matplotlib's sample data (a photograph, two renderings, an MRI slice, an elevation model);
* synthetic images drawn on the fly: piecewise constant shapes (rectangles and ellipses of random grey values
  over a linear ramp: edges, EED's favourite case) and smooth textures (sums of random plane waves);
* two named training sets (:data:`TRAIN_SETS`, ``data.train_set``): ``mix``, every one of those images, and
  ``photos``, the natural photographs among them that no evaluation uses (``chelsea`` and the two views of
  ``stereo_motorcycle``). Measured (U-net, 6000 steps, cosine step size from 1e-2, validation residual on the
  held-out ``coins`` and ``clock``): 0.427 and 0.450 (two seeds) from ``photos`` against 0.535 from ``mix`` (0.5315
  without its synthetic share or with random contrast, 0.548 keeping the busier half of twice the crops);
  ``chelsea`` alone gave 0.472, ``rocket`` alone 0.562, and, as a check only, the test image itself 0.458
  (``results/fig9-probes``);
* each crop from a random image at a random scale (a window of 1 to 2 crop sides, area-averaged to the crop
  side), rotated by a random multiple of 90 degrees and mirrored at random (:class:`CropStream`).

Held out from training: the validation images ``coins`` and ``clock``; the test image ``astronaut`` (a
portrait, standing in for the paper's *trui*, which ships in no package) and three further test images
(:data:`FURTHER_TEST_IMAGES`), each the centre square area-averaged to 256 x 256 like *trui*. Grey values lie in
[0, 255]. Nothing is fetched at run time: every name here is a file inside an installed package.
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TRAIN_IMAGES", "PHOTO_TRAIN_IMAGES", "TRAIN_SETS", "LEGACY_TRAIN_IMAGES", "VAL_IMAGES", "TEST_IMAGE", "FURTHER_TEST_IMAGES", "load_grey", "test_image",
           "crop_bank", "random_masks", "CropStream", "synthetic_images"]

#: training images: scikit-image names, and ``matplotlib:<file>`` for matplotlib's sample data
TRAIN_IMAGES = ("brick", "cell", "chelsea", "checkerboard", "colorwheel", "grass", "gravel", "horse",
                "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina",
                "rocket", "shepp_logan_phantom", "text", "matplotlib:Minduka_Present_Blue_Pack.png",
                "matplotlib:logo2.png", "matplotlib:s1045.ima.gz", "matplotlib:jacksboro_fault_dem.npz")
#: natural photographs that no evaluation uses (the test and validation images are photographs too)
PHOTO_TRAIN_IMAGES = ("chelsea", "motorcycle_left", "motorcycle_right")
#: the named training sets (``data.train_set``): ``mix`` (every image, of every kind, that ships offline and is not
#: held out) and ``photos`` (:data:`PHOTO_TRAIN_IMAGES`)
TRAIN_SETS = {"mix": TRAIN_IMAGES, "photos": PHOTO_TRAIN_IMAGES}
#: the training images of the fixed crop bank that runs recorded before the crop stream used
LEGACY_TRAIN_IMAGES = ("camera", "moon", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "cell",
                       "hubble_deep_field", "immunohistochemistry", "page", "text")
VAL_IMAGES = ("coins", "clock")
#: the views of ``skimage.data.stereo_motorcycle``, loadable by these names
STEREO = ("motorcycle_left", "motorcycle_right")
TEST_IMAGE = "astronaut"
#: further held-out test images (beyond the paper's one)
FURTHER_TEST_IMAGES = ("camera", "coffee", "matplotlib:grace_hopper.jpg")


def _matplotlib_image(name: str) -> np.ndarray:
    """One of matplotlib's sample files as a 2-D array of any range (rescaled to [0, 255] by the caller)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / name
    if not path.is_file():
        raise ValueError(f"matplotlib ships no sample file {name!r}")
    if name.endswith(".npz"):
        return np.asarray(np.load(path)["elevation"], dtype=np.float64)
    if name.endswith(".ima.gz"):  # a 256 x 256 MRI slice, 16-bit big-endian
        with gzip.open(path) as fh:
            return np.frombuffer(fh.read(), dtype=">u2").reshape(256, 256).astype(np.float64)
    import matplotlib.image as mpimg

    img = np.asarray(mpimg.imread(path), dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.2125, 0.7154, 0.0721])  # as skimage's rgb2gray
    return img


def load_grey(name: str) -> torch.Tensor:
    """One image as a float32 ``(H, W)`` tensor in [0, 255]: a scikit-image sample image by name, or
    ``matplotlib:<file>`` from matplotlib's sample data (stretched to [0, 255])."""
    if name.startswith("matplotlib:"):
        img = _matplotlib_image(name.split(":", 1)[1])
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / max(hi - lo, 1e-12) * 255.0
        return torch.from_numpy(img.astype(np.float32))
    from skimage import data
    from skimage.color import rgb2gray

    if name in STEREO:  # the two views of scikit-image's stereo pair
        img = np.asarray(data.stereo_motorcycle()[STEREO.index(name)])
    elif not hasattr(data, name):
        raise ValueError(f"scikit-image ships no image {name!r}")
    else:
        img = np.asarray(getattr(data, name)())
    if img.ndim == 3:
        img = rgb2gray(img[..., :3]) * 255.0
    elif img.dtype == bool or (img.dtype.kind == "f" and img.max() <= 1.0):  # masks and [0, 1] floats
        img = img * 255.0
    return torch.from_numpy(np.asarray(img, dtype=np.float32))


def test_image(name: str = TEST_IMAGE, size: int = 256) -> torch.Tensor:
    """A held-out test image, ``(1, 1, size, size)``: its centre square, area-averaged to ``size``."""
    img = load_grey(name)
    s = min(img.shape)
    if s < size:
        raise ValueError(f"test image {name!r} is smaller than {size} pixels")
    top, left = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
    return F.adaptive_avg_pool2d(img[top: top + s, left: left + s][None, None], size)


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


def synthetic_images(count: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` synthetic ``size x size`` images ``(count, 1, size, size)`` in [0, 255]: half piecewise constant
    shapes over a linear ramp (2 to 8 rectangles and ellipses of random grey values), half smooth textures (a
    sum of 1 to 4 random plane waves of periods 4 to 64 pixels)."""
    r = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    out = torch.empty(count, 1, size, size)
    for k in range(count):
        if k % 2 == 0:  # shapes over a ramp
            angle = 2 * math.pi * float(r(1))
            img = 255 * float(r(1)) + (60 * float(r(1)) - 30) * ((x * math.cos(angle) + y * math.sin(angle)) / size)
            for _ in range(int(2 + 7 * float(r(1)))):
                cy, cx, hy, hx = (r(4) * torch.tensor([size, size, size / 2, size / 2])).tolist()
                inside = ((y - cy) / max(hy, 1.0)) ** 2 + ((x - cx) / max(hx, 1.0)) ** 2 <= 1 if float(r(1)) < 0.5 \
                    else ((y - cy).abs() <= hy) & ((x - cx).abs() <= hx)
                img = torch.where(inside, 255 * float(r(1)), img)
        else:  # smooth texture
            img = torch.full((size, size), 128.0)
            for _ in range(int(1 + 4 * float(r(1)))):
                period, angle, phase = 4 + 60 * float(r(1)), 2 * math.pi * float(r(1)), 2 * math.pi * float(r(1))
                img = img + 60 * float(r(1)) * torch.sin(
                    2 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / period + phase)
        out[k, 0] = img.clamp(0, 255)
    return out


class CropStream:
    """Training minibatches drawn afresh every step (no crop bank): ``batch_size`` crops of ``size x size``, each
    from a synthetic image with probability ``synthetic`` and else from a random one of ``names``, at a random
    scale (a window of ``size`` to ``max_scale * size`` pixels area-averaged to ``size``; windows larger than the
    image are shrunk to it), rotated by a random multiple of 90 degrees and mirrored at random. ``len`` is
    ``epoch`` minibatches (Lightning's epoch); the generator runs on across epochs, so a seed gives one sequence."""

    def __init__(self, names: tuple[str, ...], batch_size: int, size: int, seed: int, epoch: int,
                 synthetic: float = 0.25, max_scale: float = 2.0) -> None:
        if batch_size < 1 or epoch < 1 or size < 4:
            raise ValueError(f"batch_size and epoch must be >= 1 and size >= 4, got {batch_size}, {epoch}, {size}")
        if not 0 <= synthetic <= 1 or max_scale < 1:
            raise ValueError(f"synthetic must lie in [0, 1] and max_scale >= 1, got {synthetic} and {max_scale}")
        self.images = [load_grey(n) for n in names]
        small = [n for n, im in zip(names, self.images) if min(im.shape) < size]
        if small:
            raise ValueError(f"images {small} are smaller than the crop size {size}")
        self.batch_size, self.size, self.epoch = batch_size, size, epoch
        self.synthetic, self.max_scale = synthetic, max_scale
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.epoch

    def state_dict(self) -> dict:
        """The generator's state: a resumed run draws the same crops as an uninterrupted one."""
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])

    def _crop(self) -> torch.Tensor:
        g, size = self.gen, self.size
        if float(torch.rand(1, generator=g)) < self.synthetic:
            crop = synthetic_images(1, size, g)[0]
        else:
            im = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
            side = min(int(size * (1 + (self.max_scale - 1) * float(torch.rand(1, generator=g)))), *im.shape)
            top = int(torch.randint(im.shape[0] - side + 1, (1,), generator=g))
            left = int(torch.randint(im.shape[1] - side + 1, (1,), generator=g))
            crop = F.adaptive_avg_pool2d(im[None, top: top + side, left: left + side], size)
        crop = torch.rot90(crop, int(torch.randint(4, (1,), generator=g)), (-2, -1))
        return crop.flip(-1) if float(torch.rand(1, generator=g)) < 0.5 else crop

    def __iter__(self):
        for _ in range(self.epoch):
            yield torch.stack([self._crop() for _ in range(self.batch_size)])


def random_masks(shape: tuple[int, ...], density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary masks, each pixel known with probability ``density`` (Sec. 7.2.2), float32."""
    if not 0 < density <= 1:
        raise ValueError(f"mask density must lie in (0, 1], got {density}")
    return (torch.rand(shape, generator=generator) < density).float()
