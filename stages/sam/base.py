"""The one interface every SAM backend implements: embed an image once, decode many prompt sets.

Conventions: images are (H, W, 3) uint8 RGB; points are (x, y) = (column, row) in pixels of the
original image; boxes are XYXY; point labels are 1 (positive) and 0 (negative). A decode returns all
of the decoder's mask hypotheses: index 0 is SAM's single-mask output, 1-3 its multimask outputs from
small to large.

Decoding is batched: prompt sets become a :class:`PromptBatch` of decoder tokens (SAM's ONNX
interface: label 1/0 for points, 2/3 for a box's corners, -1 for SAM's own "not a point" padding
point), and a backend decodes the sets of one token count at once where it can (the torch
backends) or set by set.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..io.embeddings import Embedding
from .transforms import LONG_SIDE, preprocess_image, stability_scores, to_input_frame, upscale_logits

LOW_RES = 256
"""Side of the decoder's low-resolution mask logits (and of ``mask_input``)."""
PADDING_LABEL = -1.0
"""SAM's "not a point" label: the padding point (0, 0) of a set without a box, and batch padding."""
BOX_LABELS = (2.0, 3.0)
"""Decoder labels of a box's top-left and bottom-right corners."""
UPSCALE_BUDGET = 1 << 26
"""Upscaled logits (float32 elements) one decode chunk may hold: 256 MiB, whatever the image size."""


@dataclass(frozen=True)
class ModelIdentity:
    """What made an embedding or a mask: backend, model name, and the sha256 of its weights."""

    name: str
    backend: str
    sha256: str
    encoder_sha256: str
    """sha256 of the image encoder's weights alone: embeddings depend on nothing else"""
    embedding_prefix: str = ""
    """The cache directory prefix of this encoder's embeddings (default: the backend). The torch
    port of an ONNX pair computes the onnx backend's embeddings and shares its entries (``onnx``)."""

    def as_dict(self) -> dict[str, str]:
        """The ``model`` provenance of an artifact: name, backend, sha256."""
        return {"name": self.name, "backend": self.backend, "sha256": self.sha256}

    @property
    def embedding_key(self) -> str:
        """A directory name for this encoder's embeddings, e.g. ``onnx-18348d144bd35728``."""
        return f"{self.embedding_prefix or self.backend}-{self.encoder_sha256[:16]}"


