"""Training augmentations on numpy arrays, every random draw from a caller's ``numpy.random.Generator``.

Geometric augmentation (scale jitter, crop, flip) is shared by the photo and its label maps, so the
teacher's (weak) view and the student's (strong) view stay pixel-aligned; the strong view adds
photometric changes only (colour jitter, greyscale, blur), as in FixMatch-style consistency training.
Photos are (H, W, 3) uint8 RGB; label maps (H, W) uint8 with 255 = ignore.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .. import IGNORE_INDEX

PHOTO_FILL = (124, 116, 104)
"""Padding colour for crops larger than the scaled photo: the ImageNet mean, i.e. zero after normalising."""


def _resize(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize an (H, W) or (H, W, 3) uint8 array to ``size`` = (H, W)."""
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))


def random_scale_crop_flip(image: np.ndarray, labels: list[np.ndarray], crop_size: int,
                           scale_range: tuple[float, float], rng: np.random.Generator,
                           ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Rescale by a factor drawn from ``scale_range``, take a random ``crop_size`` square, flip half the time.

    Returns the (C, C, 3) photo crop, the (C, C) label crops, and a (C, C) bool map that is False on
    padding (where the scaled photo is smaller than the crop; labels are 255 there).
    """
    scale = rng.uniform(*scale_range)
    height, width = image.shape[:2]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    image = _resize(image, size, Image.Resampling.BILINEAR)
    labels = [_resize(label, size, Image.Resampling.NEAREST) for label in labels]
    top = int(rng.integers(0, max(size[0] - crop_size, 0) + 1))
    left = int(rng.integers(0, max(size[1] - crop_size, 0) + 1))
    rows, cols = slice(top, top + crop_size), slice(left, left + crop_size)
    crop_h, crop_w = min(crop_size, size[0]), min(crop_size, size[1])
    photo = np.empty((crop_size, crop_size, 3), np.uint8)
    photo[:] = PHOTO_FILL
    photo[:crop_h, :crop_w] = image[rows, cols]
    label_crops = []
    for label in labels:
        crop = np.full((crop_size, crop_size), IGNORE_INDEX, np.uint8)
        crop[:crop_h, :crop_w] = label[rows, cols]
        label_crops.append(crop)
    valid = np.zeros((crop_size, crop_size), bool)
    valid[:crop_h, :crop_w] = True
    if rng.random() < 0.5:
        photo, valid = photo[:, ::-1], valid[:, ::-1]
        label_crops = [crop[:, ::-1] for crop in label_crops]
    return (np.ascontiguousarray(photo), [np.ascontiguousarray(c) for c in label_crops],
            np.ascontiguousarray(valid))


def strong_photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The student's view: colour jitter (p 0.8), greyscale (p 0.2), Gaussian blur (p 0.5), as UniMatch.

    Brightness, contrast and saturation factors are drawn from [0.5, 1.5], hue shifts from ±0.25
    turns, blur sigma from [0.1, 2.0] pixels. Geometry is unchanged.
    """
    picture = Image.fromarray(image)
    if rng.random() < 0.8:
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            picture = enhance(picture).enhance(rng.uniform(0.5, 1.5))
        hsv = np.array(picture.convert("HSV"))
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.uniform(-0.25, 0.25) * 255)) % 256
        picture = Image.fromarray(hsv, mode="HSV").convert("RGB")
    if rng.random() < 0.2:
        picture = picture.convert("L").convert("RGB")
    if rng.random() < 0.5:
        picture = picture.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
    return np.asarray(picture)
