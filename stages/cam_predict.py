"""``cam train``'s tagged images and ``cam predict``'s per-image work, as library calls.

:class:`TagSource` reads an image's tags (a tags CSV or each record's ``tags``);
:func:`training_records` finds the records ``cam train`` learns from, :func:`tagged_images` pairs
them with their tags; :class:`CamPredictor` makes one image's ``cam_scores`` artifact (CAMs of its
present classes) and its CAM pseudo-label, reusing the stored CAMs when only the background
threshold changed. The classifier (torch) is imported only when it is needed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .cam import DEFAULT_BG_THRESHOLD, cam_label, normalise_cams
from .errors import SesamInputError
from .io.artifacts import is_current, provenance, stored_provenance
from .io.atomic import sha256_of_file
from .io.cams import STAGE, ClassActivationMaps, read_cams, write_cams
from .io.images import read_image, write_label
from .io.tags import read_tags, read_tags_csv
from .per_image import PerImageStream
from .presets import ClassPreset
from .records import Record, index_images, read_jsonl, read_records, require, with_images
from .tags import class_outputs, tag_classes
from .train import recipe

log = logging.getLogger("sesam")

PRESENT = ("tags", "predicted")
"""Which classes an image contains: its tags, or those the classifier predicts."""
CHECKPOINT_KEY = "cam_checkpoint"
"""The record key naming the classifier checkpoint (``cam train`` adds it)."""


class TagSource:
    """The tags of records: from a tags CSV when given, else each record's ``tags`` key."""

    def __init__(self, preset: ClassPreset, csv_path: str | None):
        self.preset = preset
        self.csv_path = csv_path
        self.csv = read_tags_csv(csv_path, preset) if csv_path else None

    def __call__(self, record: Record) -> np.ndarray:
        if self.csv is not None:
            if record["id"] not in self.csv:
                raise SesamInputError(self.csv_path, f"has no line for image '{record['id']}'")
            return self.csv[record["id"]]
        if record.get("tags") is None:
            raise SesamInputError(None, f"record '{record['id']}' has no 'tags' (run 'sesam simulate --kind tags', "
                                        "give --tags-csv, or use --present predicted)")
        return read_tags(record["tags"], self.preset, record["id"])


def training_records(records_file: str | None, tags: TagSource, images_dir: str | None,
                     strip_suffixes: Iterable[str]) -> list[Record]:
    """Records from ``records_file``, from the ids of the tags CSV paired with ``images_dir``, or from stdin."""
    if records_file:
        records = read_jsonl(records_file)
    elif tags.csv is not None and images_dir:
        records = [{"id": image_id} for image_id in tags.csv]
    else:
        return list(read_records([], "image", images_dir, strip_suffixes))
    if images_dir:
        return list(with_images(records, index_images(images_dir, strip_suffixes), images_dir))
    return records


def tagged_images(records: Iterable[Record], tags: TagSource) -> list[Any]:
    """The records as ``stages.train.classifier.TaggedImage``: photo and tags (each record needs 'image')."""
    from .train.classifier import TaggedImage

    images = []
    for record in records:
        require(record, "image")
        images.append(TaggedImage(record["id"], record["image"], tuple(int(t) for t in tags(record))))
    return images


def tag_counts(tags: Iterable[Iterable[int]], preset: ClassPreset) -> str:
    """How many images carry each taggable class, for a summary line: ``road 12, car 7, ...``."""
    counts = np.bincount(np.concatenate([np.array(list(t), np.int64) for t in tags]), minlength=preset.num_classes)
    return ", ".join(f"{preset.classes[c]} {counts[c]}" for c in tag_classes(preset))


def with_checkpoint(records: Iterable[Record], checkpoint: str | None) -> Iterator[Record]:
    """Records with ``checkpoint`` as their 'cam_checkpoint' (so that a newer checkpoint redoes the images)."""
    for record in records:
        if checkpoint:
            record[CHECKPOINT_KEY] = checkpoint
        yield record


class Classifiers:
    """Trained classifiers by checkpoint path, loaded once each on ``device``, with their provenance."""

    def __init__(self, preset: ClassPreset, device: str):
        from .train.distributed import Distributed
        from .train.loop import resolve_device

        self.preset = preset
        self.device = resolve_device(device, Distributed())
        self.loaded: dict[str, tuple[Any, dict[str, Any]]] = {}

    def get(self, path: str) -> tuple[Any, dict[str, Any]]:
        """(model, provenance) of checkpoint ``path``."""
        from .train.classifier import load_classifier

        if path not in self.loaded:
            model, checkpoint = load_classifier(path, self.preset)
            model_info = {"name": checkpoint["architecture"], "checkpoint": os.path.abspath(path),
                          "iteration": checkpoint["iteration"], "sha256": sha256_of_file(path)}
            self.loaded[path] = (model.to(self.device), model_info)
        return self.loaded[path]


