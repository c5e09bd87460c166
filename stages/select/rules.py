"""The selection rules: which of SAM's mask hypotheses each prompt set keeps (``sesam``: agreement with
the weak label, settled jointly; ``jiang``: a fixed index; ``cam-merge``: Chen et al.'s assignment to a
CAM map), each followed by the vote merge of :mod:`stages.select.merge`.

Shapes: ``masks`` bool (S, M, H, W) (an array, or a :class:`~stages.io.masks.MaskStack` read a set
at a time); ``iou`` float32 (S, M); ``set_class`` / ``set_component`` int32 (S,) (components
1-based); ``weak_label`` uint8 (H, W) (255 = unlabelled) and its ``component_map`` int32 (H, W)
(0 = none, k = component k).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import IGNORE_INDEX
from ..io.masks import flat_view
from .merge import (DEFAULT_UNCLAIMED, Selection, VoteParams, box_window, fill_unclaimed, keep_reference, kept_classes,
                    merge_kept, merge_votes, set_boxes)

JIANG_HYPOTHESIS = 3
"""Jiang & Yang's choice: SAM's third multimask output, index 3 (hypothesis 0 is the single-mask output)."""
CAM_MIN_INSIDE, CAM_MIN_COVER = 0.5, 0.85
"""cam-merge: a mask goes to a class holding more than CAM_MIN_INSIDE of it, or to the one class whose
region it covers at least CAM_MIN_COVER of (:func:`select_cam_merge`)."""


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
