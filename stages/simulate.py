"""Weak labels simulated from full ground truth: points, scribbles, coarse polygons, boxes.

Every kind works on the same units, the *regions* of a ground truth: each object instance (from an
instance-id map, VOC ``SegmentationObject`` style) and each connected piece (8-connectivity) of a
class's remaining pixels ("stuff", background included). Label maps are uint8 (H, W) class indices,
255 = unlabelled; points are (x, y) = (column, row); boxes are XYXY with inclusive maxima.
Randomness comes from a ``numpy.random.Generator`` per image (``image_rng``), so results do not
depend on the order or sharding of images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from skimage.draw import polygon
from skimage.measure import approximate_polygon, find_contours
from skimage.morphology import skeletonize

from . import IGNORE_INDEX
from .io.boxes import Boxes
from .presets import ClassPreset

KINDS = ("points", "scribbles", "coarse", "boxes")
SCRIBBLE_STYLES = ("skeleton", "human")
"""``skeleton``: strokes along each region's skeleton, inside it; ``human``: one long stroke per class
region (touching instances of a class together) that may stray past its boundary."""

DEFAULT_MIN_AREA = {"points": 0.0002, "scribbles": 0.0002, "coarse": 0.001, "boxes": 0.0002}
"""Regions smaller than this fraction of the image get no weak label, per kind (annotators skip specks)."""

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

SKELETON_MAX_SIDE = 320
"""Scribbles follow the skeleton of a region subsampled to at most this many pixels on its longest side."""

_NEIGHBOUR_STEPS = ((0, 1, 1.0), (1, -1, np.sqrt(2.0)), (1, 0, 1.0), (1, 1, np.sqrt(2.0)))


def image_rng(seed: int, record_id: str) -> np.random.Generator:
    """A generator for one image, derived from ``seed`` and the image's id (stable across runs and shards)."""
    digest = hashlib.sha256(record_id.encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def resolve_size(value: float, reference: float) -> float:
    """``value`` itself if it is 1 or more (pixels), else that fraction of ``reference``."""
    return float(value) if value >= 1 else float(value) * reference


@dataclass(frozen=True)
class Regions:
    """The regions of a ground truth.

    ``region_map``: int32 (H, W), 0 = no region, k = region k (1-based); ``region_class``: int32 (R,)
    class of region k at index k-1.
    """

    region_map: np.ndarray
    region_class: np.ndarray

    def __len__(self) -> int:
        return len(self.region_class)

    @property
    def shape(self) -> tuple[int, int]:
        return self.region_map.shape

    def slices(self) -> list[tuple[slice, slice]]:
        """Bounding (rows, cols) slices of each region, in region order."""
        return ndimage.find_objects(self.region_map, max_label=len(self))

    def crops(self, margin: int = 1) -> Iterator[tuple[int, tuple[slice, slice], np.ndarray]]:
        """For each region: its class, its bounding slices, and its mask cropped to them and padded
        by ``margin`` False pixels on every side (so distance transforms see the crop edge as outside,
        and a stroke may leave the region by up to ``margin - 1`` pixels)."""
        for index, bounds in enumerate(self.slices()):
            mask = np.pad(self.region_map[bounds] == index + 1, margin)
            yield int(self.region_class[index]), bounds, mask


def label_regions(gt: np.ndarray, instances: np.ndarray | None = None, min_area: float = 0) -> Regions:
    """Split a ground truth (H, W) uint8 into regions.

    ``instances``: optional (H, W) integer instance ids (0 = none, 255 = ignore, any other value an
    instance, e.g. VOC's 1..n or Cityscapes' label id x 1000 + k; see ``stages.io.images.read_instances``).
    An instance's class is the most frequent ground-truth class among its pixels; its region is its
    pixels of that class. Labelled pixels outside every instance region form one region per
    connected piece of each class. Regions under ``min_area`` pixels (a value below 1 is a fraction
    of the image) are dropped. Instances come first (by id), then stuff pieces (by class).
    """
    labelled = gt != IGNORE_INDEX
    region_map = np.zeros(gt.shape, np.int32)
    classes: list[int] = []
    if instances is not None:
        if instances.shape != gt.shape:
            raise ValueError(f"instances {instances.shape} and ground truth {gt.shape} differ in size")
        ids = instances.astype(np.int64)
        valid = labelled & (ids != 0) & (ids != IGNORE_INDEX)
        present, instance_index = np.unique(ids[valid], return_inverse=True)
        votes = np.bincount(instance_index * 256 + gt[valid], minlength=len(present) * 256)
        instance_class = votes.reshape(len(present), 256).argmax(axis=1)
        member = gt[valid] == instance_class[instance_index]
        region_map[valid] = np.where(member, instance_index + 1, 0)
        classes.extend(int(c) for c in instance_class)
    rest = labelled & (region_map == 0)
    for cls in np.unique(gt[rest]):
        pieces, count = ndimage.label(rest & (gt == cls), structure=EIGHT_CONNECTED)
        region_map[pieces > 0] = pieces[pieces > 0] + len(classes)
        classes.extend([int(cls)] * count)
    areas = np.bincount(region_map.ravel(), minlength=len(classes) + 1)[1:]
    keep = areas >= resolve_size(min_area, gt.size)
    renumber = np.zeros(len(classes) + 1, np.int32)
    renumber[1:][keep] = np.arange(1, int(keep.sum()) + 1)
    return Regions(renumber[region_map], np.asarray(classes, np.int32)[keep])


def _paste(weak: np.ndarray, bounds: tuple[slice, slice], drawn: np.ndarray, cls: int, margin: int = 1) -> None:
    """Write ``cls`` into ``weak`` where ``drawn`` is set: a crop of the region bounded by ``bounds``,
    padded by ``margin`` pixels (those beyond the image are dropped)."""
    top, left = bounds[0].start - margin, bounds[1].start - margin
    rows = slice(max(top, 0), min(top + drawn.shape[0], weak.shape[0]))
    cols = slice(max(left, 0), min(left + drawn.shape[1], weak.shape[1]))
    weak[rows, cols][drawn[rows.start - top: rows.stop - top, cols.start - left: cols.stop - left]] = cls


def _discs(shape: tuple[int, int], centres: np.ndarray, radius: float) -> np.ndarray:
    """A boolean (H, W) map of discs of ``radius`` around ``centres`` (N, 2) given as (row, col)."""
    seeds = np.zeros(shape, bool)
    seeds[centres[:, 0], centres[:, 1]] = True
    if radius <= 0:
        return seeds
    return ndimage.distance_transform_edt(~seeds) <= radius


def _spread_clicks(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` rows of ``candidates`` (N, 2): the first at random, each next the farthest from those taken."""
    chosen = [int(rng.integers(len(candidates)))]
    nearest = np.full(len(candidates), np.inf)
    for _ in range(min(count, len(candidates)) - 1):
        nearest = np.minimum(nearest, np.hypot(*(candidates - candidates[chosen[-1]]).T))
        chosen.append(int(nearest.argmax()))
    return candidates[chosen]


def simulate_points(regions: Regions, rng: np.random.Generator, points_per_region: int = 1,
                    radius: float = 0, click_depth: float = 0.5) -> np.ndarray:
    """Clicks: ``points_per_region`` per region in its interior, each a disc of ``radius`` pixels
    (0 = one pixel). Interior = the pixels whose distance from the region's boundary is at least
    ``click_depth`` times the region's largest such distance (0: any pixel of the region; 1: its
    deepest pixels); the first click is random among them, the others spread out (farthest first).
    Returns the weak label (H, W) uint8, 255 elsewhere."""
    weak = np.full(regions.shape, IGNORE_INDEX, np.uint8)
    for cls, bounds, mask in regions.crops():
        distance = ndimage.distance_transform_edt(mask)
        candidates = np.argwhere(distance >= max(click_depth * distance.max(), 1))
        clicks = _spread_clicks(candidates, points_per_region, rng)
        _paste(weak, bounds, _discs(mask.shape, clicks, radius) & mask, cls)
    return weak


def default_thickness(shape: tuple[int, int]) -> int:
    """Scribble width in pixels: 3 px for a VOC-sized image (longest side 500), in proportion otherwise."""
    return max(1, round(3 * max(shape) / 500))


def _skeleton_graph(skeleton: np.ndarray) -> tuple[np.ndarray, csr_matrix]:
    """The skeleton's pixels (N, 2) as (row, col) and a sparse graph joining 8-neighbours."""
    pixels = np.argwhere(skeleton)
    index = np.full(skeleton.shape, -1, np.int64)
    index[pixels[:, 0], pixels[:, 1]] = np.arange(len(pixels))
    rows, cols, weights = [], [], []
    height, width = skeleton.shape
    for d_row, d_col, weight in _NEIGHBOUR_STEPS:
        r, c = pixels[:, 0] + d_row, pixels[:, 1] + d_col
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        neighbour = np.full(len(pixels), -1, np.int64)
        neighbour[inside] = index[r[inside], c[inside]]
        linked = neighbour >= 0
        rows.append(np.flatnonzero(linked))
        cols.append(neighbour[linked])
        weights.append(np.full(int(linked.sum()), weight))
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(len(pixels), len(pixels)))
    return pixels, csr_matrix(graph)


def _longest_path(skeleton: np.ndarray) -> np.ndarray:
    """The longest geodesic path through a skeleton (double sweep per piece), as (N, 2) (row, col)."""
    pixels, graph = _skeleton_graph(skeleton)
    if len(pixels) == 0:
        return pixels
    _, piece = connected_components(graph, directed=False)
    best: list[int] = []
    best_length = -1.0
    for label in np.unique(piece):
        start = int(np.flatnonzero(piece == label)[0])
        reach = dijkstra(graph, directed=False, indices=start)
        end_a = int(np.where(np.isfinite(reach), reach, -1).argmax())
        reach, previous = dijkstra(graph, directed=False, indices=end_a, return_predecessors=True)
        end_b = int(np.where(np.isfinite(reach), reach, -1).argmax())
        if reach[end_b] > best_length:
            best_length = reach[end_b]
            best = [end_b]
            while best[-1] != end_a:
                best.append(int(previous[best[-1]]))
    return pixels[best]


def _trim_ends(path: np.ndarray, distance: np.ndarray, min_distance: float) -> np.ndarray:
    """Drop the path's end pixels that lie closer than ``min_distance`` to the region boundary."""
    deep = np.flatnonzero(distance[path[:, 0], path[:, 1]] >= min_distance)
    return path[deep[0]: deep[-1] + 1] if deep.size else path[:0]


def _wobble(path: np.ndarray, distance: np.ndarray, rng: np.random.Generator, stray: float = 0) -> np.ndarray:
    """A hand-drawn version of a pixel path: smoothed, then pushed sideways by a smooth random
    offset of up to a third of the local distance to the boundary plus ``stray`` pixels.
    (N, 2) float (row, col)."""
    points = ndimage.gaussian_filter1d(path.astype(float), sigma=2.0, axis=0, mode="nearest")
    if len(points) < 3:
        return points
    tangent = np.gradient(points, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    noise = ndimage.gaussian_filter1d(rng.normal(size=len(points)), sigma=max(3.0, len(points) / 6),
                                      mode="nearest")
    noise /= max(np.abs(noise).max(), 1e-9)
    reach = distance[path[:, 0], path[:, 1]] / 3 + stray / 2
    return points + normal * (noise * reach)[:, None]


def _draw_stroke(shape: tuple[int, int], points: np.ndarray, thickness: int) -> np.ndarray:
    """Rasterise a polyline of (row, col) points ``thickness`` pixels wide, round ends. Bool (H, W)."""
    canvas = Image.new("1", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [(float(c), float(r)) for r, c in approximate_polygon(points, tolerance=0.5)]
    half = (thickness - 1) / 2
    if len(xy) > 1:
        draw.line(xy, fill=1, width=thickness, joint="curve")
    for x, y in (xy[0], xy[-1]):
        draw.ellipse((x - half, y - half, x + half, y + half), fill=1)
    return np.asarray(canvas, dtype=bool)


def _region_strokes(mask: np.ndarray, rng: np.random.Generator, thickness: int, max_strokes: int,
                    stray: int = 0) -> np.ndarray:
    """The scribble pixels of one padded region mask: up to ``max_strokes`` strokes along the longest
    paths of its skeleton, or a dot at its deepest pixel when it is too small for a stroke. Large
    regions are skeletonised at a reduced resolution (longest side SKELETON_MAX_SIDE), which is
    plenty for a hand-drawn stroke.

    ``stray`` 0: the path's ends are trimmed away from the boundary and the strokes are clipped to
    the region. ``stray`` > 0 (the human style): the path runs to the skeleton's ends, the wobble
    reaches ``stray`` pixels further, and the strokes are clipped to within ``stray`` pixels of the
    region (the mask must be padded by more than ``stray`` + ``thickness`` pixels).
    """
    distance = ndimage.distance_transform_edt(mask)
    step = max(1, -(-max(mask.shape) // SKELETON_MAX_SIDE))
    skeleton = skeletonize(mask[::step, ::step])
    last_pixel = np.array(mask.shape) - 1
    drawn = np.zeros(mask.shape, bool)
    first_length = 0
    for stroke in range(max_strokes):
        coarse_path = _longest_path(skeleton)
        path = np.minimum(coarse_path * step + step // 2, last_pixel)
        core = path if stray else _trim_ends(path, distance, min((thickness + 1) / 2, 0.5 * distance.max()))
        if len(core) < max(2, first_length // 4):
            break
        first_length = first_length or len(core)
        drawn |= _draw_stroke(mask.shape, _wobble(core, distance, rng, stray), thickness)
        if stroke + 1 < max_strokes:
            reach = (thickness + distance[path[:, 0], path[:, 1]].max()) / step
            skeleton &= ~_discs(skeleton.shape, coarse_path, reach)
    if not drawn.any():
        deepest = np.array([np.unravel_index(distance.argmax(), distance.shape)])
        drawn = _discs(mask.shape, deepest, (thickness - 1) / 2)
    if not stray:
        return drawn & mask
    return drawn & (ndimage.distance_transform_edt(~mask) <= stray)


def class_regions(regions: Regions) -> Regions:
    """Regions of one class that touch (8-neighbours) merged into one: a class region holds every
    instance of its class that touches it (an occluded instance in two pieces stays one)."""
    region_map, count = regions.region_map, len(regions)
    everything, head, tail = slice(None), slice(1, None), slice(None, -1)
    links = []
    for one, other in (((everything, head), (everything, tail)), ((head, everything), (tail, everything)),
                       ((head, head), (tail, tail)), ((head, tail), (tail, head))):
        a, b = region_map[one], region_map[other]
        touching = (a > 0) & (b > 0) & (a != b)
        touching[touching] = regions.region_class[a[touching] - 1] == regions.region_class[b[touching] - 1]
        links.append(np.stack([a[touching], b[touching]], 1) - 1)
    pairs = np.unique(np.concatenate(links), axis=0)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    merged_count, merged = connected_components(graph, directed=False)
    lookup = np.concatenate([[0], merged + 1]).astype(np.int32)
    merged_class = np.zeros(merged_count, np.int32)
    merged_class[merged] = regions.region_class
    return Regions(lookup[region_map], merged_class)


def simulate_scribbles(regions: Regions, rng: np.random.Generator, thickness: int | None = None,
                       max_strokes: int = 1, style: str = "skeleton", stray: int | None = None) -> np.ndarray:
    """Scribbles ``thickness`` px wide (default ``default_thickness``) that follow the longest paths of
    a region's skeleton with a smooth random wobble; regions too small for a stroke get a dot.
    Returns (H, W) uint8, 255 elsewhere.

    ``style`` ``skeleton``: up to ``max_strokes`` strokes per region, ends trimmed, clipped to it.
    ``human``: up to ``max_strokes`` strokes per class region (:func:`class_regions`: one stroke
    runs through all the touching instances of a class) along its whole medial axis, allowed to
    stray up to ``stray`` px (default: the thickness) past its boundary. Stray pixels never
    overwrite another region's stroke inside that region.
    """
    if style not in SCRIBBLE_STYLES:
        raise ValueError(f"unknown scribble style '{style}'; expected one of {', '.join(SCRIBBLE_STYLES)}")
    thickness = thickness or default_thickness(regions.shape)
    stray = 0 if style == "skeleton" else (thickness if stray is None else stray)
    if style == "human":
        regions = class_regions(regions)
    margin = 1 + (stray + thickness if stray else 0)
    weak = np.full(regions.shape, IGNORE_INDEX, np.uint8)
    strokes = [(cls, bounds, mask, _region_strokes(mask, rng, thickness, max_strokes, stray))
               for cls, bounds, mask in regions.crops(margin)]
    for cls, bounds, _mask, drawn in strokes:
        _paste(weak, bounds, drawn, cls, margin)
    if stray:
        for cls, bounds, mask, drawn in strokes:
            _paste(weak, bounds, drawn & mask, cls, margin)
    return weak


def _polygon_fill(core: np.ndarray, tolerance: float) -> np.ndarray:
    """Fill the simplified outlines (skimage approximate_polygon) of a boolean mask's pieces."""
    filled = np.zeros(core.shape, bool)
    for contour in find_contours(core.astype(np.uint8), 0.5):
        outline = approximate_polygon(contour, tolerance=tolerance)
        rows, cols = polygon(outline[:, 0], outline[:, 1], shape=core.shape)
        filled[rows, cols] = True
    return filled


def simulate_coarse(regions: Regions, margin: float = 0.25) -> np.ndarray:
    """Coarse polygons (Cityscapes-coarse-like): each region shrunk by ``margin`` (pixels, or below 1
    a fraction of the region's largest distance to its boundary), its outline simplified to a
    polygon with tolerance margin/2 and filled, clipped to pixels at least margin/2 inside the region.
    Returns (H, W) uint8, 255 elsewhere (boundaries, small regions)."""
    weak = np.full(regions.shape, IGNORE_INDEX, np.uint8)
    for cls, bounds, mask in regions.crops():
        distance = ndimage.distance_transform_edt(mask)
        shrink = resolve_size(margin, distance.max())
        core = distance > shrink
        if core.any():
            filled = _polygon_fill(core, tolerance=shrink / 2)
            _paste(weak, bounds, filled & (distance > shrink / 2), cls)
    return weak


def simulate_boxes(regions: Regions, preset: ClassPreset, rng: np.random.Generator | None = None,
                   jitter: float = 0.0) -> Boxes:
    """One tight box per region (each instance; each piece of a class without instances), none for
    the preset's background class. ``jitter`` > 0 (needs ``rng``): each side moves by a uniform draw
    in +-``jitter`` times the box's width (left, right) or height (top, bottom), rounded to pixels
    and kept inside the image, as a hand-drawn box that is not pixel-tight."""
    boxes, classes = [], []
    for cls, (rows, cols) in zip(regions.region_class, regions.slices()):
        if preset.has_background and cls == 0:
            continue
        boxes.append((cols.start, rows.start, cols.stop - 1, rows.stop - 1))
        classes.append(int(cls))
    tight = np.asarray(boxes, np.float64).reshape(-1, 4)
    if jitter > 0 and len(tight):
        width, height = tight[:, 2] - tight[:, 0] + 1, tight[:, 3] - tight[:, 1] + 1
        moved = tight + np.rint(rng.uniform(-jitter, jitter, tight.shape) * np.stack([width, height] * 2, axis=1))
        x0, x1 = np.sort(np.clip(moved[:, [0, 2]], 0, regions.shape[1] - 1), axis=1).T
        y0, y1 = np.sort(np.clip(moved[:, [1, 3]], 0, regions.shape[0] - 1), axis=1).T
        tight = np.stack([x0, y0, x1, y1], axis=1)
    return Boxes(regions.shape, tight.astype(np.float32), np.asarray(classes, np.int32))


def simulate_weak(kind: str, regions: Regions, rng: np.random.Generator, preset: ClassPreset,
                  points_per_region: int = 1, radius: float = 0, click_depth: float = 0.5,
                  thickness: int | None = None, max_strokes: int = 1, scribble_style: str = "skeleton",
                  margin: float = 0.25, box_jitter: float = 0.0) -> np.ndarray | Boxes:
    """The weak label of ``kind`` (one of KINDS): an (H, W) uint8 map, or Boxes for ``boxes``.
    Each option applies to its own kind only (see the simulate_* functions)."""
    if kind == "points":
        return simulate_points(regions, rng, points_per_region, radius, click_depth)
    if kind == "scribbles":
        return simulate_scribbles(regions, rng, thickness, max_strokes, scribble_style)
    if kind == "coarse":
        return simulate_coarse(regions, margin)
    if kind == "boxes":
        return simulate_boxes(regions, preset, rng, box_jitter)
    raise ValueError(f"unknown kind '{kind}'; expected one of {', '.join(KINDS)}")


def labelled_fraction(weak: np.ndarray | Boxes) -> float:
    """The fraction of the image a weak label covers: labelled pixels (not 255) of a label map, or
    the pixels inside at least one box."""
    if isinstance(weak, Boxes):
        covered = np.zeros(weak.image_size, bool)
        for x0, y0, x1, y1 in weak.boxes.astype(int):
            covered[y0: y1 + 1, x0: x1 + 1] = True
        return float(covered.mean()) if covered.size else 0.0
    return float(np.mean(weak != IGNORE_INDEX)) if weak.size else 0.0


