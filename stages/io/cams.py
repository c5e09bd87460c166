"""The ``cam_scores`` artifact (stage ``cam``): one image's class activation maps.

One HDF5 per image (docs/CAM.md), written by ``sesam cam predict`` and read by ``decompose --key
cam``'s source, ``sample-prompts --strategy cam-peaks`` and ``select --strategy cam-merge``: ``cams``
(stored as float16) with one plane per present class, ``cam_class`` and ``class_scores``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import SesamInputError
from .artifacts import read_h5, write_h5

STAGE = "cam"
DATASETS = ("cams", "cam_class", "class_scores")


@dataclass
class ClassActivationMaps:
    """One image's CAMs: ``cams`` float32 (C, H, W) in [0, 1]; ``cam_class`` int64 (C,) preset class
    of each plane; ``class_scores`` float32 (K,) classifier probability per preset class (NaN: none)."""

    cams: np.ndarray
    cam_class: np.ndarray
    class_scores: np.ndarray

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.cams.shape[1]), int(self.cams.shape[2])


def write_cams(path: str | os.PathLike, maps: ClassActivationMaps, attrs: Mapping[str, Any]) -> None:
    """Atomically write a ``cam_scores`` HDF5 artifact (``cams`` as float16) with root ``attrs``."""
    write_h5(path, {"cams": maps.cams.astype(np.float16), "cam_class": np.asarray(maps.cam_class, np.int64),
                    "class_scores": np.asarray(maps.class_scores, np.float32)},
             {**attrs, "image_size": maps.image_size})


def read_cams(path: str | os.PathLike) -> ClassActivationMaps:
    """Read a ``cam_scores`` artifact (stage cam); SesamInputError naming the file if it is not one."""
    datasets, _attrs = read_h5(path, STAGE)
    missing = [name for name in DATASETS if name not in datasets]
    if missing:
        raise SesamInputError(path, f"lacks dataset(s) {', '.join(missing)}; rerun 'sesam cam predict'")
    cams = datasets["cams"]
    if cams.ndim != 3 or datasets["cam_class"].shape != cams.shape[:1]:
        raise SesamInputError(path, "inconsistent dataset shapes; rerun 'sesam cam predict'")
    return ClassActivationMaps(cams.astype(np.float32), datasets["cam_class"].astype(np.int64),
                               datasets["class_scores"].astype(np.float32))