def reusable_cams(out: str, params: dict[str, Any], inputs: Record) -> ClassActivationMaps | None:
    """The CAMs of an existing artifact made with the same parameters but another ``bg_threshold``."""
    stored = stored_provenance(out)
    if not stored or stored.get("stage") != STAGE or not stored.get("params"):
        return None
    earlier = json.loads(stored["params"])
    if {**earlier, "bg_threshold": params["bg_threshold"]} != params or not is_current(out, STAGE, earlier, inputs):
        return None
    return read_cams(out)


@dataclass
class CamPredictor:
    """One image's class activation maps and CAM pseudo-label (see ``sesam cam predict``).

    ``present``: one of PRESENT; ``scales``: rescaling factors of the photo whose CAMs are summed
    (with their mirror images when ``flip``); pixels whose highest normalised CAM is below
    ``bg_threshold`` are background (presets with one) or 255. ``checkpoint`` None: each record's own.
    """

    preset: ClassPreset
    tags_of: TagSource
    device: str = "auto"
    present: str = "tags"
    score_threshold: float = recipe.CAM_SCORE_THRESHOLD
    scales: tuple[float, ...] = recipe.CAM_SCALES
    flip: bool = True
    bg_threshold: float = DEFAULT_BG_THRESHOLD
    checkpoint: str | None = None
    present_counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.classifiers = Classifiers(self.preset, self.device)

    def settings(self) -> dict[str, Any]:
        """The parameters that decide the artifacts (their provenance)."""
        params: dict[str, Any] = {"classes": self.preset.name, "present": self.present, "scales": list(self.scales),
                                  "flip": self.flip, "bg_threshold": self.bg_threshold}
        if self.present == "predicted":
            params["score_threshold"] = self.score_threshold
        if self.checkpoint:
            params["checkpoint"] = os.path.abspath(self.checkpoint)
        return params

    def cams(self, record: Record, model: Any) -> ClassActivationMaps:
        """The normalised CAMs of the record's present classes, computed by ``model``."""
        from .train.classifier import class_activation_maps

        if self.present == "tags":
            outputs = class_outputs(self.tags_of(record), self.preset)
            select = lambda scores: outputs  # noqa: E731 - the tags decide, whatever the scores
        else:
            select = lambda scores: np.flatnonzero(scores >= self.score_threshold)  # noqa: E731
        classes = tag_classes(self.preset)
        cams, scores, chosen = class_activation_maps(model, read_image(record["image"]), self.scales, self.flip,
                                                     self.classifiers.device, select)
        class_scores = np.full(self.preset.num_classes, np.nan, np.float32)
        class_scores[classes] = scores
        return ClassActivationMaps(normalise_cams(cams), classes[chosen], class_scores)

    def predict(self, record: Record, out: str, label_path: str, overwrite: bool = False) -> None:
        """Write the record's ``cam_scores`` artifact ``out`` and its CAM pseudo-label ``label_path``;
        unless ``overwrite``, CAMs stored in ``out`` with other parameters only in ``bg_threshold`` are reused."""
        require(record, "image", CHECKPOINT_KEY)
        params = self.settings()
        inputs = {k: v for k, v in record.items() if k not in ("cam", "cam_scores")}
        maps = None if overwrite else reusable_cams(out, params, inputs)
        model, model_info = self.classifiers.get(record[CHECKPOINT_KEY])
        if maps is None:
            maps = self.cams(record, model)
        meta = provenance(STAGE, params, record, model_info)
        background = 0 if self.preset.has_background else None
        write_label(label_path, cam_label(maps, background, self.bg_threshold), self.preset, meta)
        write_cams(out, maps, meta)
        self.present_counts.append(len(maps.cam_class))

    def run(self, stream: PerImageStream, records: Iterable[Record]) -> None:
        """Predict every record in a per-image stage of ``stream``: 'cam_scores' (ID.h5) and 'cam' (ID.png)
        in its output directory; ends with a summary line."""
        stage = stream.stage(STAGE, "cam_scores", ".h5", self.settings(),
                             companions={"cam": (stream.output_dir, ".png")})

        def make(record: Record, out: str) -> None:
            self.predict(record, out, stage.companion_path(record, "cam"), stream.overwrite)

        stage.run(records, make)
        if self.present_counts:
            log.info("cam predict: %d image(s) computed, %.1f present classes on average", len(self.present_counts),
                     float(np.mean(self.present_counts)))
