"""The ``embed`` artifact: one image's SAM embedding, an entry of the embedding cache.

One HDF5 per (encoder, image) (``stages.sam.cache`` decides where): the dataset ``embedding``
(SAM 2: also ``high_res_0``, ``high_res_1``, the maps its decoder reads) and the attributes
``image_sha256``, ``embedding_sha256`` (of the float32 bytes of those arrays), ``original_size``,
``input_size`` and the model's identity. Embeddings are float32 on the CPU whatever device computed them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import SesamInputError
from .artifacts import open_h5, write_h5
from .images import check_same_size

STAGE = "embed"


@dataclass(frozen=True)
class Embedding:
    """An image as the decoder sees it.

    ``features``: (1, C, 64, 64) float32 image embedding; ``original_size``: the image's (H, W);
    ``input_size``: its (h, w) in the encoder's input frame (SAM: the longest side resized to 1024;
    SAM 2: the image stretched to 1024x1024); ``high_res``: further float32 feature maps the decoder
    reads (SAM 2: (1, 32, 256, 256) and (1, 64, 128, 128)), empty for SAM.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    high_res: tuple[np.ndarray, ...] = ()


def embedding_sha256(arrays: Sequence[np.ndarray]) -> str:
    """sha256 of the float32 bytes (C order) of an embedding's arrays, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, np.float32).tobytes())
    return digest.hexdigest()


def high_res_name(level: int) -> str:
    """The dataset of high-resolution map ``level`` in a cache entry."""
    return f"high_res_{level}"


def write_embedding(path: str | os.PathLike, embedding: Embedding, attrs: Mapping[str, Any]) -> None:
    """Atomically write ``embedding`` as a cache entry with root ``attrs`` (provenance, ``image_sha256``)
    plus ``embedding_sha256``, ``original_size`` and ``input_size``."""
    arrays = {"embedding": embedding.features,
              **{high_res_name(level): array for level, array in enumerate(embedding.high_res)}}
    write_h5(path, arrays, {**attrs, "embedding_sha256": embedding_sha256(tuple(arrays.values())),
                            "original_size": embedding.original_size, "input_size": embedding.input_size})


def read_embedding(path: str | os.PathLike, params: Mapping[str, Any], image_sha256: str, image_size: tuple[int, int],
                   shapes: Sequence[tuple[int, ...]]) -> Embedding:
    """The entry at ``path``, or SesamInputError saying why it cannot be trusted: it must have been
    made with ``params``, for the image with ``image_sha256`` of size (H, W) ``image_size``, and hold
    finite float32 arrays of ``shapes`` (the embedding's, then each high-resolution map's) that
    match their checksum."""
    with open_h5(path, STAGE) as h5:
        if h5.attrs.get("params") != json.dumps(dict(params), sort_keys=True):
            raise SesamInputError(path, "made by another model")
        if h5.attrs.get("image_sha256") != image_sha256:
            raise SesamInputError(path, "made for another image")
        original_size = tuple(int(v) for v in h5.attrs["original_size"])
        input_size = tuple(int(v) for v in h5.attrs["input_size"])
        checksum = h5.attrs.get("embedding_sha256")
        features = h5["embedding"][()] if "embedding" in h5 else None
        high_res = tuple(h5[high_res_name(level)][()] if high_res_name(level) in h5 else None
                         for level in range(len(shapes) - 1))
    check_same_size(path, original_size, image_size, "original size", "the image's")
    for array, shape in zip((features, *high_res), shapes):
        if array is None or array.shape != tuple(shape) or array.dtype != np.float32:
            raise SesamInputError(path, "embedding missing or of the wrong shape")
        if not np.isfinite(array).all():
            raise SesamInputError(path, "embedding has non-finite values")
    if checksum is None:
        raise SesamInputError(path, "no embedding checksum (an entry of an older sesam)")
    if embedding_sha256((features, *high_res)) != checksum:
        raise SesamInputError(path, "the embedding does not match its checksum (damaged)")
    return Embedding(features, original_size, input_size, high_res)
