"""Image-level labels ("tags"): which classes an image contains, the weakest label sesam reads.

Tags are sorted int64 arrays of class indices, never the background class of a preset with one;
their files and record values are read and written by :mod:`stages.io.tags`. This module holds what
a classifier makes of them: its outputs (:func:`tag_classes`), targets (:func:`multi_hot`), and the
tags a ground truth implies (:func:`tags_from_label`).
"""

from __future__ import annotations

import numpy as np

from .io.tags import parse_tags
from .presets import ClassPreset
from .simulate import resolve_size

DEFAULT_MIN_AREA = 0.0002
"""``simulate --kind tags``: a class is present when its pixels make up at least this fraction of the image."""


def tag_classes(preset: ClassPreset) -> np.ndarray:
    """int64 (C,): the classes a tag can name, i.e. a classifier's outputs: the preset's classes
    without its background class."""
    return np.arange(1 if preset.has_background else 0, preset.num_classes, dtype=np.int64)


def tags_from_label(label: np.ndarray, preset: ClassPreset, min_area: float = DEFAULT_MIN_AREA) -> np.ndarray:
    """The tags a ground truth (H, W) uint8 implies: the classes (but background) whose pixels make up
    at least ``min_area`` (a fraction of the image below 1, else pixels); sorted int64."""
    counts = np.bincount(label.ravel(), minlength=256)[:preset.num_classes]
    present = np.flatnonzero(counts >= max(resolve_size(min_area, label.size), 1))
    return parse_tags(present.tolist(), preset)


def class_outputs(tags: np.ndarray, preset: ClassPreset) -> np.ndarray:
    """int64: the positions of the tag classes ``tags`` in ``tag_classes(preset)`` (a classifier's outputs)."""
    return np.asarray(tags, np.int64) - (1 if preset.has_background else 0)


def multi_hot(tags: np.ndarray, preset: ClassPreset) -> np.ndarray:
    """float32 (C,) over ``tag_classes(preset)``: 1 for each tagged class, else 0."""
    target = np.zeros(len(tag_classes(preset)), np.float32)
    target[class_outputs(tags, preset)] = 1
    return target
