"""SeSAM step 1: split each class of a weak label into connected components.

A weak label map (uint8 (H, W) class indices, 255 = unlabelled) is decomposed class by class into
connected components: instances of "things", pieces of "stuff". A boxes source (FORMATS.md "Boxes
JSON") makes one component per box. The result, :class:`Components`, is stored per image as the
``components`` HDF5 artifact (stage ``decompose``), which ``sample-prompts``, ``select`` and
``refine`` read back with :func:`read_components`.

Conventions: boxes are XYXY (x = column, y = row) with the maximum coordinates inclusive; component
ids are 1-based, 0 in ``component_map`` means "no component".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from . import IGNORE_INDEX
from .io.artifacts import read_h5, write_h5
from .errors import SesamInputError
from .io.images import read_label
from .presets import ClassPreset

STAGE = "decompose"
CONNECTIVITIES = (4, 8)
DEFAULT_CONNECTIVITY = 8
DEFAULT_MIN_AREA = 1
"""Keep every component by default: a click is often a single pixel."""

DATASETS = ("component_map", "component_class", "component_area", "component_box", "weak_label")


@dataclass
class Components:
    """The connected components of one image's weak label.

    - ``component_map``: int32 (H, W); 0 = no component, k = component k (1-based).
    - ``component_class``: int32 (K,); class of component k at index k-1.
    - ``component_area``: int64 (K,); labelled pixels of the component (for a boxes source, the
      pixels inside the box).
    - ``component_box``: float32 (K, 4); XYXY box, max inclusive.
    - ``weak_label``: uint8 (H, W); the weak label map, 255 = unlabelled (all 255 for boxes).
    - ``source``: ``"mask"`` or ``"boxes"``.
    """

    component_map: np.ndarray
    component_class: np.ndarray
    component_area: np.ndarray
    component_box: np.ndarray
    weak_label: np.ndarray
    source: str

    @property
    def count(self) -> int:
        """K, the number of components."""
        return int(self.component_class.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return tuple(int(v) for v in self.component_map.shape)  # type: ignore[return-value]

    def slices(self) -> list[tuple[slice, slice] | None]:
        """(rows, cols) slices bounding each component's pixels in ``component_map``, index k-1;
        None for a component with no visible pixel (a box painted over by smaller boxes)."""
        return ndimage.find_objects(self.component_map, max_label=self.count)


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
    pixels = np.rint(boxes).astype(np.int64)
    pixels[:, [0, 2]] = np.clip(pixels[:, [0, 2]], 0, width - 1)
    pixels[:, [1, 3]] = np.clip(pixels[:, [1, 3]], 0, height - 1)
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


def _check_size(path: str, size: tuple[int, int], expected_size: tuple[int, int] | None) -> None:
    if expected_size is not None and tuple(size) != tuple(expected_size):
        raise SesamInputError(path, f"image_size {size[1]}x{size[0]} (WxH) does not match its photo's "
                                    f"{expected_size[1]}x{expected_size[0]}")


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
    _check_size(path, (height, width), expected_size)
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


def stored_map_dtype(count: int) -> np.dtype:
    """The narrowest unsigned dtype for component ids 0..``count``: compressing a uint8 map costs
    less than half the time of the int32 one (and ``read_components`` widens it back)."""
    for dtype in (np.uint8, np.uint16):
        if count <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int32)


def write_components(path: str | os.PathLike, components: Components, attrs: Mapping[str, Any]) -> None:
    """Atomically write ``components`` as a ``components`` HDF5 artifact with root ``attrs``
    (provenance) plus ``image_size`` and ``source``; ``component_map`` is stored in the narrowest
    unsigned dtype that holds its ids (``stored_map_dtype``)."""
    datasets = {name: getattr(components, name) for name in DATASETS}
    datasets["component_map"] = components.component_map.astype(stored_map_dtype(components.count))
    write_h5(path, datasets, {**attrs, "image_size": components.image_size, "source": components.source})


def read_components(path: str | os.PathLike) -> Components:
    """Read a ``components`` HDF5 artifact; raises SesamInputError naming the file if it is not one."""
    datasets, attrs = read_h5(path, STAGE)
    missing = [name for name in DATASETS if name not in datasets]
    if missing:
        raise SesamInputError(path, f"lacks dataset(s) {', '.join(missing)}; rerun 'sesam decompose'")
    datasets["component_map"] = datasets["component_map"].astype(np.int32)
    components = Components(**{name: datasets[name] for name in DATASETS}, source=str(attrs.get("source")))
    sizes = {components.component_map.shape, components.weak_label.shape}
    counts = {components.component_class.shape[0], components.component_area.shape[0],
              components.component_box.shape[0]}
    if len(sizes) != 1 or len(counts) != 1 or components.component_box.shape[1:] != (4,):
        raise SesamInputError(path, "inconsistent dataset shapes; rerun 'sesam decompose'")
    return components
