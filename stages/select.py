"""SeSAM step 4: choose SAM mask hypotheses that agree with the weak label, merge them into a class map.

Inputs are the arrays of the ``masks``, ``prompts`` and ``components`` artifacts (FORMATS.md):
``masks`` bool (S, M, H, W), M hypotheses per prompt set (an array, or a
:class:`~stages.io.masks.MaskStack` that reads a set at a time: :func:`select_image` never holds a
large photo's whole stack); ``iou`` float32 (S, M), SAM's predicted
IoU; ``set_class`` / ``set_component`` int32 (S,); the weak label uint8 (H, W) (255 = unlabelled)
and its ``component_map`` int32 (H, W) (0 = none, k = component k). Strategies:

- ``sesam`` (:func:`select_sesam`): per prompt set, reject hypotheses that cover other classes'
  labelled pixels beyond a tolerance; the rest within ``tie_margin`` of the best coverage of the
  set's own component are candidates (for a boxes source: hypotheses mostly inside the box that
  cover a good part of it; they vote only inside their box). Candidates are settled jointly over
  all sets, so that the chosen masks of different classes overlap least and cover most (a click is
  covered by every hypothesis alike: this is what decides for clicks).
- ``jiang`` (:func:`select_fixed`): Jiang & Yang 2023, one fixed hypothesis index per set (theirs: 3).
- ``cam-merge`` (:func:`select_cam_merge`): Chen et al. 2023, automatic-mode masks given to the
  (foreground) class of a CAM pseudo-label map they lie in (over half of the mask) or cover (at
  least 85% of the class region); CAM pixels no mask claims keep their label.
- ``sesam`` with a dense reference (:func:`select_sesam_reference`, ``select --reference``): the
  components are those of a CAM pseudo-label (prompted at its CAM peaks) or a prediction; the
  reference guides the choice but does not overrule SAM.

All strategies merge the kept masks by score-weighted votes (:class:`VoteParams`, :func:`merge_votes`):
a pixel takes the class with the most votes when its share of all votes exceeds ``min_vote_share``;
labelled weak pixels keep their class (confidence 1); pixels with conflicting votes or none follow
the ``unclaimed`` rule (:func:`fill_unclaimed`: 255, background, or the nearest decided class).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from . import IGNORE_INDEX
from .io.boxes import pixel_boxes
from .io.components import read_components
from .errors import SesamInputError
from .io.images import read_label
from .presets import ClassPreset
from .io.coco import Instance
from .io.masks import flat_view, open_masks
from .records import Record, require

STRATEGIES = ("sesam", "jiang", "cam-merge")
UNCLAIMED = ("auto", "ignore", "background", "nearest")
"""What pixels that no kept mask and no weak label decides become: ``auto`` (the default: background
for presets that have a background class, else 255; a boxes source without a background class fills
its boxes, :func:`merge_kept`), 255, the background class, or the class of the nearest decided pixel
(see :func:`fill_unclaimed`; docs/SELECT.md has the measurements)."""
DEFAULT_UNCLAIMED = "auto"
JIANG_HYPOTHESIS = 3
"""Jiang & Yang's choice: SAM's third multimask output, index 3 (hypothesis 0 is the single-mask output)."""
CAM_MIN_INSIDE, CAM_MIN_COVER = 0.5, 0.85
"""cam-merge: a mask goes to a class holding more than CAM_MIN_INSIDE of it, or to the one class whose
region it covers at least CAM_MIN_COVER of (:func:`select_cam_merge`)."""
MERGE_BAND_PIXELS = 1 << 20
"""merge_votes decides the pixels a band of about this many at a time (whatever the photo's size)."""
CAM_ONLY_CONFIDENCE = 0.5
"""Confidence of cam-merge pixels that keep their CAM label (no SAM mask claimed them)."""


@dataclass(frozen=True)
class SesamParams:
    """The thresholds of the ``sesam`` strategy; fractions are in 0..1 (docs/SELECT.md says how they
    were chosen: on CamVid train).

    - ``other_tolerance``: reject a hypothesis when other classes' labelled pixels make up more than
      this fraction of the labelled pixels it covers (its own class's and other classes'); when every
      hypothesis of a set is rejected, the least mixed one is kept if its fraction is at most
      ``other_limit`` (a click's mask that holds one other click: 0.5).
    - ``tie_margin``: the remaining hypotheses whose coverage of their own component is within this
      of the best one are candidates (a click: every hypothesis holding it).
    - ``overlap_penalty``: candidates are settled jointly (:func:`settle_ties`): a pixel taken from
      another class's chosen mask costs this much more than a free pixel gains; ``settle_passes``
      times over all sets (0: each set keeps its candidate of highest predicted IoU).
    - ``box_min_inside`` / ``box_min_cover``: boxes source: a hypothesis needs at least this fraction
      of itself inside its box, and must cover at least this fraction of the box.
    - ``box_margin``: boxes source: masks vote (and boxes are filled) inside each box grown by this
      fraction of its width and height on every side (0: the boxes are tight; loose, hand-drawn
      boxes: 0.1).
    """

    other_tolerance: float = 0.2
    other_limit: float = 0.5
    tie_margin: float = 0.05
    overlap_penalty: float = 5.0
    settle_passes: int = 2
    box_min_inside: float = 0.8
    box_min_cover: float = 0.1
    box_margin: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VoteParams:
    """How kept masks are merged (every strategy).

    A mask votes for its class with weight predicted IoU / (mask area / image area) ** ``size_exponent``
    (smaller masks weigh more: where masks overlap, the smaller one is usually the more specific);
    a pixel takes the class with the most votes when its share of all votes exceeds
    ``min_vote_share``, else it is undecided.
    """

    min_vote_share: float = 0.5
    size_exponent: float = 0.25

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Selection:
    """The result of a selection strategy.

    - ``label``: uint8 (H, W) class map, 255 = no decision;
    - ``confidence``: float32 (H, W) in 0..1;
    - ``hypothesis_class``: int32 (S, M), the class each hypothesis was merged as, -1 = not kept;
    - ``set_box``: int (S, 4) XYXY (max inclusive) for a boxes source, the box each set's masks
      voted inside; None otherwise.
    """

    label: np.ndarray
    confidence: np.ndarray
    hypothesis_class: np.ndarray
    set_box: np.ndarray | None = None

    @property
    def kept(self) -> np.ndarray:
        """int32 (S,): the kept hypothesis of each prompt set (the first, if several), -1 = none."""
        taken = self.hypothesis_class >= 0
        return np.where(taken.any(axis=1), taken.argmax(axis=1), -1).astype(np.int32)


def boxes_weak_label(component_map: np.ndarray, background_class: int | None) -> np.ndarray:
    """The weak label a boxes source implies: ``background_class`` outside every box, 255 elsewhere
    (all 255 for a preset without a background class). ``component_map`` int32 (H, W) paints the
    boxes (0 = outside every box)."""
    weak = np.full(component_map.shape, IGNORE_INDEX, np.uint8)
    if background_class is not None:
        weak[component_map == 0] = background_class
    return weak


def box_window(box: np.ndarray) -> tuple[slice, slice]:
    """The (rows, columns) slices of an int XYXY box (max inclusive)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return np.s_[y0:y1 + 1, x0:x1 + 1]


def merge_votes(masks: np.ndarray, hypothesis_class: np.ndarray, scores: np.ndarray,
                votes: VoteParams = VoteParams(), set_box: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Merge kept hypotheses by votes (see :class:`VoteParams`).

    ``masks`` bool (S, M, H, W); ``hypothesis_class`` int32 (S, M), -1 = not kept; ``scores``
    float (S, M), SAM's predicted IoU; ``set_box`` int (S, 4) XYXY (max inclusive), optional: a
    set's masks vote only inside its box (a box label says its object lies there). Returns the
    winning class uint8 (H, W) (255 where undecided) and its confidence float32 (H, W): the
    winner's share of the votes times the highest predicted IoU among the masks covering the pixel,
    0 where undecided.
    """
    height, width = masks.shape[-2:]
    classes = np.unique(hypothesis_class[hypothesis_class >= 0])
    label = np.full((height, width), IGNORE_INDEX, np.uint8)
    confidence = np.zeros((height, width), np.float32)
    if classes.size == 0:
        return label, confidence
    tally = np.zeros((classes.size, height, width), np.float32)
    best_score = np.zeros((height, width), np.float32)
    for s, m in zip(*np.nonzero(hypothesis_class >= 0)):
        window = np.s_[:, :] if set_box is None else box_window(set_box[s])
        mask = masks[s, m][window]
        area_fraction = max(int(mask.sum()), 1) / (height * width)
        score = max(float(scores[s, m]), 1e-3)
        slot = int(np.searchsorted(classes, hypothesis_class[s, m]))
        votes_here, best_here = tally[slot][window], best_score[window]
        np.add(votes_here, score / area_fraction ** votes.size_exponent, out=votes_here, where=mask)
        np.maximum(best_here, np.float32(score), out=best_here, where=mask)
    rows = max(1, MERGE_BAND_PIXELS // width)  # decided a band at a time: a large photo's temporaries stay small
    for top in range(0, height, rows):
        band = slice(top, top + rows)
        total = tally[:, band].sum(axis=0)
        winner = tally[:, band].argmax(axis=0)
        best = np.take_along_axis(tally[:, band], winner[None], axis=0)[0]
        decided = (total > 0) & (best > votes.min_vote_share * total)
        label[band][decided] = classes[winner[decided]]
        confidence[band][decided] = best[decided] / total[decided] * best_score[band][decided]
    return label, confidence


def fill_unclaimed(label: np.ndarray, unclaimed: str = DEFAULT_UNCLAIMED,
                   background_class: int | None = None) -> np.ndarray:
    """``label`` (H, W) uint8 with its undecided (255) pixels filled by the ``unclaimed`` rule:
    ``ignore`` leaves them 255; ``background`` gives them ``background_class`` (which must be given);
    ``auto`` is ``background`` when a ``background_class`` is given, else ``ignore``; ``nearest``
    gives each the class of the nearest decided pixel (Euclidean). A map with no decided pixel stays
    as it is unless ``background`` is asked for by name: ``auto`` does not call a whole image
    background on no evidence."""
    if unclaimed not in UNCLAIMED:
        raise ValueError(f"unclaimed must be one of {', '.join(UNCLAIMED)}, not '{unclaimed}'")
    undecided = label == IGNORE_INDEX
    if undecided.all() and unclaimed != "background":
        return label
    if unclaimed == "auto":
        unclaimed = "ignore" if background_class is None else "background"
    if unclaimed == "ignore" or not undecided.any():
        return label
    if unclaimed == "background":
        if background_class is None:
            raise ValueError("unclaimed='background' needs a background class")
        return np.where(undecided, np.uint8(background_class), label).astype(np.uint8)
    rows, cols = ndimage.distance_transform_edt(undecided, return_distances=False, return_indices=True)
    return label[rows, cols]


def fill_in_boxes(label: np.ndarray, box: np.ndarray, box_class: np.ndarray) -> np.ndarray:
    """``label`` (H, W) uint8 with each undecided (255) pixel inside some of the boxes ``box`` int
    (K, 4) XYXY (max inclusive) given the class of the nearest decided pixel (Euclidean) among the
    classes ``box_class`` int (K,) whose boxes hold it; pixels outside every box stay 255. This is
    ``auto``'s rule for a boxes source without a background class: there every pixel of a box
    belongs to one of the classes boxed around it."""
    undecided = label == IGNORE_INDEX
    filled = label.copy()
    nearest = np.full(label.shape, np.inf, np.float32)
    for cls in np.unique(box_class):
        boxes = box[box_class == cls]
        left, top = boxes[:, 0].min(), boxes[:, 1].min()
        window = (slice(top, boxes[:, 3].max() + 1), slice(left, boxes[:, 2].max() + 1))
        decided = label[window] == cls  # votes of this class lie in its boxes, so in this window
        if not decided.any():
            continue
        inside = np.zeros(decided.shape, bool)
        for x0, y0, x1, y1 in boxes:
            inside[y0 - top:y1 - top + 1, x0 - left:x1 - left + 1] = True
        distance = ndimage.distance_transform_edt(~decided).astype(np.float32)
        closer = inside & undecided[window] & (distance < nearest[window])
        nearest[window][closer] = distance[closer]
        filled[window][closer] = cls
    return filled


def overlay_weak(label: np.ndarray, confidence: np.ndarray, weak_label: np.ndarray,
                 fill_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labelled pixels of ``weak_label`` (H, W) uint8 keep their class with confidence 1 over
    ``label`` / ``confidence``; undecided (255) pixels take ``fill_class`` when given."""
    if fill_class is not None:
        label = np.where(label == IGNORE_INDEX, np.uint8(fill_class), label)
    labelled = weak_label != IGNORE_INDEX
    label = np.where(labelled, weak_label, label).astype(np.uint8)
    confidence = np.where(labelled, np.float32(1), confidence).astype(np.float32)
    return label, confidence


def _check_shapes(masks: np.ndarray, iou: np.ndarray, set_class: np.ndarray, weak_label: np.ndarray) -> None:
    if masks.ndim != 4 or iou.shape != masks.shape[:2] or set_class.shape != masks.shape[:1]:
        raise ValueError(f"masks {masks.shape}, iou {iou.shape} and set_class {set_class.shape} "
                         "do not fit (S, M, H, W), (S, M), (S,)")
    if masks.shape[2:] != weak_label.shape:
        raise ValueError(f"masks are {masks.shape[3]}x{masks.shape[2]} (WxH) but the weak label is "
                         f"{weak_label.shape[1]}x{weak_label.shape[0]}")


def _tied(valid: np.ndarray, coverage: np.ndarray, tie_margin: float) -> np.ndarray:
    """bool (S, M): the ``valid`` hypotheses within ``tie_margin`` of their set's best ``coverage``."""
    best = np.where(valid, coverage, -np.inf).max(axis=1, keepdims=True)
    return valid & (coverage >= best - tie_margin)


def _candidates_in_boxes(masks: np.ndarray, set_box: np.ndarray, params: SesamParams) -> np.ndarray:
    """The box rule of :func:`choose_sesam`: mostly inside the box (``set_box`` int (S, 4), see
    :func:`set_boxes`), covering a good part of it, within ``tie_margin`` of the best box coverage.
    ``masks`` (S, M, H, W) are read a set at a time. bool (S, M)."""
    area = np.zeros(masks.shape[:2], np.int64)
    inside = np.zeros(masks.shape[:2], np.float64)
    box_area = ((set_box[:, 2] - set_box[:, 0] + 1) * (set_box[:, 3] - set_box[:, 1] + 1)).astype(np.float64)
    for s in range(masks.shape[0]):
        planes = masks[s]
        area[s] = planes.reshape(planes.shape[0], -1).sum(axis=1)
        inside[s] = planes[(slice(None), *box_window(set_box[s]))].sum(axis=(1, 2))
    valid = ((area > 0) & (inside >= params.box_min_inside * area)
             & (inside >= params.box_min_cover * box_area[:, None]))
    return _tied(valid, inside / box_area[:, None], params.tie_margin)


def _candidates_from_labels(flat_masks: np.ndarray, set_class: np.ndarray, set_component: np.ndarray,
                            weak_label: np.ndarray, component_map: np.ndarray, params: SesamParams) -> np.ndarray:
    """The label rule of :func:`choose_sesam`, bool (S, M): hypotheses whose covered labelled pixels
    are at most ``other_tolerance`` other classes' (else the least mixed ones, up to ``other_limit``),
    within ``tie_margin`` of the best coverage of the set's own component. ``flat_masks`` (S, M, H*W)
    are read a set at a time."""
    count, hypotheses = flat_masks.shape[:2]
    components = int(component_map.max())
    flat_components = component_map.ravel()
    order = np.argsort(flat_components, kind="stable")
    starts = np.searchsorted(flat_components[order], np.arange(components + 2))
    flat_weak = weak_label.ravel()
    labelled = np.flatnonzero(flat_weak != IGNORE_INDEX)
    labelled = labelled[np.argsort(flat_weak[labelled], kind="stable")]  # grouped by class
    labelled_classes, class_starts = np.unique(flat_weak[labelled], return_index=True)
    class_runs = list(zip(class_starts, np.append(class_starts[1:], labelled.size)))
    area = np.zeros((count, hypotheses), np.int64)
    coverage = np.zeros((count, hypotheses), np.float64)
    other_share = np.zeros((count, hypotheses), np.float64)  # no labelled pixel: none of another class
    for s in range(count):
        planes = flat_masks[s]
        area[s] = planes.sum(axis=1)
        own = order[starts[set_component[s]]:starts[set_component[s] + 1]]
        coverage[s] = planes[:, own].sum(axis=1) / max(len(own), 1)
        if not class_runs:
            continue
        covered = planes[:, labelled]
        per_class = np.stack([np.count_nonzero(covered[:, start:stop], axis=1) for start, stop in class_runs],
                             axis=1)  # (M, classes)
        same = per_class[:, labelled_classes == set_class[s]].sum(axis=1)
        other = per_class.sum(axis=1) - same
        other_share[s] = other / np.maximum(same + other, 1)
    usable = area > 0
    valid = usable & (other_share <= params.other_tolerance)
    least = np.where(usable, other_share, np.inf).min(axis=1, keepdims=True)
    fallback = ~valid.any(axis=1, keepdims=True) & (least <= params.other_limit)
    valid |= fallback & usable & (other_share == least)
    return _tied(valid, coverage, params.tie_margin)


def settle_ties(flat_masks: np.ndarray, candidates: np.ndarray, iou: np.ndarray, set_class: np.ndarray,
                overlap_penalty: float, passes: int = 2) -> np.ndarray:
    """One hypothesis per prompt set among ``candidates`` (bool (S, M)), chosen jointly: int32 (S,),
    -1 where a set has no candidate.

    Each set starts from its candidate of highest predicted IoU ``iou`` (S, M). Then, ``passes``
    times, every set with several candidates takes the one that best fits the other sets' choices:
    +1 for each pixel no class covers yet, -(1 + ``overlap_penalty``) for each pixel it takes from
    the one other class covering it, -``overlap_penalty`` where several already conflict (pixels its
    own class covers count 0). So masks of different classes tile the image rather than overlap.
    ``flat_masks`` bool (S, M, P).
    """
    kept = np.where(candidates, iou, -np.inf).argmax(axis=1).astype(np.int32)
    kept[~candidates.any(axis=1)] = -1
    open_sets = np.flatnonzero(candidates.sum(axis=1) > 1)
    if open_sets.size == 0:
        return kept
    classes, slot = np.unique(set_class, return_inverse=True)
    # counts in the smallest dtype that holds them: a class's sets per pixel, classes per pixel
    cover = np.zeros((classes.size, flat_masks.shape[2]), np.min_scalar_type(len(set_class)))
    for s in np.flatnonzero(kept >= 0):
        cover[slot[s]] += flat_masks[s, kept[s]]
    covering = (cover > 0).sum(axis=0, dtype=np.min_scalar_type(classes.size))
    for _ in range(passes):
        for s in open_sets:
            own = cover[slot[s]]
            pixels = np.flatnonzero(flat_masks[s, kept[s]])
            own[pixels] -= 1
            covering[pixels[own[pixels] == 0]] -= 1
            gains = np.full(flat_masks.shape[1], -np.inf)
            for m in np.flatnonzero(candidates[s]):
                free = np.flatnonzero(flat_masks[s, m])
                free = free[own[free] == 0]
                others = covering[free]
                gains[m] = (np.count_nonzero(others == 0) - (1 + overlap_penalty) * np.count_nonzero(others == 1)
                            - overlap_penalty * np.count_nonzero(others > 1))
            kept[s] = int(np.argmax(gains))
            pixels = np.flatnonzero(flat_masks[s, kept[s]])
            covering[pixels[own[pixels] == 0]] += 1
            own[pixels] += 1
    return kept


def choose_sesam(masks: np.ndarray, iou: np.ndarray, set_class: np.ndarray, set_component: np.ndarray,
                 weak_label: np.ndarray, component_map: np.ndarray, params: SesamParams = SesamParams(),
                 component_box: np.ndarray | None = None) -> np.ndarray:
    """The hypothesis the ``sesam`` rule keeps for each prompt set: int32 (S,), -1 = none.

    Candidates agree with the weak label (the label rule, or for a boxes source the box rule); ties
    between candidates are settled jointly over all sets (:func:`settle_ties`).
    ``component_box`` float (K, 4) XYXY (max inclusive) marks a boxes source: component k is the
    box, not its pixels in ``component_map``, and the box rules apply instead of the label rules.
    """
    _check_shapes(masks, iou, set_class, weak_label)
    flat_masks = flat_view(masks)  # also for S = 0 (no prompt set); a MaskStack is read a set at a time
    if component_box is not None:
        candidates = _candidates_in_boxes(masks, set_boxes(component_box, set_component, masks.shape[-2:]), params)
    else:
        candidates = _candidates_from_labels(flat_masks, set_class, set_component, weak_label, component_map, params)
    return settle_ties(flat_masks, candidates, iou, set_class, params.overlap_penalty, params.settle_passes)


def kept_classes(kept: np.ndarray, set_class: np.ndarray, hypotheses: int) -> np.ndarray:
    """(S, M) int32 hypothesis classes from ``kept`` (S,) hypothesis indices (-1 = none): the set's
    class at its kept hypothesis, -1 elsewhere (the input of :func:`merge_votes`)."""
    hypothesis_class = np.full((kept.shape[0], hypotheses), -1, np.int32)
    rows = np.flatnonzero(kept >= 0)
    hypothesis_class[rows, kept[rows]] = set_class[rows]
    return hypothesis_class


def set_boxes(component_box: np.ndarray, set_component: np.ndarray, shape: tuple[int, int],
              margin: float = 0.0) -> np.ndarray:
    """int64 (S, 4) XYXY (max inclusive): each prompt set's box, from ``component_box`` float (K, 4)
    and ``set_component`` (S,) (1-based), rounded, grown on every side by ``margin`` times its width
    (left, right) or height (top, bottom), rounded up, and kept inside an image of ``shape`` (H, W)."""
    boxes = pixel_boxes(component_box, shape)[np.asarray(set_component, np.int64) - 1]
    size = np.tile(boxes[:, 2:] - boxes[:, :2] + 1, 2)
    return pixel_boxes(boxes + np.ceil(margin * size).astype(np.int64) * np.array([-1, -1, 1, 1]), shape)


def merge_kept(masks: np.ndarray, iou: np.ndarray, set_class: np.ndarray, kept: np.ndarray,
               weak_label: np.ndarray, votes: VoteParams = VoteParams(), unclaimed: str = DEFAULT_UNCLAIMED,
               background_class: int | None = None, set_box: np.ndarray | None = None) -> Selection:
    """The pseudo-label of the hypotheses ``kept`` (S,) int32 (-1 = none): merged by votes
    (:func:`merge_votes`; with ``set_box``, a boxes source's masks vote inside their boxes),
    labelled weak pixels on top, undecided pixels by ``unclaimed`` (:func:`fill_unclaimed`). ``auto``
    for a boxes source without a background class: every pixel of a box belongs to a boxed class, so
    undecided pixels take the votes of all hypotheses of the sets (the weaker evidence of SAM's other
    guesses, inside their boxes), then :func:`fill_in_boxes`; confidence stays 0 there."""
    hypothesis_class = kept_classes(kept, set_class, masks.shape[1])
    label, confidence = merge_votes(masks, hypothesis_class, iou, votes, set_box)
    label, confidence = overlay_weak(label, confidence, weak_label)
    if set_box is not None and unclaimed == "auto" and background_class is None and len(set_box):
        every_hypothesis = np.repeat(set_class[:, None].astype(np.int32), masks.shape[1], axis=1)
        weaker, _ = merge_votes(masks, every_hypothesis, iou, votes, set_box)
        label = fill_in_boxes(np.where(label == IGNORE_INDEX, weaker, label), set_box, set_class)
    return Selection(fill_unclaimed(label, unclaimed, background_class), confidence, hypothesis_class, set_box)


def select_sesam(masks: np.ndarray, iou: np.ndarray, set_class: np.ndarray, set_component: np.ndarray,
                 weak_label: np.ndarray, component_map: np.ndarray, params: SesamParams = SesamParams(),
                 component_box: np.ndarray | None = None, unclaimed: str = DEFAULT_UNCLAIMED,
                 background_class: int | None = None, votes: VoteParams = VoteParams()) -> Selection:
    """The ``sesam`` strategy: :func:`choose_sesam`, then merge by votes; labelled weak pixels keep
    their class; undecided pixels follow ``unclaimed`` (:func:`fill_unclaimed`).

    ``refine`` calls this with a network prediction as the (dense) weak label.
    """
    kept = choose_sesam(masks, iou, set_class, set_component, weak_label, component_map, params, component_box)
    boxes = (None if component_box is None
             else set_boxes(component_box, set_component, weak_label.shape, params.box_margin))
    return merge_kept(masks, iou, set_class, kept, weak_label, votes, unclaimed, background_class, boxes)


def select_fixed(masks: np.ndarray, iou: np.ndarray, set_class: np.ndarray, weak_label: np.ndarray,
                 hypothesis: int = JIANG_HYPOTHESIS, unclaimed: str = DEFAULT_UNCLAIMED,
                 background_class: int | None = None, votes: VoteParams = VoteParams()) -> Selection:
    """Jiang & Yang's rule: hypothesis ``hypothesis`` of every prompt set, merged per class by votes
    (with ``hypothesis=0`` and centroid prompts: the naive baseline)."""
    _check_shapes(masks, iou, set_class, weak_label)
    if not 0 <= hypothesis < masks.shape[1]:
        raise ValueError(f"hypothesis {hypothesis} does not exist: the masks have {masks.shape[1]} per prompt set")
    kept = np.full(masks.shape[0], hypothesis, np.int32)
    return merge_kept(masks, iou, set_class, kept, weak_label, votes, unclaimed, background_class)


def _check_cam_shapes(masks: np.ndarray, iou: np.ndarray, cam: np.ndarray) -> None:
    if masks.ndim != 4 or iou.shape != masks.shape[:2] or masks.shape[2:] != cam.shape:
        raise ValueError(f"masks {masks.shape}, iou {iou.shape} and cam {cam.shape} do not fit "
                         "(S, M, H, W), (S, M), (H, W)")


def select_cam_merge(masks: np.ndarray, iou: np.ndarray, cam: np.ndarray, min_inside: float = CAM_MIN_INSIDE,
                     min_cover: float = CAM_MIN_COVER, background_class: int | None = None,
                     votes: VoteParams = VoteParams()) -> Selection:
    """Chen et al.'s merge of automatic-mode masks with a CAM pseudo-label map ``cam`` uint8 (H, W).

    Every hypothesis of every set is a candidate. Its class is the CAM class (other than
    ``background_class``) that holds more than ``min_inside`` of its pixels; else the one class whose
    CAM region (all its pixels) it covers at least ``min_cover`` of (none when it covers several:
    it spans several objects). Assigned masks are merged by votes; pixels no mask decides keep their
    CAM label, with confidence ``CAM_ONLY_CONFIDENCE``.
    """
    _check_cam_shapes(masks, iou, cam)
    count, hypotheses = masks.shape[:2]
    flat_cam = cam.ravel().astype(np.intp)
    eligible = np.ones(256, bool)
    eligible[IGNORE_INDEX] = False
    if background_class is not None:
        eligible[background_class] = False
    region_area = np.where(eligible, np.bincount(flat_cam, minlength=256), 0)
    hypothesis_class = np.full((count, hypotheses), -1, np.int32)
    for s in range(count):
        for m in range(hypotheses):
            pixels = flat_cam[masks[s, m].ravel()]
            if pixels.size == 0:
                continue
            overlap = np.where(eligible, np.bincount(pixels, minlength=256), 0)
            covering = np.flatnonzero((region_area > 0) & (overlap >= min_cover * region_area))
            if overlap.max() > min_inside * pixels.size:
                hypothesis_class[s, m] = int(overlap.argmax())
            elif covering.size == 1:
                hypothesis_class[s, m] = int(covering[0])
    label, confidence = keep_reference(*merge_votes(masks, hypothesis_class, iou, votes), cam)
    return Selection(label, confidence, hypothesis_class)


def keep_reference(label: np.ndarray, confidence: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``label`` leaves undecided (255) take the class of ``reference`` (H, W) uint8, with
    confidence ``CAM_ONLY_CONFIDENCE`` where the reference labels them."""
    undecided = label == IGNORE_INDEX
    label = np.where(undecided, reference, label).astype(np.uint8)
    confidence = np.where(undecided & (reference != IGNORE_INDEX), np.float32(CAM_ONLY_CONFIDENCE),
                          confidence).astype(np.float32)
    return label, confidence


def select_sesam_reference(masks: np.ndarray, iou: np.ndarray, set_class: np.ndarray, set_component: np.ndarray,
                           reference: np.ndarray, component_map: np.ndarray, params: SesamParams = SesamParams(),
                           unclaimed: str = DEFAULT_UNCLAIMED, background_class: int | None = None,
                           votes: VoteParams = VoteParams()) -> Selection:
    """The ``sesam`` rule with a dense *reference* label uint8 (H, W) (a CAM pseudo-label, a network
    prediction) in the place of the weak label; ``component_map`` holds its components. Hypotheses
    are chosen as :func:`choose_sesam` chooses them, but the reference is no annotation: it does not
    overrule the merged masks; only the pixels they leave undecided keep its class
    (:func:`keep_reference`), and the ``unclaimed`` rule (:func:`fill_unclaimed`) where it has none either."""
    kept = choose_sesam(masks, iou, set_class, set_component, reference, component_map, params)
    hypothesis_class = kept_classes(kept, set_class, masks.shape[1])
    label, confidence = keep_reference(*merge_votes(masks, hypothesis_class, iou, votes), reference)
    return Selection(fill_unclaimed(label, unclaimed, background_class), confidence, hypothesis_class)


def instances(masks: np.ndarray, iou: np.ndarray, selection: Selection, set_component: np.ndarray,
              background_class: int | None = None) -> list[Instance]:
    """The kept masks as objects: the union of the kept hypotheses of the prompt sets of one
    component (``set_component`` >= 1), or each kept hypothesis on its own (automatic mode, -1),
    each inside its box for a boxes source (``selection.set_box``, as they voted). Hypotheses kept as
    ``background_class`` are left out."""
    keep = selection.hypothesis_class >= 0
    if background_class is not None:
        keep &= selection.hypothesis_class != background_class
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for s, m in zip(*np.nonzero(keep)):
        cls = int(selection.hypothesis_class[s, m])
        key = (int(set_component[s]), cls) if set_component[s] >= 1 else (-1 - len(groups), cls)
        groups.setdefault(key, []).append((int(s), int(m)))
    found = []
    for (_, cls), members in groups.items():
        mask = np.zeros(masks.shape[2:], bool)
        for s, m in members:
            window = np.s_[:, :] if selection.set_box is None else box_window(selection.set_box[s])
            mask[window] |= masks[s, m][window]
        found.append(Instance(mask, cls, float(np.mean([iou[s, m] for s, m in members]))))
    return found


def background_class(preset: ClassPreset) -> int | None:
    """The preset's background class (0) where it has one, else None."""
    return 0 if preset.has_background else None


@dataclass(frozen=True)
class SelectParams:
    """Everything that decides one image's pseudo-label: the strategy and its thresholds.

    ``strategy`` is one of ``STRATEGIES``; ``sesam`` / ``votes`` as :class:`SesamParams` /
    :class:`VoteParams`; ``hypothesis`` the index ``jiang`` keeps; ``cam_inside`` / ``cam_cover`` the
    ``cam-merge`` thresholds; ``unclaimed`` as :func:`fill_unclaimed` (not for ``cam-merge``);
    ``reference``: ``sesam`` with a dense reference (:func:`select_sesam_reference`).
    """

    strategy: str = "sesam"
    sesam: SesamParams = SesamParams()
    votes: VoteParams = VoteParams()
    hypothesis: int = JIANG_HYPOTHESIS
    cam_inside: float = CAM_MIN_INSIDE
    cam_cover: float = CAM_MIN_COVER
    unclaimed: str = DEFAULT_UNCLAIMED
    reference: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not '{self.strategy}'")
        if self.reference and self.strategy != "sesam":
            raise ValueError("a reference applies to the sesam strategy")

    def as_dict(self, preset: ClassPreset) -> dict[str, Any]:
        """The provenance parameters: only what ``strategy`` uses (they decide up-to-dateness)."""
        chosen: dict[str, Any] = {"strategy": self.strategy, "classes": preset.name, **self.votes.as_dict()}
        if self.strategy == "sesam":
            chosen.update(self.sesam.as_dict())
            if self.reference:
                chosen["reference"] = True
        elif self.strategy == "jiang":
            chosen["hypothesis"] = self.hypothesis
        else:
            chosen.update(cam_inside=self.cam_inside, cam_cover=self.cam_cover)
        if self.strategy != "cam-merge":
            chosen["unclaimed"] = self.unclaimed
        return chosen


def select_image(record: Record, preset: ClassPreset,
                 params: SelectParams = SelectParams()) -> tuple[Selection, dict[str, np.ndarray]]:
    """The pseudo-label of one record: ``params.strategy`` run on its 'masks' (sam-predict) and its
    'components' (decompose; sesam, jiang) or 'cam' (cam-merge). Returns the selection and the masks
    datasets (:func:`~stages.io.masks.open_masks`: ``masks`` is a MaskStack, read a set at a time);
    SesamInputError names a missing key or a file that does not fit."""
    require(record, "masks")
    masks = open_masks(record["masks"])
    background = background_class(preset)
    size = masks["masks"].shape[2:]
    if params.strategy == "cam-merge":
        require(record, "cam")
        cam = read_label(record["cam"], preset, expected_size=size)
        return select_cam_merge(masks["masks"], masks["iou_predictions"], cam, params.cam_inside,
                                params.cam_cover, background, params.votes), masks
    require(record, "components")
    components = read_components(record["components"])
    if components.image_size != size:
        raise SesamInputError(record["masks"], f"masks are {size[1]}x{size[0]} (WxH) but the components "
                                               f"{record['components']} are {components.image_size[1]}x"
                                               f"{components.image_size[0]}")
    if masks["set_component"].size and (masks["set_component"].min() < 1
                                        or masks["set_component"].max() > components.count):
        raise SesamInputError(record["masks"], f"prompt sets name components outside 1..{components.count} of "
                                               f"{record['components']} (automatic-mode masks need "
                                               "--strategy cam-merge)")
    weak = (boxes_weak_label(components.component_map, background) if components.source == "boxes"
            else components.weak_label)
    fill = {"unclaimed": params.unclaimed, "background_class": background, "votes": params.votes}
    if params.strategy == "jiang":
        if params.hypothesis >= masks["masks"].shape[1]:
            raise SesamInputError(record["masks"], f"has {masks['masks'].shape[1]} hypotheses per prompt set, no "
                                                   f"index {params.hypothesis}; run sam-predict with multimask output")
        return select_fixed(masks["masks"], masks["iou_predictions"], masks["set_class"], weak, params.hypothesis,
                            **fill), masks
    if params.reference:
        return select_sesam_reference(masks["masks"], masks["iou_predictions"], masks["set_class"],
                                      masks["set_component"], weak, components.component_map, params.sesam,
                                      **fill), masks
    boxes = components.component_box if components.source == "boxes" else None
    return select_sesam(masks["masks"], masks["iou_predictions"], masks["set_class"], masks["set_component"],
                        weak, components.component_map, params.sesam, boxes, **fill), masks
