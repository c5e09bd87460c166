"""Training augmentations: parameters drawn per sample on the CPU, applied to whole batches as tensors.

``draw_augmentation`` draws one sample's parameters from a caller's ``numpy.random.Generator`` (the
data loader seeds it by (seed, sample), so a run's augmentation depends only on its seed).
``augment_batch`` applies them to a batch of uint8 photos and label maps on the training device (the
GPU, where per-sample augmentation in loader processes could not keep up), in one vectorised pass.

Geometric augmentation (scale jitter, crop, flip) is shared by the photo and its label maps, so the
teacher's (weak) view and the student's (strong) view stay pixel-aligned; the strong view adds
photometric changes only (colour jitter, greyscale, blur), as in FixMatch-style consistency training.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)
"""PIL's RGB -> L weights, for greyscale and contrast."""
MAX_BLUR_SIGMA = 2.0
PARAMETERS = ("scaled_height", "scaled_width", "top", "left", "flip", "jitter", "brightness", "contrast",
              "saturation", "hue", "grey", "blur_sigma")
"""The columns of a sample's parameter vector (float64)."""


def draw_augmentation(rng: np.random.Generator, size: tuple[int, int], crop_size: int,
                      scale_range: tuple[float, float]) -> np.ndarray:
    """One sample's augmentation for a photo of ``size`` = (H, W): a (len(PARAMETERS),) float64 vector.

    Geometry: the photo is rescaled by a factor from ``scale_range`` (to ``scaled_height`` x
    ``scaled_width``), a ``crop_size`` square is cut at (``top``, ``left``) of the rescaled photo
    (padding where it is smaller), and mirrored left-right when ``flip`` is 1. The student's view:
    with ``jitter`` (p 0.8) brightness, contrast and saturation × [0.5, 1.5] and a hue rotation of
    ±0.25 turns; greyscale (p 0.2); Gaussian blur of ``blur_sigma`` in [0.1, 2.0] pixels (p 0.5,
    else 0), as UniMatch. Every draw is made whatever its outcome, so the generator's use is fixed.
    """
    scale = rng.uniform(*scale_range)
    scaled = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    top = int(rng.integers(0, max(scaled[0] - crop_size, 0) + 1))
    left = int(rng.integers(0, max(scaled[1] - crop_size, 0) + 1))
    flip, jitter = rng.random() < 0.5, rng.random() < 0.8
    brightness, contrast, saturation = rng.uniform(0.5, 1.5, size=3)
    hue = rng.uniform(-0.25, 0.25)
    grey, blur = rng.random() < 0.2, rng.random() < 0.5
    sigma = rng.uniform(0.1, MAX_BLUR_SIGMA)
    return np.array([scaled[0], scaled[1], top, left, flip, jitter, brightness, contrast, saturation, hue,
                     grey, sigma if blur else 0.0], np.float64)


def _columns(params: torch.Tensor) -> dict[str, torch.Tensor]:
    return dict(zip(PARAMETERS, params.to(torch.float32).unbind(1)))


