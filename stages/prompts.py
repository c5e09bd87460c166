"""SeSAM step 2: sample SAM prompts from the components of a weak label.

Each component (see :mod:`stages.decompose`) gets positive points by one of the strategies:

- ``skeleton`` (SeSAM): points on the component's skeleton, at least ``spacing`` px apart, at most
  ``max_points``: farthest-point sampling that starts at the skeleton pixel nearest the skeleton's
  mean; a component whose skeleton is empty or tiny gets its deepest pixel (the maximum of its
  distance transform). Unlike a centroid, a skeleton point always lies inside the component, also
  for rings and C shapes.
- ``fraction`` (Jiang & Yang 2023): a random ``fraction`` of the component's pixels (at least one),
  at most ``max_points`` (by default 20: a prompt set of tens of thousands of points from a coarse
  mask would not fit SAM's decoder, which gets no better beyond a few dozen points anyway).
- ``centroid`` (naive baseline): the component pixel nearest the component's centroid.
- ``box``: the component's bounding box as a box prompt, no positive points.

Points are pixel positions (x, y) = (column, row) of the original image; boxes are XYXY, max
inclusive. With ``group="component"`` a component's points form one prompt set; with
``group="point"`` each point is its own set (``box`` always makes one set per component).
``negatives=N`` adds to each set the N other-class points nearest to it (nearest to its points, or
to its box), drawn from the positive points the strategy placed in other classes' components (for
``box``, each component's centroid-nearest pixel). Each strategy has its own defaults for
``group``, ``max_points`` and ``negatives`` (:data:`STRATEGY_DEFAULTS`): SeSAM's skeleton prompts
each point alone with the nearest other-class point as a negative. The result,
:class:`~stages.io.prompts.PromptSets`, is the ``prompts`` HDF5 artifact (stage ``sample-prompts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from .io.components import Components
from .io.prompts import PromptSets

STRATEGIES = ("skeleton", "fraction", "centroid", "box")
GROUPS = ("component", "point")
DEFAULT_SPACING = 30.0
DEFAULT_FRACTION = 0.2


@dataclass(frozen=True)
class StrategyDefaults:
    """What a strategy uses when ``group``, ``max_points`` or ``negatives`` is not given."""

    group: str
    max_points: int | None
    negatives: int


STRATEGY_DEFAULTS = {
    "skeleton": StrategyDefaults("point", 8, 1),
    "fraction": StrategyDefaults("component", 20, 0),
    "centroid": StrategyDefaults("component", None, 0),
    "box": StrategyDefaults("component", None, 0),
}
"""Per strategy. ``skeleton``: each point alone, up to 8 per component, with the nearest other-class
point as its negative; ``box``: the box alone (both chosen on CamVid train, docs/SELECT.md: more
negatives made every kind worse). ``fraction``: capped at 20 points per set, SAM's decoder gets no
better beyond a few dozen points and a coarse mask's 20% can be tens of thousands."""
MIN_SKELETON_PIXELS = 3
"""A skeleton with fewer pixels is "tiny": its component gets its deepest pixel instead."""
STRATEGY_OPTIONS = {
    "skeleton": ("spacing", "max_points"),
    "fraction": ("fraction", "max_points", "seed"),
    "centroid": (),
    "box": (),
}
"""The options each strategy depends on (besides ``negatives`` and ``group``)."""

def farthest_points(coords: np.ndarray, start: int, min_distance: float, max_points: int | None) -> np.ndarray:
    """Indices into ``coords`` (n, 2) chosen by farthest-point sampling from ``coords[start]``:
    each next point is the one farthest from those chosen, until it is closer than
    ``min_distance`` or ``max_points`` (None: no cap) are chosen."""
    chosen = [start]
    nearest = ((coords - coords[start]) ** 2).sum(1, dtype=np.float64)
    while max_points is None or len(chosen) < max_points:
        candidate = int(np.argmax(nearest))
        if nearest[candidate] < min_distance ** 2:
            break
        chosen.append(candidate)
        np.minimum(nearest, ((coords - coords[candidate]) ** 2).sum(1, dtype=np.float64), out=nearest)
    return np.array(chosen, dtype=np.int64)


