"""The one interface every SAM backend implements: embed an image once, decode many prompt sets.

Conventions: images are (H, W, 3) uint8 RGB; points are (x, y) = (column, row) in pixels of the
original image; boxes are XYXY; point labels are 1 (positive) and 0 (negative). A decode returns all
of the decoder's mask hypotheses: index 0 is SAM's single-mask output, 1-3 its multimask outputs from
small to large.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass

import numpy as np

from .transforms import LONG_SIDE, preprocess_image, to_input_frame, upscale_logits

LOW_RES = 256
"""Side of the decoder's low-resolution mask logits (and of ``mask_input``)."""


@dataclass(frozen=True)
class ModelIdentity:
    """What made an embedding or a mask: backend, model name, and the sha256 of its weights."""

    name: str
    backend: str
    sha256: str
    encoder_sha256: str
    """sha256 of the image encoder's weights alone: embeddings depend on nothing else"""

    def as_dict(self) -> dict[str, str]:
        """The ``model`` provenance of an artifact: name, backend, sha256."""
        return {key: value for key, value in asdict(self).items() if key != "encoder_sha256"}

    @property
    def embedding_key(self) -> str:
        """A directory name for this encoder's embeddings, e.g. ``onnx-18348d144bd35728``."""
        return f"{self.backend}-{self.encoder_sha256[:16]}"


@dataclass(frozen=True)
class Embedding:
    """An image as the decoder sees it.

    ``features``: (1, C, 64, 64) float32 image embedding; ``original_size``: the image's (H, W);
    ``input_size``: its (h, w) after resizing the longest side to the encoder's input side.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class SamBackend(abc.ABC):
    """A SAM-family model: ``embed`` runs the (expensive) image encoder, ``decode`` one prompt set."""

    identity: ModelIdentity
    long_side: int = LONG_SIDE
    encoder_calls: int = 0
    """How many images this backend has encoded (cache tests and benchmarks count them)."""

    @property
    @abc.abstractmethod
    def embedding_shape(self) -> tuple[int, ...]:
        """The shape of ``Embedding.features`` this model makes, e.g. (1, 256, 64, 64)."""

    @abc.abstractmethod
    def _encode(self, tensor: np.ndarray) -> np.ndarray:
        """(1, 3, L, L) normalised, padded float32 image -> ``embedding_shape`` float32 features."""

    @abc.abstractmethod
    def _decode_low_res(self, embedding: Embedding, points: np.ndarray, labels: np.ndarray,
                        box: np.ndarray | None, mask_input: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Prompts already in the resized frame -> ((4, 256, 256) low-res logits, (4,) predicted IoU)."""

    def embed(self, image: np.ndarray) -> Embedding:
        """Encode an (H, W, 3) uint8 RGB image."""
        tensor, input_size = preprocess_image(image, self.long_side)
        features = np.ascontiguousarray(self._encode(tensor), np.float32)
        self.encoder_calls += 1
        return Embedding(features, (int(image.shape[0]), int(image.shape[1])), input_size)

    def decode_logits(self, embedding: Embedding, points: np.ndarray, labels: np.ndarray,
                      box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode one prompt set into every hypothesis, as logits.

        ``points`` (N, 2) float (x, y) and ``labels`` (N,) (1 positive, 0 negative) in original-image
        pixels, N >= 0; ``box`` (4,) XYXY or None; ``mask_input`` (256, 256) low-res logits from an
        earlier decode or None. At least one point or a box is needed. Returns (M, H, W) float32 mask
        logits at image size (a pixel is in the mask where its logit > 0), (M,) float32 predicted
        IoU, and (M, 256, 256) float32 low-res logits (feed one back as ``mask_input``).
        """
        points = np.asarray(points, np.float32).reshape(-1, 2)
        labels = np.asarray(labels).reshape(-1)
        if len(points) != len(labels):
            raise ValueError(f"{len(points)} points but {len(labels)} labels")
        if not set(np.unique(labels).tolist()) <= {0, 1}:
            raise ValueError(f"point labels must be 0 or 1, got {sorted(set(labels.tolist()))}")
        if box is not None:
            box = np.asarray(box, np.float32).reshape(4)
        if len(points) == 0 and box is None:
            raise ValueError("a prompt set needs at least one point or a box")
        if mask_input is not None:
            mask_input = np.asarray(mask_input, np.float32)
            if mask_input.shape != (LOW_RES, LOW_RES):
                raise ValueError(f"mask_input must be ({LOW_RES}, {LOW_RES}) logits, got {mask_input.shape}")
        frame = (embedding.original_size, embedding.input_size)
        low_res, iou = self._decode_low_res(
            embedding, to_input_frame(points, *frame), labels.astype(np.float32),
            None if box is None else to_input_frame(box.reshape(2, 2), *frame).reshape(4), mask_input)
        logits = upscale_logits(low_res, embedding.original_size, embedding.input_size, self.long_side)
        return logits, np.asarray(iou, np.float32), np.asarray(low_res, np.float32)

    def decode(self, embedding: Embedding, points: np.ndarray, labels: np.ndarray,
               box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As ``decode_logits``, with the masks thresholded: ((M, H, W) bool, (M,) IoU, (M, 256, 256) logits)."""
        logits, iou, low_res = self.decode_logits(embedding, points, labels, box, mask_input)
        return logits > 0, iou, low_res
