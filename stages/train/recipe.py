"""The training defaults, in one place: what ``sesam train`` and ``TrainConfig`` use for an unset option.

The optimisation settings are shared by all devices; the schedule's length, batch, crop and loader
processes depend on where the run trains (``DEVICE_DEFAULTS``, looked up by ``device_defaults``).
They were chosen by measurement on CamVid train with a fixed held-out part of it (never val): see
docs/TRAINING.md ("How the defaults were chosen") and ``benchmarks/tune_train.py``. This module
imports no torch, so the command line can show the defaults cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adamw")
OPTIMIZER = "sgd"
LEARNING_RATE = {"sgd": 0.01, "adamw": 0.0001}
"""The backbone's learning rate; the head trains at ``HEAD_LR_MULTIPLIER`` times it."""
WEIGHT_DECAY = {"sgd": 0.0001, "adamw": 0.01}
MOMENTUM = 0.9
HEAD_LR_MULTIPLIER = 10.0
POLY_POWER = 0.9
WARMUP_ITERATIONS = 0
"""Linear learning-rate warm-up (capped at a tenth of the run, ``warmup_length``): none by default, since
it did not help from the ImageNet backbone (docs/TRAINING.md); for higher rates or random weights."""
SCALE_RANGE = (0.5, 2.0)
PL_THRESHOLD = 0.95
EMA_MOMENTUM = 0.99
BACKBONE_WEIGHTS = "imagenet"
LOSS_WEIGHT = 1.0
"""The default weight of each loss term (weak labels, SAM pseudo-labels, the teacher's predictions)."""
CHECKPOINT_EVERY = 500
VAL_EVERY = 0
"""Score the validation records every N iterations (0: only at the end)."""
CACHE_SHARE = 0.25
CACHE_LIMIT_BYTES = 16 << 30
"""Training photos and labels are decoded once into memory up to min(this share of RAM, this limit)."""


@dataclass(frozen=True)
class DeviceDefaults:
    """The defaults that depend on the device type: schedule length, batch, crop, loader processes."""

    iterations: int
    batch_size: int
    crop_size: int
    workers: int


DEVICE_DEFAULTS = {
    "cpu": DeviceDefaults(iterations=2000, batch_size=8, crop_size=321, workers=2),
    "cuda": DeviceDefaults(iterations=2000, batch_size=16, crop_size=321, workers=min(8, os.cpu_count() or 1)),
}


CAM_ARCHITECTURES = ("mobilenet_v2", "resnet50", "resnet101")
CAM_ARCHITECTURE = "mobilenet_v2"
CAM_ITERATIONS = 1000
CAM_BATCH_SIZE = 16
CAM_CROP_SIZE = 320
CAM_SCALE_RANGE = (0.5, 1.5)
CAM_WORKERS = 2
CAM_SCALES = (1.0, 0.5, 1.5, 2.0)
CAM_SCORE_THRESHOLD = 0.5
"""The classifier of ``sesam cam`` (``stages.train.classifier``): its backbones, training defaults,
IRN's CAM inference scales, and the probability from which a class counts as present."""


def device_defaults(device_type: str) -> DeviceDefaults:
    """The defaults for a torch device type (``cpu``, ``cuda``; any other type gets the CPU's)."""
    return DEVICE_DEFAULTS.get(device_type, DEVICE_DEFAULTS["cpu"])


def warmup_length(warmup_iterations: int, iterations: int) -> int:
    """The warm-up actually used: ``warmup_iterations``, but at most a tenth of the run."""
    return min(warmup_iterations, iterations // 10)


def learning_rate_factor(iteration: int, iterations: int, warmup: int, power: float) -> float:
    """The learning rate of (0-based) ``iteration`` as a share of the base rate.

    Poly decay ``(1 - iteration / iterations) ** power`` times a linear warm-up ``(iteration + 1) /
    warmup`` over the first ``warmup`` iterations.
    """
    decay = max(0.0, 1.0 - iteration / iterations) ** power
    return decay * min(1.0, (iteration + 1) / warmup) if warmup > 0 else decay


def cache_budget_bytes() -> int:
    """How many bytes of decoded training data are kept in memory: CACHE_SHARE of RAM, at most CACHE_LIMIT_BYTES."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        memory = 8 << 30
    return int(min(CACHE_SHARE * memory, CACHE_LIMIT_BYTES))
