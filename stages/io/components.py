"""The ``components`` artifact (stage ``decompose``): the connected components of one weak label.

One HDF5 per image (docs/FORMATS.md), written by ``sesam decompose`` and read by ``sample-prompts``,
``select`` and ``refine``. Boxes are XYXY (x = column, y = row) with the maximum coordinates
inclusive; component ids are 1-based, 0 in ``component_map`` means "no component".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from ..errors import SesamInputError
from .artifacts import read_h5, write_h5

STAGE = "decompose"
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