def check_prompt_set(points: np.ndarray, labels: np.ndarray, box: np.ndarray | None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One prompt set as float32 (N, 2) points, (N,) labels (0/1) and (4,) box or None; ValueError if malformed."""
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
    return points, labels.astype(np.float32), box


def sam_tokens(points: np.ndarray, labels: np.ndarray, box: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """SAM's decoder tokens of one set (as ``SamPredictor`` and the ONNX export): the points, then
    the box's corners (labels 2, 3) or, without a box, the padding point (0, 0) with label -1."""
    if box is None:
        extra, extra_labels = np.zeros((1, 2), np.float32), [PADDING_LABEL]
    else:
        extra, extra_labels = box.reshape(2, 2), list(BOX_LABELS)
    return np.concatenate([points, extra]), np.concatenate([labels, np.array(extra_labels, np.float32)])


@dataclass(frozen=True)
class PromptBatch:
    """B prompt sets as decoder tokens in the resized input frame, stored padded to a common length N
    (the padding is for storage only: a decoder batch takes sets of one length, see ``take``).

    ``coords`` (B, N, 2) float32 (x, y); ``labels`` (B, N) float32: 1/0 positive/negative points, 2/3
    a box's corners, -1 "not a point" (in the order of the backend's ``prompt_tokens``); ``lengths``
    (B,) int64, the tokens of each set before batch padding (a SAM set without a box already ends in
    SAM's own padding point, as in ``SamPredictor`` and the ONNX export).
    """

    coords: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_sets(cls, sets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                  original_size: tuple[int, int], input_size: tuple[int, int],
                  tokens: Callable[[np.ndarray, np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]] | None = None,
                  ) -> "PromptBatch":
        """Tokens for ``sets`` of ((n, 2) points, (n,) labels, (4,) XYXY box or None) in original
        pixels; ``tokens`` orders one set's points and box corners (default ``sam_tokens``)."""
        tokens = tokens or sam_tokens
        rows = []
        for points, labels, box in sets:
            coords, token_labels = tokens(*check_prompt_set(points, labels, box))
            rows.append((to_input_frame(coords, original_size, input_size), token_labels))
        lengths = np.array([len(labels) for _, labels in rows], np.int64)
        width = int(lengths.max()) if len(rows) else 0
        coords = np.zeros((len(rows), width, 2), np.float32)
        labels = np.full((len(rows), width), PADDING_LABEL, np.float32)
        for index, (set_coords, set_labels) in enumerate(rows):
            coords[index, : len(set_labels)] = set_coords
            labels[index, : len(set_labels)] = set_labels
        return cls(coords, labels, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, indices: np.ndarray) -> "PromptBatch":
        """The sets ``indices``, padded only to their own longest."""
        lengths = self.lengths[indices]
        width = int(lengths.max()) if len(lengths) else 0
        return PromptBatch(self.coords[indices, :width], self.labels[indices, :width], lengths)

    def set_tokens(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Set ``index`` without batch padding: (n, 2) coords and (n,) labels."""
        length = int(self.lengths[index])
        return self.coords[index, :length], self.labels[index, :length]


class SamBackend(abc.ABC):
    """A SAM-family model: ``embed`` runs the (expensive) image encoder, ``decode_masks`` a batch of prompt sets.

    A backend decodes set by set unless it overrides ``_decode_batch``; the hooks ``_feedback``,
    ``_postprocess`` and ``_to_numpy`` let a torch backend keep a whole chunk on its device.
    """

    identity: ModelIdentity
    long_side: int = LONG_SIDE
    encoder_calls: int = 0
    """How many images this backend has encoded (cache tests and benchmarks count them)."""
    decode_batch_size: int = 1
    """Prompt sets decoded per decoder call (the ONNX decoder's batch is fixed at 1)."""

    @property
    @abc.abstractmethod
    def embedding_shape(self) -> tuple[int, ...]:
        """The shape of ``Embedding.features`` this model makes, e.g. (1, 256, 64, 64)."""

    @property
    def high_res_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The shapes of ``Embedding.high_res`` this model makes (none for SAM)."""
        return ()

    @abc.abstractmethod
    def _encode(self, tensor: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        """(B, 3, L, L) normalised, padded float32 images -> (B, *embedding_shape[1:]) float32 features,
        or a tuple of them and the high-resolution maps (``high_res_shapes``, batch first)."""

    def _preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """(H, W, 3) uint8 -> the (1, 3, L, L) encoder input and the image's (h, w) in it (SAM's)."""
        return preprocess_image(image, self.long_side)

    def _upscale_geometry(self, embedding: Embedding) -> tuple[tuple[int, int], int]:
        """(the (h, w) of the image in the mask frame, the mask frame's side): the low-res logits are
        upscaled bilinearly to the frame, cropped to (h, w) and resized to the image (SAM's
        ``postprocess_masks``)."""
        return embedding.input_size, self.long_side

    @staticmethod
    def prompt_tokens(points: np.ndarray, labels: np.ndarray, box: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """One set's decoder tokens in original pixels (``sam_tokens``)."""
        return sam_tokens(points, labels, box)

    def prompt_batch(self, sets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                     embedding: Embedding) -> PromptBatch:
        """``sets`` of ((n, 2) points, (n,) labels, (4,) box or None) as this model's tokens for ``embedding``."""
        return PromptBatch.from_sets(sets, embedding.original_size, embedding.input_size, self.prompt_tokens)

    def upscale(self, low_res: np.ndarray, embedding: Embedding) -> np.ndarray:
        """(M, 256, 256) low-res logits -> (M, H, W) float32 logits at image size."""
        cropped, side = self._upscale_geometry(embedding)
        return upscale_logits(low_res, embedding.original_size, cropped, side)

    @abc.abstractmethod
    def _decode_tokens(self, embedding: Embedding, coords: np.ndarray, labels: np.ndarray,
                       mask_input: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """One set's (n, 2) coords and (n,) labels (PromptBatch tokens) and optional (256, 256)
        mask input -> ((4, 256, 256) low-res logits, (4,) predicted IoU)."""

    def _decode_batch(self, embedding: Embedding, batch: PromptBatch, mask_input: Any | None) -> tuple[Any, Any]:
        """A batch -> ((B, 4, 256, 256) low-res logits, (B, 4) IoU), here one set at a time."""
        decoded = [self._decode_tokens(embedding, *batch.set_tokens(index),
                                       None if mask_input is None else mask_input[index])
                   for index in range(len(batch))]
        return (np.stack([low for low, _ in decoded]).astype(np.float32),
                np.stack([iou for _, iou in decoded]).astype(np.float32))

    def _feedback(self, low_res: Any, iou: Any) -> Any:
        """(B, M, 256, 256) logits, (B, M) IoU -> (B, 256, 256) logits of each set's best hypothesis."""
        return low_res[np.arange(len(iou)), np.asarray(iou).argmax(1)]

    def _postprocess(self, low_res: Any, embedding: Embedding) -> tuple[Any, Any]:
        """(B, M, 256, 256) logits -> (B, M, H, W) bool masks at image size and (B, M) stability scores.
        One hypothesis is upscaled at a time: its float32 logits take 4 bytes a pixel (96 MB at 6000x4000)."""
        masks = np.zeros((*low_res.shape[:2], *embedding.original_size), bool)
        stability = np.zeros(low_res.shape[:2], np.float32)
        for index, set_low_res in enumerate(low_res):
            for hypothesis in range(len(set_low_res)):
                logits = self.upscale(set_low_res[hypothesis: hypothesis + 1], embedding)
                masks[index, hypothesis] = logits[0] > 0
                stability[index, hypothesis] = stability_scores(logits)[0]
        return masks, stability

    def _to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def embed(self, image: np.ndarray) -> Embedding:
        """Encode an (H, W, 3) uint8 RGB image."""
        return self.embed_many([image])[0]

    def embed_many(self, images: Sequence[np.ndarray]) -> list[Embedding]:
        """Encode (H, W, 3) uint8 RGB images in one encoder call."""
        if not images:
            return []
        inputs = [self._preprocess(image) for image in images]
        encoded = self._encode(np.concatenate([tensor for tensor, _ in inputs]))
        maps = [np.ascontiguousarray(array, np.float32) for array in (encoded if isinstance(encoded, tuple) else (encoded,))]
        self.encoder_calls += len(images)
        return [Embedding(maps[0][index: index + 1], (int(image.shape[0]), int(image.shape[1])), input_size,
                          tuple(array[index: index + 1] for array in maps[1:]))
                for index, (image, (_, input_size)) in enumerate(zip(images, inputs))]

    def decode_chunk_size(self, embedding: Embedding, hypotheses: int = 4) -> int:
        """Prompt sets per ``decode_masks`` call: ``decode_batch_size``, fewer where the upscaled
        logits of a chunk would pass UPSCALE_BUDGET (large images)."""
        height, width = embedding.original_size
        return max(1, min(self.decode_batch_size, UPSCALE_BUDGET // (hypotheses * height * width)))

    def decode_masks(self, embedding: Embedding, batch: PromptBatch, hypotheses: slice = slice(None),
                     iterative: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode every set of ``batch`` (one decoder call where the backend batches); all its sets
        must have the same number of tokens (``lengths``): SAM reads extra "not a point" tokens as
        prompts, so a batch is never padded (``predict.decode_in_chunks`` groups sets by length).

        ``hypotheses``: which to return (all four, or ``slice(0, 1)``). ``iterative``: decode, then
        decode again with each set's kept hypothesis of highest predicted IoU fed back as
        ``mask_input``; the second pass is returned. Returns (B, M, H, W) bool masks at image size,
        (B, M) float32 predicted IoU and (B, M) float32 stability scores.
        """
        if len(np.unique(batch.lengths)) > 1:
            raise ValueError(f"a decoder batch needs sets of one token count, got {sorted(set(batch.lengths.tolist()))}")
        low_res, iou = self._decode_batch(embedding, batch, None)
        if iterative:
            low_res, iou = self._decode_batch(embedding, batch, self._feedback(low_res[:, hypotheses], iou[:, hypotheses]))
        masks, stability = self._postprocess(low_res[:, hypotheses], embedding)
        return (self._to_numpy(masks), self._to_numpy(iou[:, hypotheses]).astype(np.float32),
                self._to_numpy(stability).astype(np.float32))

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
        batch = self.prompt_batch([(points, labels, box)], embedding)
        if mask_input is not None:
            mask_input = np.asarray(mask_input, np.float32)
            if mask_input.shape != (LOW_RES, LOW_RES):
                raise ValueError(f"mask_input must be ({LOW_RES}, {LOW_RES}) logits, got {mask_input.shape}")
        low_res, iou = self._decode_tokens(embedding, *batch.set_tokens(0), mask_input)
        low_res = np.asarray(low_res, np.float32)
        logits = self.upscale(low_res, embedding)
        return logits, np.asarray(iou, np.float32), low_res

    def decode(self, embedding: Embedding, points: np.ndarray, labels: np.ndarray,
               box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As ``decode_logits``, with the masks thresholded: ((M, H, W) bool, (M,) IoU, (M, 256, 256) logits)."""
        logits, iou, low_res = self.decode_logits(embedding, points, labels, box, mask_input)
        return logits > 0, iou, low_res
