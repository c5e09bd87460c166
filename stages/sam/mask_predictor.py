"""SAM mask hypotheses for one record at a time, its inputs read ahead and encoded in batches: the
per-image work of ``sesam sam-predict``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from ..io.artifacts import provenance
from ..io.images import IMAGE_SUFFIXES, read_image
from ..io.masks import STAGE, write_masks
from ..io.prompts import PromptSets, read_prompt_sets
from ..per_image import PerImageStage
from ..records import Record, require
from .auto import NMS_THRESH, PRED_IOU_THRESH, STABILITY_THRESH, automatic_masks
from .base import SamBackend
from .cache import BatchInputs, EmbeddingCache
from .predict import write_prompt_set_masks

log = logging.getLogger("sesam")


@dataclass
class MaskPredictor:
    """Decode each record's prompt sets (its 'prompts', (x, y) pixels) with ``backend``, or with ``grid`` N
    an N x N grid of points (automatic mode: confident, stable masks after box NMS, see ``stages.sam.auto``),
    and write its masks HDF5 (``stages.io.masks``). Embeddings come from ``cache`` (None: encoded afresh,
    nothing stored). ``multimask``: keep all 4 hypotheses, else hypothesis 0; ``iterative``: decode twice,
    the best low-res mask fed back."""

    backend: SamBackend
    cache: EmbeddingCache | None = None
    multimask: bool = True
    iterative: bool = False
    grid: int | None = None
    pred_iou_thresh: float = PRED_IOU_THRESH
    stability_thresh: float = STABILITY_THRESH
    nms_thresh: float = NMS_THRESH

    def __post_init__(self) -> None:
        self.batches = BatchInputs(self._read, self._embed)

    def inputs(self) -> tuple[str, tuple[str, ...]]:
        """(record key, file suffixes) of the inputs: photos in automatic mode, else prompts HDF5 files."""
        return ("image", IMAGE_SUFFIXES) if self.grid else ("prompts", (".h5",))

    def settings(self) -> dict[str, Any]:
        """The settings a masks file depends on (and so whether it is up to date)."""
        settings: dict[str, Any] = {"model": self.backend.identity.as_dict(), "multimask": self.multimask}
        if self.grid:
            settings.update(grid=self.grid, pred_iou_thresh=self.pred_iou_thresh,
                            stability_thresh=self.stability_thresh, nms_thresh=self.nms_thresh)
        else:
            settings.update(iterative=self.iterative)
        return settings

    def _read(self, record: Record) -> tuple[np.ndarray, PromptSets | None]:
        require(record, *(("image",) if self.grid else ("image", "prompts")))
        image = read_image(record["image"])
        return image, None if self.grid else read_prompt_sets(record["prompts"], image.shape[:2])

    def _embed(self, images: list[np.ndarray]) -> list[Any]:
        if self.cache is None:
            return self.backend.embed_many(images)
        return self.cache.get_or_compute_many(self.backend, images)

    def predict_into(self, record: Record, out: str) -> None:
        """Write the masks of ``record`` to ``out`` with their provenance."""
        _image, prompts, embedding = self.batches.get(record)
        attrs = provenance(STAGE, self.settings(), record, self.backend.identity.as_dict())
        attrs.update(mode="auto" if self.grid else "prompts", multimask=self.multimask)
        if self.grid:
            write_masks(out, automatic_masks(self.backend, embedding, self.grid, self.multimask, self.pred_iou_thresh,
                                             self.stability_thresh, self.nms_thresh), attrs)
        else:
            write_prompt_set_masks(out, self.backend, embedding, prompts, attrs, self.multimask, self.iterative,
                                   record["prompts"])

    def run(self, stage: PerImageStage, records: Iterable[Record], batch_images: int = 1) -> None:
        """Run ``stage`` over ``records``, reading and encoding up to ``batch_images`` images ahead at a time."""
        stage.run(self.batches.stream(records, batch_images, stage.will_make), self.predict_into)
        if self.cache is not None:
            log.info("sam-predict: %d images encoded, %d embeddings reused from the cache", self.cache.computed,
                     self.cache.reused)
