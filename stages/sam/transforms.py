"""Geometry and pixel transforms shared by every SAM backend, as in segment-anything's predictor.

SAM sees an image resized so that its longest side is ``long_side`` (1024) pixels, normalised with
the ImageNet pixel mean/std, and padded bottom/right to a ``long_side`` square. Prompts move into that
resized frame; the decoder's low-resolution mask logits (256x256 for the padded square) are upscaled
back to the original image as ``Sam.postprocess_masks`` does (bilinear to the padded square, crop the
padding, bilinear to the original size; half-pixel centres, ``align_corners=False``).

Points are (x, y) = (column, row); sizes are (H, W).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
LONG_SIDE = 1024


def resized_size(original_size: tuple[int, int], long_side: int = LONG_SIDE) -> tuple[int, int]:
    """(h, w) of an (H, W) image resized so that its longest side is ``long_side`` (SAM's rounding)."""
    height, width = original_size
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def preprocess_image(image: np.ndarray, long_side: int = LONG_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """The encoder input for an (H, W, 3) uint8 RGB image: (1, 3, L, L) float32 and the resized (h, w).

    Resized with PIL bilinear (as segment-anything's ``ResizeLongestSide``), normalised, zero-padded.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    input_size = resized_size(image.shape[:2], long_side)
    resized = np.asarray(Image.fromarray(image).resize(input_size[::-1], Image.BILINEAR), np.float32)
    tensor = np.zeros((1, 3, long_side, long_side), np.float32)
    tensor[0, :, : input_size[0], : input_size[1]] = ((resized - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return tensor, input_size


def to_input_frame(points: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]) -> np.ndarray:
    """(N, 2) (x, y) points of the original image moved into the resized frame (float32)."""
    scale = np.array([input_size[1] / original_size[1], input_size[0] / original_size[0]], np.float32)
    return np.asarray(points, np.float32).reshape(-1, 2) * scale


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) weights of 1-D bilinear resampling with half-pixel centres (align_corners=False)."""
    source = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    source = np.maximum(source, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    weight_upper = source - lower
    matrix = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lower), 1.0 - weight_upper)
    np.add.at(matrix, (rows, upper), weight_upper)
    return matrix


@functools.lru_cache(maxsize=32)
def upscale_taps(low_res: int, cropped: int, original: int, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear low_res -> long_side, keep the first ``cropped``, bilinear -> original, as one map:
    for each of the ``original`` outputs, the (at most K) low-res inputs it reads, (original, K) int64,
    and their weights, (original, K) float32."""
    matrix = _bilinear_matrix(cropped, original) @ _bilinear_matrix(low_res, long_side)[:cropped]
    taps = int(np.count_nonzero(matrix, axis=1).max())
    indices = np.argsort(matrix == 0, axis=1, kind="stable")[:, :taps]
    return indices, np.take_along_axis(matrix, indices, axis=1).astype(np.float32)


def upscale_logits(low_res_logits: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int],
                   long_side: int = LONG_SIDE) -> np.ndarray:
    """(M, h, w) low-res mask logits of the padded square -> (M, H, W) float32 logits of the original image.

    The two bilinear resamplings and the crop of ``Sam.postprocess_masks`` are separable linear maps
    in which each output reads at most a few inputs: applied here as those few taps on the rows, then
    on the columns.
    """
    logits = np.asarray(low_res_logits, np.float32)
    row_index, row_weight = upscale_taps(logits.shape[-2], input_size[0], original_size[0], long_side)
    col_index, col_weight = upscale_taps(logits.shape[-1], input_size[1], original_size[1], long_side)
    columns_first = np.ascontiguousarray(_apply_taps(logits, row_index, row_weight).transpose(0, 2, 1))
    return np.ascontiguousarray(_apply_taps(columns_first, col_index, col_weight).transpose(0, 2, 1))


def _apply_taps(array: np.ndarray, index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(M, out, C) float32: the sum over k of ``weight[:, k]`` times the rows ``index[:, k]`` of
    ``array`` (M, in, C), accumulated in place (two output-sized buffers, whatever the tap count)."""
    total = np.zeros((array.shape[0], index.shape[0], array.shape[2]), np.float32)
    term = np.empty_like(total)
    for k in range(index.shape[1]):
        np.take(array, index[:, k], axis=1, out=term, mode="clip")  # indices are in range; 'raise' would buffer
        term *= weight[:, k, None]
        total += term
    return total


def stability_scores(logits: np.ndarray, threshold: float = 0.0, offset: float = 1.0) -> np.ndarray:
    """(M,) float32 stability of (M, H, W) mask logits: IoU of the masks at threshold +/- offset.

    As segment-anything's ``calculate_stability_score``; a mask empty at the lower threshold scores 0.
    """
    flat = np.asarray(logits).reshape(len(logits), -1)
    intersections = np.count_nonzero(flat > threshold + offset, axis=1)
    unions = np.count_nonzero(flat > threshold - offset, axis=1)
    return np.where(unions > 0, intersections / np.maximum(unions, 1), 0.0).astype(np.float32)
