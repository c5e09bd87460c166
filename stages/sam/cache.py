"""The embedding cache: each image is encoded once per model, ever.

One HDF5 file per (encoder, image): ``<dir>/<backend>-<encoder sha256[:16]>/<ab>/<image sha256>.h5``,
where the image digest is the sha256 of its decoded pixels (shape and RGB bytes), so re-saving a
photo in another format hits the same entry and an edited photo gets a new one. A file holds the
dataset ``embedding`` (SAM 2: also ``high_res_0``, ``high_res_1``, the maps its decoder reads) and
the attributes ``image_sha256``, ``embedding_sha256`` (of the float32 bytes of those arrays),
``original_size``, ``input_size`` and the model's identity. Embeddings are float32 on the CPU whatever
device computed them. An entry that does not open, is unfinished, disagrees with the model, the image
or the expected shape, or whose arrays no longer match their checksum (a damaged file, an entry of a
sesam that stored none) is recomputed (and overwritten) with a warning, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Sequence

import numpy as np

from ..io.artifacts import open_h5, provenance, write_h5
from ..io.atomic import remove_stale_temporaries
from ..errors import SesamInputError
from .base import Embedding, SamBackend

log = logging.getLogger("sesam")

CACHE_STAGE = "embed"


def image_sha256(image: np.ndarray) -> str:
    """sha256 of an (H, W, 3) uint8 image's shape and pixel bytes."""
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}x{image.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(image, np.uint8).tobytes())
    return digest.hexdigest()


def embedding_sha256(arrays: Sequence[np.ndarray]) -> str:
    """sha256 of the float32 bytes (C order) of an embedding's arrays, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, np.float32).tobytes())
    return digest.hexdigest()


def cache_params(backend: SamBackend) -> dict[str, object]:
    """The provenance parameters of a cache entry (the same for every entry of one encoder); a model
    whose decoder reads high-resolution maps (SAM 2) names them: its entries hold them too."""
    params: dict[str, object] = {"embedding_key": backend.identity.embedding_key}
    if backend.high_res_shapes:
        params["high_res"] = [list(shape) for shape in backend.high_res_shapes]
    return params


def high_res_name(level: int) -> str:
    """The dataset of high-resolution map ``level`` in a cache entry."""
    return f"high_res_{level}"


def cache_usage(directory: str | os.PathLike) -> tuple[int, int]:
    """(number of entries, bytes) of the embedding cache under ``directory``."""
    count = size = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name.endswith(".h5") and not name.startswith("."):
                count += 1
                size += os.path.getsize(os.path.join(root, name))
    return count, size


class EmbeddingCache:
    """Embeddings on disk under ``directory``, keyed by encoder identity and image content."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.fspath(directory)
        self.computed = 0
        self.reused = 0
        self._swept: set[str] = set()

    def path_for(self, backend: SamBackend, digest: str) -> str:
        """Where the embedding of the image with sha256 ``digest`` under ``backend`` lives."""
        return os.path.join(self.directory, backend.identity.embedding_key, digest[:2], digest + ".h5")

    def _read(self, path: str, backend: SamBackend, digest: str, image_shape: tuple[int, ...]) -> Embedding:
        """The entry at ``path``, or SesamInputError saying why it cannot be trusted."""
        with open_h5(path, CACHE_STAGE) as h5:
            if h5.attrs.get("params") != json.dumps(cache_params(backend), sort_keys=True):
                raise SesamInputError(path, "made by another model")
            if h5.attrs.get("image_sha256") != digest:
                raise SesamInputError(path, "made for another image")
            original_size = tuple(int(v) for v in h5.attrs["original_size"])
            input_size = tuple(int(v) for v in h5.attrs["input_size"])
            checksum = h5.attrs.get("embedding_sha256")
            features = h5["embedding"][()] if "embedding" in h5 else None
            high_res = tuple(h5[high_res_name(level)][()] if high_res_name(level) in h5 else None
                             for level in range(len(backend.high_res_shapes)))
        if original_size != tuple(image_shape[:2]):
            raise SesamInputError(path, f"original size {original_size} is not the image's {image_shape[:2]}")
        for array, shape in zip((features, *high_res), (backend.embedding_shape, *backend.high_res_shapes)):
            if array is None or array.shape != tuple(shape) or array.dtype != np.float32:
                raise SesamInputError(path, "embedding missing or of the wrong shape")
            if not np.isfinite(array).all():
                raise SesamInputError(path, "embedding has non-finite values")
        if checksum is None:
            raise SesamInputError(path, "no embedding checksum (an entry of an older sesam)")
        if embedding_sha256((features, *high_res)) != checksum:
            raise SesamInputError(path, "the embedding does not match its checksum (damaged)")
        return Embedding(features, original_size, input_size, high_res)

    def _cached(self, backend: SamBackend, image: np.ndarray, digest: str) -> Embedding | None:
        """The valid entry for ``image``, or None (a bad entry is logged and will be overwritten)."""
        path = self.path_for(backend, digest)
        if not os.path.exists(path):
            return None
        try:
            return self._read(path, backend, digest, image.shape)
        except (SesamInputError, OSError, KeyError, ValueError) as exc:
            log.warning("embedding cache: recomputing %s (%s)", path, getattr(exc, "problem", exc))
            return None

    def get_or_compute(self, backend: SamBackend, image: np.ndarray, recompute: bool = False) -> Embedding:
        """The embedding of an (H, W, 3) uint8 RGB image: from the cache if a valid entry exists
        (and ``recompute`` is False), else encoded now and stored atomically."""
        return self.get_or_compute_many(backend, [image], recompute)[0]

    def get_or_compute_many(self, backend: SamBackend, images: list[np.ndarray],
                            recompute: bool = False) -> list[Embedding]:
        """As ``get_or_compute`` for several images; those without a valid entry are encoded in one
        encoder call (``backend.embed_many``)."""
        digests = [image_sha256(image) for image in images]
        found = [None if recompute else self._cached(backend, image, digest) for image, digest in zip(images, digests)]
        self.reused += sum(embedding is not None for embedding in found)
        missing = [index for index, embedding in enumerate(found) if embedding is None]
        for index, embedding in zip(missing, backend.embed_many([images[index] for index in missing])):
            self._store(backend, digests[index], embedding)
            found[index] = embedding
        return found  # type: ignore[return-value]

    def _store(self, backend: SamBackend, digest: str, embedding: Embedding) -> None:
        """Write ``embedding`` as the entry of the image with sha256 ``digest``, atomically."""
        path = self.path_for(backend, digest)
        arrays = {"embedding": embedding.features,
                  **{high_res_name(level): array for level, array in enumerate(embedding.high_res)}}
        attrs = provenance(CACHE_STAGE, cache_params(backend), model=backend.identity.as_dict())
        attrs.update(image_sha256=digest, embedding_sha256=embedding_sha256(tuple(arrays.values())),
                     original_size=embedding.original_size, input_size=embedding.input_size)
        folder = os.path.dirname(path)
        if folder not in self._swept:  # once per folder and process: what killed writers left there
            remove_stale_temporaries(folder, (".h5",))
            self._swept.add(folder)
        write_h5(path, arrays, attrs)
        self.computed += 1
