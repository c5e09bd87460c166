"""SeSAM step 1: split each class of a weak label into connected components.

A weak label map (uint8 (H, W) class indices, 255 = unlabelled) is decomposed class by class into
connected components: instances of "things", pieces of "stuff". A boxes source (FORMATS.md "Boxes
JSON", :mod:`stages.io.boxes`) makes one component per box. The result,
:class:`~stages.io.components.Components`, is stored per image as the ``components`` HDF5 artifact
(stage ``decompose``, :mod:`stages.io.components`), which ``sample-prompts``, ``select`` and
``refine`` read back.

Conventions: boxes are XYXY (x = column, y = row) with the maximum coordinates inclusive; component
ids are 1-based, 0 in ``component_map`` means "no component".
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from . import IGNORE_INDEX
from .io.boxes import pixel_boxes, read_boxes
from .io.artifacts import provenance
from .io.components import STAGE, Components, write_components
from .io.images import image_size, read_label
from .presets import ClassPreset
from .records import Record, require

log = logging.getLogger("sesam")

CONNECTIVITIES = (4, 8)
DEFAULT_CONNECTIVITY = 8
DEFAULT_MIN_AREA = 1
"""Keep every component by default: a click is often a single pixel."""

def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be 4 or 8, not {connectivity}")
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def _box(extent: tuple[slice, slice], row0: int = 0, col0: int = 0) -> list[int]:
    """The XYXY box (max inclusive) of a (rows, cols) slice offset by (row0, col0)."""
    rows, cols = extent
    return [col0 + cols.start, row0 + rows.start, col0 + cols.stop - 1, row0 + rows.stop - 1]


def _mixed_blobs(label: np.ndarray, labelled: np.ndarray, blobs: np.ndarray, blob_count: int,
                 connectivity: int) -> np.ndarray:
    """bool (blob_count + 1,): which blobs (connected labelled pixels, any class) hold two
    neighbouring pixels of different classes."""
    everything, head, tail = slice(None), slice(1, None), slice(None, -1)
    shifts = [((everything, head), (everything, tail)), ((head, everything), (tail, everything))]
    if connectivity == 8:
        shifts += [((head, head), (tail, tail)), ((head, tail), (tail, head))]
    mixed = np.zeros(blob_count + 1, bool)
    for one, other in shifts:
        differ = label[one] != label[other]
        differ &= labelled[one]
        differ &= labelled[other]
        mixed[blobs[one][differ]] = True
    return mixed


@dataclass
class _Found:
    """Components in the order they are found: class, raster position of the first pixel, area, box."""

    width: int
    classes: list[int] = field(default_factory=list)
    firsts: list[int] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)
    boxes: list[list[int]] = field(default_factory=list)

    def first_pixel(self, ids: np.ndarray, index: int, extent: tuple[slice, slice], row0: int = 0,
                    col0: int = 0) -> int:
        """Raster position (row * W + col) of the first pixel of region ``index`` of ``ids``, an id
        map at (row0, col0) in the image in which ``extent`` bounds the region."""
        rows, cols = extent
        first_col = int(np.argmax(ids[rows.start, cols] == index))
        return (row0 + rows.start) * self.width + col0 + cols.start + first_col

    def add(self, value: int, first: int, area: int, box: list[int]) -> int:
        """Record a component of class ``value``; returns its position in discovery order."""
        self.classes.append(value)
        self.firsts.append(first)
        self.areas.append(area)
        self.boxes.append(box)
        return len(self.classes) - 1


def _split_blob(found: _Found, crop: np.ndarray, own: np.ndarray, row0: int, col0: int,
                structure: np.ndarray, min_area: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a blob where classes touch into per-class components, adding them to ``found``.

    ``crop`` is the label inside the blob's box at (row0, col0), ``own`` (bool, same shape) the
    blob's pixels. Returns the crop's piece ids (int32, 0 = none) and, at index id-1, each piece's
    position in ``found`` (-1: dropped for its area).
    """
    pieces = np.zeros(crop.shape, np.int32)
    positions: list[int] = []
    for value in np.unique(crop[own]):
        parts, count = ndimage.label(own & (crop == value), structure)
        part_area = np.bincount(parts.ravel(), minlength=count + 1)
        for part, extent in enumerate(ndimage.find_objects(parts), start=1):
            if part_area[part] < min_area:
                positions.append(-1)
                continue
            first = found.first_pixel(parts, part, extent, row0, col0)
            positions.append(found.add(int(value), first, int(part_area[part]), _box(extent, row0, col0)))
        inside = parts > 0
        pieces[inside] = parts[inside] + (len(positions) - count)
    return pieces, np.array(positions, np.int64)


