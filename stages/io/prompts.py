"""The ``prompts`` artifact (stage ``sample-prompts``): SAM prompt sets for one image.

One HDF5 per image (docs/FORMATS.md), written by ``sesam sample-prompts`` and read by
``sam-predict``. Points are (x, y) pixel coordinates of the original image; boxes are XYXY, max
inclusive. :func:`read_prompt_sets` also checks them against the photo they are for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import SesamInputError
from .artifacts import read_h5, write_h5

STAGE = "sample-prompts"
DATASETS = ("points", "point_labels", "point_set", "set_component", "set_class", "set_box")


@dataclass
class PromptSets:
    """Prompt sets for one image, in the layout of the ``prompts`` HDF5 artifact.

    - ``points``: float32 (P, 2), (x, y) pixel coordinates;
    - ``point_labels``: int8 (P,), 1 = positive, 0 = negative;
    - ``point_set``: int32 (P,), the set (0..S-1) of each point, ascending;
    - ``set_component``: int32 (S,), 1-based component id of each set;
    - ``set_class``: int32 (S,), class of each set;
    - ``set_box``: float32 (S, 4), XYXY box prompt (max inclusive), NaN where the set has none.
    """

    points: np.ndarray
    point_labels: np.ndarray
    point_set: np.ndarray
    set_component: np.ndarray
    set_class: np.ndarray
    set_box: np.ndarray
    image_size: tuple[int, int]
    strategy: str

    @property
    def count(self) -> int:
        """S, the number of prompt sets."""
        return int(self.set_component.shape[0])

    def set_points(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The points (n, 2) float32 (x, y) and labels (n,) int8 of prompt set ``index``."""
        start, stop = np.searchsorted(self.point_set, [index, index + 1])
        return self.points[start:stop], self.point_labels[start:stop]

    def set_box_or_none(self, index: int) -> np.ndarray | None:
        """The (4,) XYXY box prompt of set ``index``, or None."""
        box = self.set_box[index]
        return None if np.isnan(box).any() else box


def write_prompts(path: str | os.PathLike, prompts: PromptSets, attrs: Mapping[str, Any]) -> None:
    """Atomically write ``prompts`` as a ``prompts`` HDF5 artifact with root ``attrs`` (provenance)
    plus ``image_size`` and ``strategy``."""
    datasets = {name: getattr(prompts, name) for name in DATASETS}
    write_h5(path, datasets, {**attrs, "image_size": prompts.image_size, "strategy": prompts.strategy})


def read_prompts(path: str | os.PathLike) -> PromptSets:
    """Read a ``prompts`` HDF5 artifact; raises SesamInputError naming the file if it is not one."""
    datasets, attrs = read_h5(path, STAGE)
    missing = [name for name in DATASETS if name not in datasets]
    if missing or "image_size" not in attrs:
        raise SesamInputError(path, f"lacks {', '.join(missing) or 'image_size'}; rerun 'sesam sample-prompts'")
    prompts = PromptSets(**{name: datasets[name] for name in DATASETS},
                         image_size=tuple(int(v) for v in attrs["image_size"]),  # type: ignore[arg-type]
                         strategy=str(attrs.get("strategy")))
    point_counts = {len(prompts.points), len(prompts.point_labels), len(prompts.point_set)}
    set_counts = {len(prompts.set_component), len(prompts.set_class), len(prompts.set_box)}
    if len(point_counts) != 1 or len(set_counts) != 1:
        raise SesamInputError(path, "inconsistent dataset shapes; rerun 'sesam sample-prompts'")
    return prompts


def prompt_problems(prompts: PromptSets, image_size: tuple[int, int]) -> list[str]:
    """What makes ``prompts`` unusable on an (H, W) image (points or boxes outside it, empty sets); [] if nothing."""
    height, width = image_size
    found = []
    if tuple(prompts.image_size) != tuple(image_size):
        found.append(f"made for a {prompts.image_size[1]}x{prompts.image_size[0]} image, but the photo is "
                     f"{width}x{height}")
    if (np.diff(prompts.point_set) < 0).any():
        found.append("point_set is not in ascending order")
    bad_labels = np.setdiff1d(prompts.point_labels, (0, 1))
    if len(bad_labels):
        found.append(f"point_labels hold {', '.join(str(v) for v in bad_labels[:5])}; "
                     "a point is 1 (positive) or 0 (negative)")
    points = prompts.points.reshape(-1, 2)
    outside = ~((points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height))
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        found.append(f"{int(outside.sum())} point(s) outside the {width}x{height} image, e.g. "
                     f"(x={points[index, 0]:g}, y={points[index, 1]:g}) of prompt set {int(prompts.point_set[index])}")
    boxed = ~np.isnan(prompts.set_box).any(axis=1)
    boxes = prompts.set_box[boxed]
    bad_box = ((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
               | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bad_box.any():
        index = int(np.flatnonzero(boxed)[np.flatnonzero(bad_box)[0]])
        found.append(f"box {prompts.set_box[index].tolist()} of prompt set {index} is not an XYXY box "
                     f"inside the {width}x{height} image")
    empty = np.setdiff1d(np.flatnonzero(~boxed), prompts.point_set)
    if len(empty):
        found.append(f"prompt set {int(empty[0])} has neither points nor a box")
    return found


def read_prompt_sets(path: str | os.PathLike, image_size: tuple[int, int]) -> PromptSets:
    """The prompt sets of a ``sample-prompts`` HDF5, checked against the (H, W) photo they are for."""
    prompts = read_prompts(path)
    problems = prompt_problems(prompts, image_size)
    if problems:
        raise SesamInputError(path, "; ".join(problems))
    return prompts
