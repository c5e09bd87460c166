"""Automatic masks: prompt a regular grid of points, keep the good masks (SAM's SamAutomaticMaskGenerator).

Each grid point is one positive click. A hypothesis is kept when its predicted IoU and its
stability score pass their thresholds; kept masks then go through box non-maximum suppression by
predicted IoU. The clicks are decoded in chunks (one decoder call per chunk where the backend
batches); only one chunk's masks are held unpacked at a time, the masks kept so far run-length coded,
so memory stays bounded however fine the grid.
"""

from __future__ import annotations

import numpy as np

from ..io.embeddings import Embedding
from .base import SamBackend
from .predict import decode_in_chunks

GRID_POINTS = 32
PRED_IOU_THRESH, STABILITY_THRESH, NMS_THRESH = 0.88, 0.95, 0.7
"""Automatic mode's defaults (segment-anything's automatic mask generator): an n x n grid of clicks;
masks kept when their predicted IoU exceeds PRED_IOU_THRESH and their stability reaches
STABILITY_THRESH; of two masks whose boxes overlap by more than NMS_THRESH IoU the lower-scored goes."""


def encode_runs(mask: np.ndarray) -> tuple[bool, np.ndarray]:
    """A bool mask as (value of its first pixel, int64 flat indices where the value flips): run-length code."""
    flat = mask.ravel()
    return bool(flat[0]), np.flatnonzero(flat[1:] != flat[:-1]) + 1


def decode_runs(first: bool, flips: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The bool mask of ``shape`` that ``encode_runs`` described."""
    bounds = np.concatenate([[0], flips, [int(np.prod(shape))]])
    values = (np.arange(len(bounds) - 1) % 2 == 1) ^ first
    return np.repeat(values, np.diff(bounds)).reshape(shape)


def point_grid(points_per_side: int, image_size: tuple[int, int]) -> np.ndarray:
    """(n*n, 2) float32 (x, y) points at the centres of an n x n grid of cells over an (H, W) image."""
    side = (np.arange(points_per_side, dtype=np.float64) + 0.5) / points_per_side
    xs, ys = np.meshgrid(side * image_size[1], side * image_size[0])
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(K, 4) float32 XYXY boxes of (K, H, W) bool masks, max coordinates inclusive; zeros for empty masks."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for index, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if len(rows):
            boxes[index] = (cols[0], rows[0], cols[-1], rows[-1])
    return boxes


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, highest score first
    (the box IoU of ``torchvision.ops.nms``)."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    while len(order):
        best, rest = order[0], order[1:]
        kept.append(int(best))
        width = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        height = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        intersection = width * height
        union = areas[best] + areas[rest] - intersection
        iou = np.where(union > 0, intersection / np.maximum(union, 1e-9), 0.0)
        order = rest[iou <= iou_threshold]
    return np.array(kept, np.int64)


def automatic_masks(backend: SamBackend, embedding: Embedding, points_per_side: int = GRID_POINTS,
                    multimask: bool = True, pred_iou_thresh: float = PRED_IOU_THRESH,
                    stability_thresh: float = STABILITY_THRESH, nms_thresh: float = NMS_THRESH) -> dict[str, np.ndarray]:
    """Masks of everything in the image, found from an n x n grid of clicks; the ``masks`` HDF5 datasets.

    ``multimask``: each click yields hypotheses 1-3 (SAM's multimask outputs), else hypothesis 0.
    Returns ``masks`` bool (K, 1, H, W) ordered by predicted IoU, ``iou_predictions`` and
    ``stability_scores`` float32 (K, 1), ``set_component`` and ``set_class`` int32 (K,) all -1.
    """
    hypotheses = slice(1, 4) if multimask else slice(0, 1)
    clicks = [(point[None], np.ones(1), None) for point in point_grid(points_per_side, embedding.original_size)]
    batch = backend.prompt_batch(clicks, embedding)
    encoded, boxes, ious, stabilities = [], [], [], []
    for _chunk, masks, iou, stability in decode_in_chunks(backend, embedding, batch, hypotheses):
        good = (iou > pred_iou_thresh) & (stability >= stability_thresh)
        kept = masks[good]
        encoded.extend(encode_runs(mask) for mask in kept)
        boxes.append(mask_boxes(kept))
        ious.append(iou[good])
        stabilities.append(stability[good])
    height, width = embedding.original_size
    if not encoded:
        kept_masks = np.zeros((0, 1, height, width), bool)
        kept_iou = kept_stability = np.zeros((0, 1), np.float32)
    else:
        iou_all, stability_all = np.concatenate(ious), np.concatenate(stabilities)
        kept = box_nms(np.concatenate(boxes), iou_all, nms_thresh)
        kept_masks = np.stack([decode_runs(*encoded[i], (height, width)) for i in kept])[:, None]
        kept_iou, kept_stability = iou_all[kept, None], stability_all[kept, None]
    unassigned = np.full(len(kept_masks), -1, np.int32)
    return {"masks": kept_masks, "iou_predictions": kept_iou.astype(np.float32),
            "stability_scores": kept_stability.astype(np.float32),
            "set_component": unassigned, "set_class": unassigned.copy()}