def deepest_point(mask: np.ndarray) -> np.ndarray:
    """(1, 2) int64 (row, col): the pixel of ``mask`` (bool (h, w)) farthest from its outside."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.array([np.unravel_index(np.argmax(depth), depth.shape)], dtype=np.int64)


def skeleton_points(mask: np.ndarray, spacing: float = DEFAULT_SPACING,
                    max_points: int | None = STRATEGY_DEFAULTS["skeleton"].max_points) -> np.ndarray:
    """(n, 2) int64 (row, col) points on the skeleton of ``mask`` (bool (h, w), one component).

    Farthest-point sampling along the skeleton: the first point is the skeleton pixel nearest the
    skeleton's mean, each next one the skeleton pixel farthest from those chosen, until it would
    be closer than ``spacing`` px or ``max_points`` (None: no cap) are chosen. A skeleton of fewer
    than MIN_SKELETON_PIXELS pixels gives the mask's deepest pixel instead.
    """
    rows, cols = np.nonzero(skeletonize(mask))
    if rows.size < MIN_SKELETON_PIXELS:
        return deepest_point(mask)
    coords = np.stack([rows, cols], 1).astype(np.int64)
    start = int(np.argmin(((coords - coords.mean(0)) ** 2).sum(1)))
    return coords[farthest_points(coords, start, spacing, max_points)]


def fraction_points(mask: np.ndarray, fraction: float, max_points: int | None,
                    rng: np.random.Generator) -> np.ndarray:
    """(n, 2) int64 (row, col): a random ``fraction`` of the pixels of ``mask`` (bool (h, w)),
    at least one, at most ``max_points`` (None: no cap), in raster order."""
    rows, cols = np.nonzero(mask)
    count = max(1, int(round(fraction * rows.size)))
    if max_points is not None:
        count = min(count, max_points)
    pick = np.sort(rng.choice(rows.size, size=count, replace=False))
    return np.stack([rows[pick], cols[pick]], 1).astype(np.int64)


def centroid_point(mask: np.ndarray) -> np.ndarray:
    """(1, 2) int64 (row, col): the pixel of ``mask`` (bool (h, w)) nearest its centroid."""
    rows, cols = np.nonzero(mask)
    nearest = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
    return np.array([[rows[nearest], cols[nearest]]], dtype=np.int64)


def component_points(components: Components, pick: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """Per component k (index k-1): ``pick(mask)`` on its bool crop of ``component_map``, turned
    from crop (row, col) into image (x, y) float32 (n, 2); empty for a component with no pixel."""
    points = []
    for component, extent in enumerate(components.slices(), start=1):
        if extent is None:
            points.append(np.zeros((0, 2), np.float32))
            continue
        rows_cols = pick(components.component_map[extent] == component)
        offset = np.array([extent[1].start, extent[0].start])
        points.append((rows_cols[:, ::-1] + offset).astype(np.float32))
    return points


def resolve_options(strategy: str, group: str | None = None, max_points: int | None = None,
                    negatives: int | None = None) -> tuple[str, int | None, int]:
    """(group, max_points, negatives) for ``strategy``, each None replaced by its STRATEGY_DEFAULTS."""
    if strategy not in STRATEGY_DEFAULTS:
        raise ValueError(f"unknown strategy '{strategy}' (one of {', '.join(STRATEGIES)})")
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown group '{group}' (one of {', '.join(GROUPS)})")
    defaults = STRATEGY_DEFAULTS[strategy]
    return (defaults.group if group is None else group, defaults.max_points if max_points is None else max_points,
            defaults.negatives if negatives is None else negatives)


def _positive_points(components: Components, strategy: str, spacing: float, max_points: int | None,
                     fraction: float, rng: np.random.Generator) -> list[np.ndarray]:
    if strategy == "skeleton":
        return component_points(components, lambda mask: skeleton_points(mask, spacing, max_points))
    if strategy == "fraction":
        return component_points(components, lambda mask: fraction_points(mask, fraction, max_points, rng))
    if strategy == "centroid":
        return component_points(components, centroid_point)
    if strategy == "box":
        return [np.zeros((0, 2), np.float32)] * components.count
    raise ValueError(f"unknown strategy '{strategy}' (one of {', '.join(STRATEGIES)})")


def _squared_distance_to_box(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Squared distance of (n, 2) (x, y) points to an XYXY box; 0 inside it."""
    dx = np.maximum(np.maximum(box[0] - points[:, 0], points[:, 0] - box[2]), 0)
    dy = np.maximum(np.maximum(box[1] - points[:, 1], points[:, 1] - box[3]), 0)
    return dx ** 2 + dy ** 2


