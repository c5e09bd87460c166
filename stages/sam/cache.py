"""The embedding cache: each image is encoded once per model, ever.

One entry (:mod:`stages.io.embeddings`) per (encoder, image):
``<dir>/<backend>-<encoder sha256[:16]>/<ab>/<image sha256>.h5``, where the image digest is the
sha256 of its decoded pixels (shape and RGB bytes), so re-saving a photo in another format hits the
same entry and an edited photo gets a new one. An entry that does not open, is unfinished, disagrees
with the model, the image or the expected shape, or whose arrays no longer match their checksum (a
damaged file, an entry of a sesam that stored none) is recomputed (and overwritten) with a warning,
never trusted. :class:`EmbedStage` is ``sesam embed``'s per-image loop, whose artifact is an entry;
:class:`BatchInputs` reads ``sam-predict``'s inputs ahead and embeds them a batch per encoder call.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import SesamInputError
from ..io.artifacts import provenance
from ..io.atomic import remove_stale_temporaries
from ..io.embeddings import STAGE, Embedding, read_embedding, write_embedding
from ..io.images import read_image
from ..per_image import PerImageStage
from ..records import Record, prefetched, require
from .base import SamBackend

log = logging.getLogger("sesam")


def image_sha256(image: np.ndarray) -> str:
    """sha256 of an (H, W, 3) uint8 image's shape and pixel bytes."""
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}x{image.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(image, np.uint8).tobytes())
    return digest.hexdigest()


def cache_params(backend: SamBackend) -> dict[str, object]:
    """The provenance parameters of a cache entry (the same for every entry of one encoder); a model
    whose decoder reads high-resolution maps (SAM 2) names them: its entries hold them too."""
    params: dict[str, object] = {"embedding_key": backend.identity.embedding_key}
    if backend.high_res_shapes:
        params["high_res"] = [list(shape) for shape in backend.high_res_shapes]
    return params


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

    def _cached(self, backend: SamBackend, image: np.ndarray, digest: str) -> Embedding | None:
        """The valid entry for ``image``, or None (a bad entry is logged and will be overwritten)."""
        path = self.path_for(backend, digest)
        if not os.path.exists(path):
            return None
        try:
            return read_embedding(path, cache_params(backend), digest, image.shape[:2],
                                  (backend.embedding_shape, *backend.high_res_shapes))
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
        attrs = provenance(STAGE, cache_params(backend), model=backend.identity.as_dict())
        folder = os.path.dirname(path)
        if folder not in self._swept:  # once per folder and process: what killed writers left there
            remove_stale_temporaries(folder, (".h5",))
            self._swept.add(folder)
        write_embedding(path, embedding, {**attrs, "image_sha256": digest})
        self.computed += 1


class EmbedStage(PerImageStage):
    """The per-image loop whose artifact is the image's entry in the embedding cache.

    The entry's path depends on the pixels, so ``output_path`` decodes the image; it keeps the
    last one it decoded, so that ``image`` hands it on instead of reading the file again.
    """

    def __init__(self, cache: EmbeddingCache, backend: SamBackend, **kwargs: Any):
        super().__init__(stage="embed", key="embedding", output_dir=cache.directory, suffix=".h5", **kwargs)
        self.cache = cache
        self.backend = backend
        self._decoded: tuple[str, np.ndarray] | None = None

    def image(self, record: Mapping[str, Any]) -> np.ndarray:
        """The decoded image of ``record`` (read once however often it is asked for in a row)."""
        require(record, "image")
        if self._decoded is None or self._decoded[0] != record["image"]:
            self._decoded = (record["image"], read_image(record["image"]))
        return self._decoded[1]

    def output_path(self, record: Mapping[str, Any]) -> str:
        return self.cache.path_for(self.backend, image_sha256(self.image(record)))

    def embed_all(self, records: Iterable[Record], recompute: bool = False) -> None:
        """Put the embedding of every record's 'image' in the cache (``recompute``: encode it again even
        when its entry is valid), adding the key 'embedding'; ends with a summary line."""
        self.run(records, lambda record, _path: self.cache.get_or_compute(self.backend, self.image(record), recompute))
        log.info("embed: %d encoded, %d reused from %s", self.cache.computed, self.cache.reused,
                 os.path.abspath(self.cache.directory))


class BatchInputs:
    """The inputs of each record, read a batch ahead in a thread, and embedded a batch per encoder call.

    ``read(record)`` -> (image, prompts) runs in the loader thread (a SesamInputError is kept and
    raised when the record is made); ``embed(images)`` -> embeddings runs, for all images of the
    current batch at once, when the first of them is made.
    """

    def __init__(self, read: Callable[[Record], tuple[np.ndarray, Any]],
                 embed: Callable[[list[np.ndarray]], list[Any]]):
        self.read = read
        self.embed = embed
        self.loaded: dict[str, Any] = {}
        self.embeddings: dict[str, Any] | None = None

    def _load(self, batch: list[Record]) -> dict[str, Any]:
        loaded: dict[str, Any] = {}
        for record in batch:
            try:
                loaded[record["id"]] = self.read(record)
            except SesamInputError as exc:
                loaded[record["id"]] = exc
        return loaded

    def stream(self, records: Iterable[Record], batch_images: int,
               wanted: Callable[[Record], bool]) -> Iterator[Record]:
        """``records`` as they come, while their batch's inputs are read ahead."""
        for record, loaded in prefetched(records, batch_images, wanted, self._load):
            if loaded is not self.loaded:
                self.loaded, self.embeddings = loaded, None
            yield record

    def get(self, record: Record) -> tuple[np.ndarray, Any, Any]:
        """(image, prompts, embedding) of ``record``; raises its read error, if any."""
        value = self.loaded[record["id"]] if record["id"] in self.loaded else self._load([record])[record["id"]]
        if isinstance(value, SesamInputError):
            raise value
        image, prompts = value
        if self.embeddings is None:
            batch = {key: item[0] for key, item in self.loaded.items() if not isinstance(item, SesamInputError)}
            self.embeddings = dict(zip(batch, self.embed(list(batch.values()))))
        if record["id"] not in self.embeddings:
            self.embeddings[record["id"]] = self.embed([image])[0]
        return image, prompts, self.embeddings[record["id"]]
