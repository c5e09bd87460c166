"""The ``masks`` artifact (stage ``sam-predict``): SAM's mask hypotheses for one image's prompt sets.

One HDF5 per image (docs/FORMATS.md), written by ``sesam sam-predict`` and read by ``select``:
``masks`` bool (S, M, H, W), M hypotheses for each of S prompt sets (0 = SAM's single-mask output,
1-3 its multimask outputs from small to large); ``iou_predictions`` float32 (S, M);
``set_component`` and ``set_class`` int32 (S,) copied from the prompts; more datasets
(``stability_scores``, ``low_res_logits``, automatic masks' ``boxes``) where the maker has them.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from ..errors import SesamInputError
from .artifacts import read_h5, write_h5

STAGE = "sam-predict"
DATASETS = ("masks", "iou_predictions", "set_component", "set_class")
"""The datasets selection needs."""


def write_masks(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """Atomically write SAM's outputs ``arrays`` (name -> array, see the module) as a ``masks`` HDF5
    artifact with root ``attrs`` (provenance, ``mode``, ``multimask``)."""
    write_h5(path, arrays, attrs)


def read_masks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The datasets of a ``masks`` artifact (stage sam-predict) that selection needs: ``masks`` bool
    (S, M, H, W), ``iou_predictions`` (S, M), ``set_component``, ``set_class`` (S,), and any others
    it holds. A file that is not one raises SesamInputError naming it."""
    datasets, _attrs = read_h5(path, STAGE)
    missing = [name for name in DATASETS if name not in datasets]
    if missing:
        raise SesamInputError(path, f"lacks dataset(s) {', '.join(missing)}; rerun 'sesam sam-predict'")
    masks = datasets["masks"]
    if (masks.ndim != 4 or datasets["iou_predictions"].shape != masks.shape[:2]
            or datasets["set_class"].shape != masks.shape[:1] or datasets["set_component"].shape != masks.shape[:1]):
        raise SesamInputError(path, "inconsistent dataset shapes; rerun 'sesam sam-predict'")
    return datasets