def _nearest_negatives(pool: np.ndarray, pool_class: np.ndarray, own_class: int, positives: np.ndarray,
                       box: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` points of ``pool`` (m, 2) of a class other than ``own_class`` nearest the
    set's ``positives`` (n, 2), or its ``box`` when it has no positive point; nearest first."""
    candidates = pool[pool_class != own_class]
    if candidates.shape[0] == 0:
        return candidates
    if positives.shape[0]:
        distance, _ = cKDTree(positives).query(candidates)
    else:
        distance = _squared_distance_to_box(candidates, box)
    return candidates[np.argsort(distance, kind="stable")[:count]]


def sample_prompts(components: Components, strategy: str = "skeleton", spacing: float = DEFAULT_SPACING,
                   max_points: int | None = None, fraction: float = DEFAULT_FRACTION, negatives: int | None = None,
                   group: str | None = None, rng: np.random.Generator | None = None) -> PromptSets:
    """Prompt sets for the components of one image.

    ``strategy``: skeleton, fraction, centroid or box (see the module docstring). ``spacing``
    (px) and ``max_points`` shape the skeleton points; ``fraction`` and ``max_points`` the
    fraction sample, drawn with ``rng`` (default: seed 0). ``negatives``: other-class points
    added to each set as negatives. ``group``: ``component`` (a component's points form one set)
    or ``point`` (each point its own set). ``max_points``, ``negatives`` and ``group`` default to
    the strategy's STRATEGY_DEFAULTS. A component with no pixel in ``component_map`` gets no set
    unless the strategy is box.
    """
    group, max_points, negatives = resolve_options(strategy, group, max_points, negatives)
    rng = np.random.default_rng(0) if rng is None else rng
    positives = _positive_points(components, strategy, spacing, max_points, fraction, rng)
    pool_points = component_points(components, centroid_point) if strategy == "box" and negatives else positives
    pool = np.concatenate([np.zeros((0, 2), np.float32), *pool_points])
    pool_class = np.repeat(components.component_class, [len(p) for p in pool_points])
    no_box = np.full(4, np.nan, np.float32)

    sets: list[tuple[int, np.ndarray, np.ndarray]] = []
    for index, points in enumerate(positives):
        if strategy == "box":
            sets.append((index, points, components.component_box[index]))
        elif group == "point":
            sets.extend((index, point[None], no_box) for point in points)
        elif len(points):
            sets.append((index, points, no_box))

    all_points, labels, owners = [np.zeros((0, 2), np.float32)], [np.zeros(0, np.int8)], [np.zeros(0, np.int32)]
    for set_index, (index, points, box) in enumerate(sets):
        negative = (_nearest_negatives(pool, pool_class, int(components.component_class[index]), points,
                                       box, negatives) if negatives else np.zeros((0, 2), np.float32))
        all_points += [points, negative]
        labels += [np.ones(len(points), np.int8), np.zeros(len(negative), np.int8)]
        owners.append(np.full(len(points) + len(negative), set_index, np.int32))
    component_index = np.array([index for index, _, _ in sets], dtype=np.int64)
    return PromptSets(
        points=np.concatenate(all_points).astype(np.float32),
        point_labels=np.concatenate(labels),
        point_set=np.concatenate(owners),
        set_component=(component_index + 1).astype(np.int32),
        set_class=components.component_class[component_index].astype(np.int32),
        set_box=np.array([box for _, _, box in sets], dtype=np.float32).reshape(-1, 4),
        image_size=components.image_size,
        strategy=strategy,
    )


