"""The boxes JSON (docs/FORMATS.md "Boxes JSON"): box labels of one image, written by ``sesam simulate
--kind boxes`` and read as a weak label by ``decompose`` (one component per box).

Boxes are XYXY pixel coordinates (x = column, y = row) with inclusive maxima.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import SesamInputError
from ..presets import ClassPreset
from .atomic import write_json
from .images import check_same_size


@dataclass(frozen=True)
class Boxes:
    """Box labels of one image: ``boxes`` float32 (N, 4) XYXY (inclusive maxima), ``classes`` int32 (N,)."""

    image_size: tuple[int, int]
    boxes: np.ndarray
    classes: np.ndarray


def pixel_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """int64 (N, 4): XYXY ``boxes`` (N, 4) (inclusive maxima) rounded to pixels and kept inside an
    image of ``image_size`` (H, W)."""
    height, width = image_size
    pixels = np.rint(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(np.int64)
    return np.clip(pixels, 0, [width - 1, height - 1, width - 1, height - 1])


def write_boxes(path: str | os.PathLike, boxes: Boxes, meta: Mapping[str, Any] | None = None) -> None:
    """Atomically write boxes as JSON (docs/FORMATS.md), with provenance ``meta`` under ``sesam``.
    :func:`read_boxes` reads it back."""
    content = {
        "image_size": list(boxes.image_size),
        "boxes": [{"box": [int(v) if float(v).is_integer() else float(v) for v in box], "class": int(cls)}
                  for box, cls in zip(boxes.boxes, boxes.classes)],
    }
    write_json(path, content, meta)


def read_boxes(path: str | os.PathLike, preset: ClassPreset,
               expected_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Read a boxes JSON (FORMATS.md) as ``(boxes (K, 4) float32 XYXY, classes (K,) int32, (H, W))``.

    Raises SesamInputError for a file that does not parse, a class outside the preset, a box that
    is not inside the image (max inclusive), or an ``image_size`` other than ``expected_size``.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise SesamInputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SesamInputError(path, f"not a readable boxes JSON file (truncated or corrupt?): {exc}") from None
    try:
        height, width = (int(v) for v in data["image_size"])
        entries = data["boxes"]
        boxes = np.array([[float(v) for v in entry["box"]] for entry in entries], np.float32).reshape(-1, 4)
        classes = np.array([int(entry["class"]) for entry in entries], np.int32)
    except (KeyError, TypeError, ValueError) as exc:
        raise SesamInputError(path, 'not a boxes file: expected {"image_size": [H, W], "boxes": '
                                    f'[{{"box": [x0, y0, x1, y1], "class": c}}, ...]}} ({exc!r})') from None
    if height < 1 or width < 1:
        raise SesamInputError(path, f"image_size {height}x{width} is empty")
    check_same_size(path, (height, width), expected_size, "image_size")
    bad_class = (classes < 0) | (classes >= preset.num_classes)
    if bad_class.any():
        raise SesamInputError(path, f"box class {int(classes[bad_class][0])} is outside the '{preset.name}' "
                                    f"preset (0..{preset.num_classes - 1})")
    inside = (np.isfinite(boxes).all(1) & (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0)
              & (boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 1] <= boxes[:, 3])
              & (boxes[:, 2] <= width - 1) & (boxes[:, 3] <= height - 1))
    if not inside.all():
        box = boxes[~inside][0].tolist()
        raise SesamInputError(path, f"box {box} is not a box inside the {width}x{height} image (XYXY, max "
                                    f"inclusive: 0 <= x0 <= x1 <= {width - 1}, 0 <= y0 <= y1 <= {height - 1})")
    return boxes, classes, (height, width)
