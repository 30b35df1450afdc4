"""Training augmentations as batched tensor ops: the AOL paper's (appendix A.5,
``Augmentation``) and 1LLC's random crop and flip (``CropFlip``).

Order as in the released code: colour (hue, saturation, brightness, contrast),
clip to [0, 1], then spatial (rotation +-5 deg, translation +-10 %, horizontal
flip p = 0.5) with one ``affine_grid`` / ``grid_sample`` call (bilinear,
reflecting borders: the Keras defaults of berndprach/AOL@562bddf). All random numbers come
from one ``torch.Generator`` on the data's device, so a run is reproducible and
resumable. No per-image Python work.

Colour ops differ from TensorFlow's HSV implementation in two documented ways:
hue is shifted by rotating the chroma plane in YIQ space (angle 2 pi delta), and
saturation is a blend with the grey image (``grey + f (x - grey)``, torchvision's
definition). Both keep the paper's parameter ranges.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# paper appendix A.5; berndprach/AOL@562bddf data/preprocessing_functions/
HUE_DELTA = 0.02
SATURATION_RANGE = (0.3, 2.0)
BRIGHTNESS_DELTA = 0.1
CONTRAST_RANGE = (0.5, 2.0)
ROTATION_DEGREES = 5.0
TRANSLATION_FRACTION = 0.1

_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.595716, -0.274453, -0.321263),
    (0.211456, -0.522591, 0.311135),
)
_GREY_WEIGHTS = (0.299, 0.587, 0.114)


@functools.cache
def _colour_constants(
    device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGB->YIQ, its inverse and the grey weights, made once per device and dtype.

    Building them per batch would copy from pageable host memory (and invert on the
    device), which makes the host wait for the GPU at every step.
    """
    to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    from_yiq = torch.linalg.inv(to_yiq)
    grey = torch.tensor(_GREY_WEIGHTS, dtype=torch.float64)
    return tuple(tensor.to(device=device, dtype=dtype) for tensor in (to_yiq, from_yiq, grey))


@dataclass(frozen=True)
class Augmentation:
    """Which parts of the paper's augmentation apply.

    Colour needs RGB; the flip must keep the class (not for digits).
    """

    colour: bool = True
    spatial: bool = True
    horizontal_flip: bool = True

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.colour:
            images = colour_jitter(images, generator)
        if self.spatial:
            images = random_affine(images, generator, self.horizontal_flip)
        return images


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator) -> torch.Tensor:
    values = torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)
    return low + (high - low) * values


def colour_jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random hue, saturation, brightness and contrast of RGB images ``[N, 3, H, W]``, clipped."""
    n = images.shape[0]
    if images.shape[1] != 3:
        raise ValueError(f"colour augmentation needs RGB images, got {images.shape[1]} channels")
    hue = _uniform(n, -HUE_DELTA, HUE_DELTA, images, generator)
    saturation = _uniform(n, *SATURATION_RANGE, images, generator)
    brightness = _uniform(n, -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA, images, generator)
    contrast = _uniform(n, *CONTRAST_RANGE, images, generator)

    to_yiq, from_yiq, weights = _colour_constants(images.device, images.dtype)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, images)
    angle = 2 * math.pi * hue
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack((yiq[:, 0], cos * i - sin * q, sin * i + cos * q), dim=1)
    images = torch.einsum("ij,njhw->nihw", from_yiq, yiq)

    grey = torch.einsum("c,nchw->nhw", weights, images)[:, None]
    images = grey + saturation[:, None, None, None] * (images - grey)
    images = images + brightness[:, None, None, None]
    mean = images.mean(dim=(2, 3), keepdim=True)  # tf.image.adjust_contrast: per channel
    images = mean + contrast[:, None, None, None] * (images - mean)
    return images.clamp(0.0, 1.0)


def random_affine(
    images: torch.Tensor, generator: torch.Generator, horizontal_flip: bool = True
) -> torch.Tensor:
    """Rotate by U(-5, 5) degrees, translate by U(-10 %, 10 %) per axis, flip with p = 0.5."""
    n = images.shape[0]
    angle = _uniform(n, -ROTATION_DEGREES, ROTATION_DEGREES, images, generator) * (math.pi / 180)
    # affine_grid works in [-1, 1] coordinates: a shift of 10 % of the side is 0.2
    shift_x = _uniform(n, -TRANSLATION_FRACTION, TRANSLATION_FRACTION, images, generator) * 2
    shift_y = _uniform(n, -TRANSLATION_FRACTION, TRANSLATION_FRACTION, images, generator) * 2
    flip = torch.ones(n, dtype=images.dtype, device=images.device)
    if horizontal_flip:
        coin = torch.rand(n, generator=generator, device=images.device, dtype=images.dtype)
        flip = torch.where(coin < 0.5, -flip, flip)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        (
            torch.stack((cos * flip, -sin, shift_x), dim=1),
            torch.stack((sin * flip, cos, shift_y), dim=1),
        ),
        dim=1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


#: 1LLC's RandomCrop(32, padding=4) (berndprach/1LipschitzLayersCompared@01e3f2a
#: datasets/datasets_.py)
CROP_PADDING = 4


@dataclass(frozen=True)
class CropFlip:
    """Random crop of the original size from the image padded by ``padding`` pixels, then a
    horizontal flip with p = 0.5 (when it keeps the class). 1LLC pads *centred* images with
    zeros, so here, on uncentred images, the padding is the mean colour ``fill``."""

    fill: tuple[float, ...]
    padding: int = CROP_PADDING
    horizontal_flip: bool = True

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, channels, height, width = images.shape
        pad = self.padding
        fill = torch.tensor(self.fill, dtype=images.dtype, device=images.device)
        padded = F.pad(images - fill[:, None, None], (pad, pad, pad, pad)) + fill[:, None, None]
        offsets = torch.randint(
            0, 2 * pad + 1, (2, n), generator=generator, device=images.device
        )  # torchvision draws top and left uniformly in [0, 2 padding]
        rows = offsets[0][:, None] + torch.arange(height, device=images.device)  # [n, h]
        cols = offsets[1][:, None] + torch.arange(width, device=images.device)  # [n, w]
        if self.horizontal_flip:
            coin = torch.rand(n, generator=generator, device=images.device) < 0.5
            cols = torch.where(coin[:, None], cols.flip(1), cols)
        batch = torch.arange(n, device=images.device)[:, None, None]
        cropped = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
        return cropped.permute(0, 3, 1, 2).contiguous()
