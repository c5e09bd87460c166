"""How kept mask hypotheses become one class map: score-weighted votes, the weak label on top, and the
``unclaimed`` rule for what neither decides (every selection strategy merges this way).

Shapes: ``masks`` bool (S, M, H, W) (an array, or a :class:`~stages.io.masks.MaskStack` read a set
at a time); ``iou`` / ``scores`` float (S, M), SAM's predicted IoU; ``hypothesis_class`` int32
(S, M), -1 = not kept; label maps uint8 (H, W), 255 = undecided; boxes int XYXY, max inclusive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .. import IGNORE_INDEX
from ..io.boxes import pixel_boxes

UNCLAIMED = ("auto", "ignore", "background", "nearest")
"""What pixels that no kept mask and no weak label decides become: ``auto`` (the default: background
for presets that have a background class, else 255; a boxes source without a background class fills
its boxes, :func:`merge_kept`), 255, the background class, or the class of the nearest decided pixel
(see :func:`fill_unclaimed`; docs/SELECT.md has the measurements)."""
DEFAULT_UNCLAIMED = "auto"
MERGE_BAND_PIXELS = 1 << 20
"""merge_votes decides the pixels a band of about this many at a time (whatever the photo's size)."""
CAM_ONLY_CONFIDENCE = 0.5
"""Confidence of cam-merge pixels that keep their CAM label (no SAM mask claimed them)."""


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


def keep_reference(label: np.ndarray, confidence: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``label`` leaves undecided (255) take the class of ``reference`` (H, W) uint8, with
    confidence ``CAM_ONLY_CONFIDENCE`` where the reference labels them."""
    undecided = label == IGNORE_INDEX
    label = np.where(undecided, reference, label).astype(np.uint8)
    confidence = np.where(undecided & (reference != IGNORE_INDEX), np.float32(CAM_ONLY_CONFIDENCE),
                          confidence).astype(np.float32)
    return label, confidence
