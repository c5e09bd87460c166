"""The embedding cache: each image is encoded once per model, ever.

One HDF5 file per (encoder, image): ``<dir>/<backend>-<encoder sha256[:16]>/<ab>/<image sha256>.h5``,
where the image digest is the sha256 of its decoded pixels (shape and RGB bytes), so re-saving a
photo in another format hits the same entry and an edited photo gets a new one. A file holds the
dataset ``embedding`` and the attributes ``image_sha256``, ``embedding_sha256`` (of the float32
bytes), ``original_size``, ``input_size`` and the model's identity. An entry that does not open, is
unfinished, disagrees with the model, the image or the expected shape, or whose embedding no longer
has its checksum (a damaged file, an entry of a sesam that stored none) is recomputed (and
overwritten) with a warning, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np

from ..artifacts import open_h5, provenance, remove_stale_temporaries, write_h5
from ..errors import SesamInputError
from .base import Embedding, SamBackend

log = logging.getLogger("sesam")

CACHE_STAGE = "embed"


def image_sha256(image: np.ndarray) -> str:
    """sha256 of an (H, W, 3) uint8 image's shape and pixel bytes."""
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}x{image.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(image, np.uint8).tobytes())
    return digest.hexdigest()


def embedding_sha256(features: np.ndarray) -> str:
    """sha256 of an embedding's float32 bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(features, np.float32).tobytes()).hexdigest()


def cache_params(backend: SamBackend) -> dict[str, str]:
    """The provenance parameters of a cache entry (the same for every entry of one encoder)."""
    return {"embedding_key": backend.identity.embedding_key}


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
        if original_size != tuple(image_shape[:2]):
            raise SesamInputError(path, f"original size {original_size} is not the image's {image_shape[:2]}")
        if features is None or features.shape != tuple(backend.embedding_shape) or features.dtype != np.float32:
            raise SesamInputError(path, "embedding missing or of the wrong shape")
        if not np.isfinite(features).all():
            raise SesamInputError(path, "embedding has non-finite values")
        if checksum is None:
            raise SesamInputError(path, "no embedding checksum (an entry of an older sesam)")
        if embedding_sha256(features) != checksum:
            raise SesamInputError(path, "the embedding does not match its checksum (damaged)")
        return Embedding(features, original_size, input_size)

    def get_or_compute(self, backend: SamBackend, image: np.ndarray, recompute: bool = False) -> Embedding:
        """The embedding of an (H, W, 3) uint8 RGB image: from the cache if a valid entry exists
        (and ``recompute`` is False), else encoded now and stored atomically."""
        digest = image_sha256(image)
        path = self.path_for(backend, digest)
        if not recompute and os.path.exists(path):
            try:
                embedding = self._read(path, backend, digest, image.shape)
            except (SesamInputError, OSError, KeyError, ValueError) as exc:
                log.warning("embedding cache: recomputing %s (%s)", path, getattr(exc, "problem", exc))
            else:
                self.reused += 1
                return embedding
        embedding = backend.embed(image)
        attrs = provenance(CACHE_STAGE, cache_params(backend), model=backend.identity.as_dict())
        attrs.update(image_sha256=digest, embedding_sha256=embedding_sha256(embedding.features),
                     original_size=embedding.original_size, input_size=embedding.input_size)
        folder = os.path.dirname(path)
        if folder not in self._swept:  # once per folder and process: what killed writers left there
            remove_stale_temporaries(folder, (".h5",))
            self._swept.add(folder)
        write_h5(path, {"embedding": embedding.features}, attrs)
        self.computed += 1
        return embedding
