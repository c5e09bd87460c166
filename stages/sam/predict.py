"""Prompt sets in, mask hypotheses out: the body of ``sesam sam-predict`` (and of refinement rounds).

Prompt sets are ``stages.io.prompts.PromptSets`` (the ``prompts`` HDF5 of docs/FORMATS.md).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..errors import SesamInputError
from ..io.prompts import PromptSets
from ..io.embeddings import Embedding
from ..io.masks import STAGE, open_masks, writing_masks
from .base import PromptBatch, SamBackend


def _hypotheses(multimask: bool) -> slice:
    """All four hypotheses (0 = single-mask output, 1-3 multimask small to large) or hypothesis 0 alone."""
    return slice(None) if multimask else slice(0, 1)


def prompt_batch(backend: SamBackend, prompts: PromptSets, embedding: Embedding) -> PromptBatch:
    """Every prompt set of ``prompts`` as ``backend``'s decoder tokens for ``embedding``'s image."""
    sets = [(*prompts.set_points(index), prompts.set_box_or_none(index)) for index in range(prompts.count)]
    return backend.prompt_batch(sets, embedding)


def decode_in_chunks(backend: SamBackend, embedding: Embedding, batch: PromptBatch, hypotheses: slice,
                     iterative: bool = False, source: str | None = None,
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``backend.decode_masks`` over chunks of ``batch``: yields (set indices, masks, IoU, stability) per chunk.

    A chunk holds sets of one token count only (padding a set with extra "not a point" tokens
    changes SAM's masks: on real photos down to IoU 0.02 with the unpadded decode), and at most
    ``backend.decode_chunk_size`` sets, which bounds its memory. A chunk the backend cannot decode
    (e.g. too many points for the memory it would take) raises SesamInputError naming ``source``
    (the prompts file) and the chunk's first set.
    """
    order = np.argsort(batch.lengths, kind="stable")
    size = backend.decode_chunk_size(embedding, len(range(4)[hypotheses]))
    starts = np.flatnonzero(np.diff(batch.lengths[order], prepend=-1))
    for same_length in np.split(order, starts[1:]):
        for start in range(0, len(same_length), size):
            chunk = same_length[start: start + size]
            try:
                decoded = backend.decode_masks(embedding, batch.take(chunk), hypotheses, iterative)
            except Exception as exc:  # onnxruntime and torch raise their own types (allocation failures, ...)
                raise _undecodable(batch, int(chunk[0]), exc, source) from exc
            yield (chunk, *decoded)


def _undecodable(batch: PromptBatch, index: int, exc: Exception, source: str | None) -> SesamInputError:
    labels = batch.labels[index, : batch.lengths[index]]
    what = f"{int(np.isin(labels, (0, 1)).sum())} points" + (" and a box" if (labels == 2).any() else "")
    reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return SesamInputError(source, f"SAM cannot decode prompt set {index} ({what}): {reason}")


def predict_prompt_sets(backend: SamBackend, embedding: Embedding, prompts: PromptSets,
                        multimask: bool = True, iterative: bool = False,
                        source: str | None = None) -> dict[str, np.ndarray]:
    """Decode every prompt set against ``embedding``; the ``masks`` HDF5 datasets of docs/FORMATS.md,
    in memory (S x M x H x W bytes of masks: :func:`decoded_masks` or :func:`write_prompt_set_masks`
    for large photos).

    Returns ``masks`` bool (S, M, H, W), ``iou_predictions`` and ``stability_scores`` float32 (S, M),
    ``set_component`` and ``set_class`` int32 (S,), with M = 4 (``multimask``) or 1 (hypothesis 0).
    ``iterative``: decode once, then again with the kept hypothesis of highest predicted IoU fed back
    as ``mask_input`` (Jiang & Yang's iterative input); the second pass is returned. Sets are
    decoded in batches (see ``decode_in_chunks``); one the backend cannot decode raises
    SesamInputError naming ``source`` (the prompts file) and the set.
    """
    masks = np.zeros((prompts.count, 4 if multimask else 1, *embedding.original_size), bool)

    def keep(chunk: np.ndarray, chunk_masks: np.ndarray) -> None:
        masks[chunk] = chunk_masks

    return {"masks": masks, **_decode_all(backend, embedding, prompts, multimask, iterative, source, keep)}


def write_prompt_set_masks(path: str | os.PathLike, backend: SamBackend, embedding: Embedding, prompts: PromptSets,
                           attrs: Mapping[str, Any], multimask: bool = True, iterative: bool = False,
                           source: str | None = None) -> None:
    """:func:`predict_prompt_sets` written to a ``masks`` artifact at ``path`` (root ``attrs``) as the
    sets are decoded: memory holds one decoder chunk of masks, not the image's whole stack."""
    size = embedding.original_size
    with writing_masks(path, prompts.count, 4 if multimask else 1, size, attrs) as (writer, others):
        others.update(_decode_all(backend, embedding, prompts, multimask, iterative, source, writer.write))


IN_MEMORY_MASK_BYTES = 1 << 30
""":func:`decoded_masks` holds an image's mask stack (S x M x H x W bytes) in memory up to this size."""


@contextlib.contextmanager
def decoded_masks(backend: SamBackend, embedding: Embedding, prompts: PromptSets, multimask: bool = True,
                  iterative: bool = False, source: str | None = None) -> Iterator[dict[str, Any]]:
    """:func:`predict_prompt_sets` for any photo size: yields its datasets, in memory when the stack
    takes at most ``IN_MEMORY_MASK_BYTES``, else with ``masks`` a :class:`~stages.io.masks.MaskStack` over
    a temporary file (``tempfile``'s directory) that is removed when the block ends."""
    height, width = embedding.original_size
    if prompts.count * (4 if multimask else 1) * height * width <= IN_MEMORY_MASK_BYTES:
        yield predict_prompt_sets(backend, embedding, prompts, multimask, iterative, source)
        return
    with tempfile.TemporaryDirectory(prefix="sesam-masks-") as scratch:
        path = os.path.join(scratch, "masks.h5")
        write_prompt_set_masks(path, backend, embedding, prompts, {"stage": STAGE}, multimask, iterative, source)
        yield open_masks(path)


def _decode_all(backend: SamBackend, embedding: Embedding, prompts: PromptSets, multimask: bool, iterative: bool,
                source: str | None, store: Callable[[np.ndarray, np.ndarray], None]) -> dict[str, np.ndarray]:
    """Decode every set, handing each chunk's (set indices, masks) to ``store``; the other datasets."""
    keep = _hypotheses(multimask)
    shape = (prompts.count, 4 if multimask else 1)
    iou, stability = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for chunk, chunk_masks, chunk_iou, chunk_stability in decode_in_chunks(
            backend, embedding, prompt_batch(backend, prompts, embedding), keep, iterative, source):
        store(chunk, chunk_masks)
        iou[chunk], stability[chunk] = chunk_iou, chunk_stability
    return {"iou_predictions": iou, "stability_scores": stability,
            "set_component": prompts.set_component.astype(np.int32), "set_class": prompts.set_class.astype(np.int32)}
