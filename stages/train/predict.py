"""Dense prediction with a trained segmentation network: whole image or sliding window.

Photos are (H, W, 3) uint8 RGB. Results are per-pixel class probabilities (K, H, W) float32, or a
label map (H, W) uint8 of class indices with the confidence (H, W) float32 = the winning
probability (stored by :func:`stages.io.images.write_confidence`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .data import image_to_tensor


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window offsets covering ``length``: every ``stride``, the last one flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


@torch.no_grad()
def predict_probabilities(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu",
                          window: int | None = None, stride: int | None = None, batch_size: int = 4,
                          ) -> np.ndarray:
    """Softmax probabilities (K, H, W) float32 of ``model`` (in eval mode) on an (H, W, 3) uint8 photo.

    ``window`` None runs the whole image at once; otherwise ``window``-pixel squares every ``stride``
    pixels (default two thirds of the window) are predicted ``batch_size`` at a time and their
    probabilities averaged where they overlap. Images smaller than a window are padded with the mean
    colour for the prediction and cropped back.
    """
    device = torch.device(device)
    tensor = image_to_tensor(image).to(device)
    height, width = tensor.shape[1:]
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda")
    if window is None:
        with autocast:
            logits = model(tensor[None])["out"][0]
        return logits.float().softmax(0).cpu().numpy()
    stride = stride or max(1, math.ceil(window * 2 / 3))
    padded = torch.nn.functional.pad(tensor, (0, max(window - width, 0), 0, max(window - height, 0)))
    boxes = [(top, left) for top in _window_starts(padded.shape[1], window, stride)
             for left in _window_starts(padded.shape[2], window, stride)]
    total = None
    counts = torch.zeros(padded.shape[1:], device=device)
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first:first + batch_size]
        crops = torch.stack([padded[:, t:t + window, l:l + window] for t, l in chunk])
        with autocast:
            probabilities = model(crops)["out"].float().softmax(1)
        if total is None:
            total = torch.zeros((probabilities.shape[1],) + padded.shape[1:], device=device)
        for (top, left), probability in zip(chunk, probabilities):
            total[:, top:top + window, left:left + window] += probability
            counts[top:top + window, left:left + window] += 1
    return (total / counts)[:, :height, :width].cpu().numpy()


def predict_label(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu",
                  window: int | None = None, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The arg-max label map (H, W) uint8 and its confidence (H, W) float32 in [0, 1]."""
    probabilities = predict_probabilities(model, image, device, window, stride)
    return probabilities.argmax(0).astype(np.uint8), probabilities.max(0)