def _source_coordinates(start: torch.Tensor, scaled: torch.Tensor, original: torch.Tensor, padded: int,
                        crop_size: int, mirror: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample and output pixel along one axis: the grid_sample coordinate and whether it is inside.

    Output pixel k of the crop is pixel ``start + k`` of the rescaled photo (``start + crop - 1 - k``
    where ``mirror``), whose centre lies at ``(p + 0.5) * original / scaled - 0.5`` in the photo,
    clamped to it (edge pixels repeat instead of blending with the batch's padding). Returns (N, C)
    coordinates normalised for ``align_corners=False`` over ``padded`` pixels, and (N, C) bool.
    """
    k = torch.arange(crop_size, device=start.device, dtype=torch.float32)
    if mirror is not None:
        k = torch.where(mirror[:, None] > 0, crop_size - 1 - k, k)
    position = start[:, None] + k
    source = ((position + 0.5) * (original / scaled)[:, None] - 0.5).clamp(min=0)
    source = torch.minimum(source, (original - 1)[:, None])
    return (2 * source + 1) / padded - 1, position < scaled[:, None]


def _grey(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] to (N, 1, H, W) luminance."""
    weights = torch.tensor(LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _hue_rotation(turns: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) matrices rotating RGB colours by ``turns`` × 360° about the grey axis (a hue shift)."""
    angle = 2 * math.pi * turns
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    axis = torch.full((3,), 1 / math.sqrt(3), device=turns.device)
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], device=turns.device) / math.sqrt(3)
    eye = torch.eye(3, device=turns.device)
    return cos * eye + sin * cross + (1 - cos) * torch.outer(axis, axis)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of (N, 3, H, W) with its own sigma (N,) in pixels (0: unchanged), separably."""
    radius = math.ceil(3 * MAX_BLUR_SIGMA)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    safe = sigma.clamp(min=1e-3)[:, None]
    kernels = torch.exp(-offsets ** 2 / (2 * safe ** 2))
    kernels = torch.where(sigma[:, None] > 0, kernels, (offsets == 0).float())
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat_interleave(3, 0)
    count, channels, height, width = images.shape
    flat = F.pad(images.reshape(1, count * channels, height, width), (radius,) * 4, mode="reflect")
    flat = F.conv2d(flat, kernels[:, None, None, :], groups=count * channels)
    flat = F.conv2d(flat, kernels[:, None, :, None], groups=count * channels)
    return flat.reshape(count, channels, height, width)


def strong_photometric(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """The student's view of (N, 3, H, W) float RGB in [0, 1]: jitter, greyscale and blur per ``params``."""
    p = _columns(params)
    jittered = (images * p["brightness"].view(-1, 1, 1, 1)).clamp(0, 1)
    mean = _grey(jittered).mean((1, 2, 3), keepdim=True)
    jittered = ((jittered - mean) * p["contrast"].view(-1, 1, 1, 1) + mean).clamp(0, 1)
    grey = _grey(jittered)
    jittered = ((jittered - grey) * p["saturation"].view(-1, 1, 1, 1) + grey).clamp(0, 1)
    jittered = torch.einsum("nij,njhw->nihw", _hue_rotation(p["hue"]), jittered).clamp(0, 1)
    images = torch.where(p["jitter"].view(-1, 1, 1, 1) > 0, jittered, images)
    images = torch.where(p["grey"].view(-1, 1, 1, 1) > 0, _grey(images).expand_as(images), images)
    return _gaussian_blur(images, p["blur_sigma"])


def normalise(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] to the network's input: minus the ImageNet mean, over its std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def augment_batch(photos: torch.Tensor, labels: torch.Tensor, sizes: torch.Tensor, params: torch.Tensor,
                  crop_size: int) -> dict[str, torch.Tensor]:
    """Apply each sample's drawn augmentation to a batch, on the batch's device.

    photos (N, Hp, Wp, 3) uint8 and labels (N, L, Hp, Wp) uint8 (255 = ignore), each sample in the
    top-left (H_i, W_i) = ``sizes[i]`` of the padded batch; params (N, len(PARAMETERS)) from
    ``draw_augmentation``. Returns ``teacher`` and ``student`` (N, 3, C, C) float32 normalised views
    (padding at the mean, i.e. 0), ``labels`` (N, L, C, C) int64 (255 on padding) and ``valid``
    (N, C, C) bool (False on padding).
    """
    p = _columns(params)
    sizes = sizes.to(torch.float32)
    padded_height, padded_width = photos.shape[1:3]
    grid_y, inside_y = _source_coordinates(p["top"], p["scaled_height"], sizes[:, 0], padded_height, crop_size)
    grid_x, inside_x = _source_coordinates(p["left"], p["scaled_width"], sizes[:, 1], padded_width, crop_size,
                                           mirror=p["flip"])
    count = photos.shape[0]
    grid = torch.stack([grid_x[:, None, :].expand(count, crop_size, crop_size),
                        grid_y[:, :, None].expand(count, crop_size, crop_size)], dim=-1)
    valid = inside_y[:, :, None] & inside_x[:, None, :]
    images = F.grid_sample(photos.permute(0, 3, 1, 2).float() / 255, grid, mode="bilinear", align_corners=False)
    fill = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    images = torch.where(valid[:, None], images, fill)
    crops = F.grid_sample(labels.float(), grid, mode="nearest", align_corners=False).round().long()
    crops = torch.where(valid[:, None], crops, torch.full_like(crops, IGNORE_INDEX))
    student = normalise(strong_photometric(images, params)) * valid[:, None]
    return {"teacher": normalise(images), "student": student, "labels": crops, "valid": valid}