def decompose(label: np.ndarray, connectivity: int = DEFAULT_CONNECTIVITY,
              min_area: int = DEFAULT_MIN_AREA) -> Components:
    """Split each class of ``label`` (uint8 (H, W), 255 = unlabelled) into connected components.

    ``connectivity`` is 4 or 8 (pixel neighbourhood). Components with fewer than ``min_area``
    pixels are dropped (their pixels stay in ``weak_label``). Components are numbered by class,
    then in raster order of their first pixel. 255 is never a component.

    Connected labelled pixels of any class ("blobs") are found in one pass over the image; only
    blobs where two classes touch are split per class, inside their bounding box.
    """
    label = np.asarray(label, dtype=np.uint8)
    structure = _structure(connectivity)
    labelled = label != IGNORE_INDEX
    blobs, blob_count = ndimage.label(labelled, structure)
    blob_area = np.bincount(blobs.ravel(), minlength=blob_count + 1)
    mixed = _mixed_blobs(label, labelled, blobs, blob_count, connectivity)
    found = _Found(label.shape[1])
    blob_position = np.full(blob_count + 1, -1, np.int64)
    splits = []
    for blob, extent in enumerate(ndimage.find_objects(blobs), start=1):
        if mixed[blob]:
            row0, col0 = extent[0].start, extent[1].start
            pieces, positions = _split_blob(found, label[extent], blobs[extent] == blob, row0, col0,
                                            structure, min_area)
            splits.append((extent, pieces, positions))
        elif blob_area[blob] >= min_area:
            first = found.first_pixel(blobs, blob, extent)
            blob_position[blob] = found.add(int(label.flat[first]), first, int(blob_area[blob]), _box(extent))
    order = np.lexsort((np.array(found.firsts, np.int64), np.array(found.classes, np.int64)))
    new_id = np.zeros(len(order) + 1, np.int32)
    new_id[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    component_map = new_id[blob_position][blobs]
    for extent, pieces, positions in splits:
        piece_ids = np.concatenate([[0], new_id[positions]]).astype(np.int32)
        component_map[extent] += piece_ids[pieces]
    return Components(
        component_map=component_map,
        component_class=np.array(found.classes, np.int32)[order],
        component_area=np.array(found.areas, np.int64)[order],
        component_box=np.array(found.boxes, np.float32).reshape(-1, 4)[order],
        weak_label=label,
        source="mask",
    )


def decompose_boxes(boxes: np.ndarray, classes: np.ndarray, image_size: tuple[int, int]) -> Components:
    """One component per box: ``boxes`` (K, 4) XYXY (max inclusive, pixels), ``classes`` (K,).

    ``component_map`` paints each box's interior (coordinates rounded to pixels, clipped to the
    image of size (H, W)), smaller boxes on top of larger ones; ``component_area`` is the box's
    pixel count; ``weak_label`` is all 255.
    """
    height, width = image_size
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    classes = np.asarray(classes, dtype=np.int32).reshape(-1)
    if classes.shape[0] != boxes.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {classes.shape[0]} classes")
    pixels = pixel_boxes(boxes, image_size)
    area = ((pixels[:, 2] - pixels[:, 0] + 1).clip(0) * (pixels[:, 3] - pixels[:, 1] + 1).clip(0))
    component_map = np.zeros((height, width), np.int32)
    for index in np.argsort(-area, kind="stable"):
        x0, y0, x1, y1 = pixels[index]
        component_map[y0:y1 + 1, x0:x1 + 1] = index + 1
    return Components(
        component_map=component_map,
        component_class=classes,
        component_area=area.astype(np.int64),
        component_box=boxes,
        weak_label=np.full((height, width), IGNORE_INDEX, np.uint8),
        source="boxes",
    )


def decompose_file(path: str | os.PathLike, preset: ClassPreset, connectivity: int = DEFAULT_CONNECTIVITY,
                   min_area: int = DEFAULT_MIN_AREA, expected_size: tuple[int, int] | None = None,
                   map_colours: bool = False) -> Components:
    """Decompose a weak label file: a label PNG (checked by ``read_label``) or a boxes JSON."""
    path = os.fspath(path)
    if path.lower().endswith(".json"):
        boxes, classes, size = read_boxes(path, preset, expected_size)
        return decompose_boxes(boxes, classes, size)
    label = read_label(path, preset, map_colours=map_colours, expected_size=expected_size)
    return decompose(label, connectivity, min_area)


@dataclass
class RecordDecomposer:
    """``decompose_file`` on the label map of each record's ``key`` (a photo under 'image' must have its
    size), written as a components HDF5 with provenance: the per-image work of ``sesam decompose``."""

    preset: ClassPreset
    connectivity: int = DEFAULT_CONNECTIVITY
    min_area: int = DEFAULT_MIN_AREA
    map_colours: bool = False
    key: str = "weak"

    def settings(self) -> dict[str, Any]:
        """The settings a components file depends on (and so whether it is up to date)."""
        return {"classes": self.preset.name, "map_colours": self.map_colours, "connectivity": self.connectivity,
                "min_area": self.min_area, "key": self.key}

    def decompose_into(self, record: Record, out_path: str) -> None:
        """Write the components of ``record`` to ``out_path``; a label with none is written empty, with a warning."""
        require(record, self.key)
        expected = image_size(record["image"]) if record.get("image") else None
        components = decompose_file(record[self.key], self.preset, self.connectivity, self.min_area, expected,
                                    self.map_colours)
        if components.count == 0:
            log.warning("%s: no labelled component (of %d px or more); passing on an empty component set",
                        record[self.key], self.min_area)
        write_components(out_path, components, provenance(STAGE, self.settings(), record))
