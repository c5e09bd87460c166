"""Instance pseudo-labels as one COCO-format JSON (RLE masks), loadable by pycocotools.

For weakly supervised instance segmentation and detection (WeakSAM's use) in detectron2 or
mmdetection. Category ids are the preset's class indices (the background class, if the preset has
one, is not a category); image ids count from 1 in input order; ``file_name`` is the photo's file
name (join it with the image directory as those frameworks do), ``sesam_id`` the record id.
Boxes are COCO's [x, y, width, height] in pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from ..presets import ClassPreset
from .atomic import write_json


@dataclass(frozen=True)
class Instance:
    """One object: ``mask`` bool (H, W), its class, and its score (mean predicted IoU of its masks)."""

    mask: np.ndarray
    class_index: int
    score: float


def image_entry(image_number: int, record_id: str, image_path: str | None, size: tuple[int, int]) -> dict[str, Any]:
    """The COCO ``images`` entry of one photo of ``size`` (H, W)."""
    file_name = os.path.basename(image_path) if image_path else f"{record_id}.png"
    return {"id": image_number, "file_name": file_name, "height": int(size[0]), "width": int(size[1]),
            "sesam_id": record_id}


def annotations(found: Iterable[Instance], image_number: int, first_id: int) -> list[dict[str, Any]]:
    """COCO ``annotations`` of one image's instances, ids counting from ``first_id``; empty masks are left out."""
    from pycocotools import mask as mask_utils

    entries = []
    for instance in found:
        if not instance.mask.any():
            continue
        rle = mask_utils.encode(np.asfortranarray(instance.mask.astype(np.uint8)))
        entries.append({
            "id": first_id + len(entries),
            "image_id": image_number,
            "category_id": instance.class_index,
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "iscrowd": 0,
            "score": round(float(instance.score), 6),
        })
    return entries


def categories(preset: ClassPreset) -> list[dict[str, Any]]:
    """The preset's classes as COCO categories (id = class index), background left out."""
    first = 1 if preset.has_background else 0
    return [{"id": index, "name": name, "supercategory": preset.name}
            for index, name in enumerate(preset.classes) if index >= first]


def write_coco(path: str | os.PathLike, images: list[Mapping[str, Any]], entries: list[Mapping[str, Any]],
               preset: ClassPreset, info: Mapping[str, Any] | None = None) -> None:
    """Atomically write a COCO instances JSON: ``info``, ``images``, ``annotations``, ``categories``."""
    document = {"info": dict(info or {}), "images": list(images), "annotations": list(entries),
                "categories": categories(preset)}
    write_json(path, document)
