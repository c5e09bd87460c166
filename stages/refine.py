"""SeSAM step 6: a network's prediction becomes dense prompts for SAM, and SAM's masks new pseudo-labels.

The prediction (uint8 (H, W) class map) plays the part of a dense weak label: pixels below
``min_confidence`` are dropped (255), the rest is decomposed into components (those smaller than
``min_area`` of the image get no prompt), each component is prompted along its skeleton, SAM
decodes every prompt set (all four hypotheses), and the ``sesam`` selection keeps the hypotheses that
agree with the prediction (coverage of the own component, no overlap with other classes). The kept
masks are merged by score-weighted votes; what SAM leaves undecided is ``unclaimed`` (255, or the
prediction's class). Finally the original weak label is laid on top: its labelled pixels keep
their class, so refinement never overrules an annotator.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from . import IGNORE_INDEX
from .decompose import decompose
from .io.components import read_components
from .errors import SesamInputError, SesamUsageError
from .evaluate import Scores, confusion_counts
from .io.artifacts import provenance
from .io.images import read_image, read_label, write_confidence, write_label
from .per_image import PerImageStream
from .presets import ClassPreset
from .prompts import sample_prompts
from .sam import decoded_masks
from .records import Record, emit, require
from .io.embeddings import Embedding
from .sam.base import SamBackend
from .select import SesamParams, VoteParams, choose_sesam, kept_classes, merge_votes, overlay_weak

log = logging.getLogger("sesam")

UNCLAIMED = ("ignore", "prediction")
STAGE, PREDICT_STAGE = "refine", "predict"
"""The stage names of a refine pass's artifacts, and of a pass that only predicts."""
PREDICTION_OUTPUTS = ("prediction", "prediction_confidence")
REFINED_OUTPUTS = ("pseudo", "confidence")
"""The record keys (and artifact folders) of a refine pass: the network's prediction and its
confidence, and unless predicting only, the refined pseudo-label and its confidence."""
PROMPT_GROUP, PROMPT_NEGATIVES = "component", 0
"""A prediction's components are prompted as one set each, without negatives: refinement keeps the
prompts it was measured with (docs/TRAINING.md); the per-point prompts that sample-prompts now uses
by default were chosen for weak labels, not for predictions."""


@dataclass(frozen=True)
class RefineParams:
    """How a prediction is turned into prompts and SAM's masks back into a label map.

    - ``min_confidence``: prediction pixels less confident than this are not part of any component;
    - ``min_area``: components smaller than this fraction of the image get no prompts;
    - ``spacing`` / ``max_points``: skeleton prompt spacing (px) and cap per component;
    - ``selection``: the ``sesam`` selection thresholds (stages.select.SesamParams);
    - ``votes``: how the kept masks are merged (stages.select.VoteParams);
    - ``unclaimed``: pixels no kept mask decides: ``ignore`` (255) or ``prediction`` (its class).
    """

    min_confidence: float = 0.0
    min_area: float = 0.001
    spacing: float = 50.0
    max_points: int | None = 5
    selection: SesamParams = field(default_factory=SesamParams)
    votes: VoteParams = field(default_factory=VoteParams)
    unclaimed: str = "ignore"

    def __post_init__(self) -> None:
        if self.unclaimed not in UNCLAIMED:
            raise ValueError(f"unclaimed must be one of {', '.join(UNCLAIMED)}, not '{self.unclaimed}'")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def confident_prediction(prediction: np.ndarray, confidence: np.ndarray, min_confidence: float) -> np.ndarray:
    """The prediction (H, W) uint8 with pixels of confidence (H, W) float below ``min_confidence`` set to 255."""
    return np.where(confidence >= min_confidence, prediction, IGNORE_INDEX).astype(np.uint8)


def refine_prediction(backend: SamBackend, embedding: Embedding, prediction: np.ndarray, confidence: np.ndarray,
                      weak: np.ndarray, params: RefineParams = RefineParams()) -> tuple[np.ndarray, np.ndarray]:
    """The refined pseudo-label (H, W) uint8 (255 = no label) and its confidence (H, W) float32 in [0, 1].

    ``embedding`` is the image's SAM embedding (see ``stages.sam.EmbeddingCache``); ``prediction``
    and ``confidence`` the network's arg-max and its probability; ``weak`` the original weak label
    (all 255 for a boxes source), whose labelled pixels keep their class.
    """
    reference = confident_prediction(prediction, confidence, params.min_confidence)
    min_pixels = max(1, int(round(params.min_area * reference.size)))
    components = decompose(reference, min_area=min_pixels)
    prompts = sample_prompts(components, "skeleton", spacing=params.spacing, max_points=params.max_points,
                             negatives=PROMPT_NEGATIVES, group=PROMPT_GROUP)
    with decoded_masks(backend, embedding, prompts, multimask=True) as masks:
        # The sesam choice, but not select_sesam's overlay of its reference: the dense prediction laid
        # over the merged masks would hide SAM's decision.
        kept = choose_sesam(masks["masks"], masks["iou_predictions"], masks["set_class"], masks["set_component"],
                            reference, components.component_map, params.selection)
        hypothesis_class = kept_classes(kept, masks["set_class"], masks["masks"].shape[1])
        label, vote_confidence = merge_votes(masks["masks"], hypothesis_class, masks["iou_predictions"],
                                             params.votes)
    if params.unclaimed == "prediction":
        undecided = label == IGNORE_INDEX
        label = np.where(undecided, prediction, label).astype(np.uint8)
        vote_confidence = np.where(undecided, confidence, vote_confidence).astype(np.float32)
    return overlay_weak(label, vote_confidence, weak)


class Networks:
    """Trained networks by checkpoint path, loaded once each onto ``device`` (``auto``: CUDA if available).

    Loading a checkpoint whose run stopped before its configured iterations logs a warning: its
    predictions are those of a network that did not finish training.
    """

    def __init__(self, preset: ClassPreset, weights: str = "teacher", device: str = "auto"):
        from .train.distributed import Distributed
        from .train.loop import resolve_device

        self.preset, self.weights = preset, weights
        self.device = resolve_device(device, Distributed())
        self.loaded: dict[str, Any] = {}

    def get(self, path: str):
        """(model, checkpoint) of ``path``; SesamInputError if it is no checkpoint for the preset."""
        from .train.checkpoint import load_network

        if path not in self.loaded:
            model, checkpoint = load_network(path, self.preset, self.weights)
            planned = checkpoint.get("config", {}).get("iterations")
            if planned and checkpoint["iteration"] < planned:
                log.warning("%s stopped at iteration %d of %d: its run did not finish (resume it with "
                            "`sesam train --resume`)", path, checkpoint["iteration"], planned)
            self.loaded[path] = (model.to(self.device), checkpoint)
        return self.loaded[path]


def weak_pixels(record: Record, preset: ClassPreset, size: tuple[int, int]) -> np.ndarray:
    """The labelled pixels (H, W) uint8 of the record's weak label: from its 'components', else its
    'weak' PNG; all 255 for a boxes JSON (a box labels no pixel for sure)."""
    if record.get("components"):
        components = read_components(record["components"])
        if components.image_size != size:
            width, height = components.image_size[1], components.image_size[0]
            raise SesamInputError(record["components"], f"components are {width}x{height} (WxH), "
                                                        f"the photo {size[1]}x{size[0]}")
        return components.weak_label
    require(record, "weak")
    if record["weak"].endswith(".json"):
        return np.full(size, IGNORE_INDEX, np.uint8)
    return read_label(record["weak"], preset, expected_size=size)


@dataclass
class RefinedImage:
    """One image's refine results: arrays (H, W), labels uint8 (255 = none), confidences float32 in [0, 1];
    ``pseudo`` / ``confidence`` are None when only predicting. ``network`` describes the checkpoint used."""

    prediction: np.ndarray
    prediction_confidence: np.ndarray
    network: dict[str, Any]
    pseudo: np.ndarray | None = None
    confidence: np.ndarray | None = None

    def write(self, paths: Mapping[str, str], preset: ClassPreset, meta: Mapping[str, Any]) -> None:
        """Write the outputs named in ``paths`` (keys of PREDICTION_OUTPUTS + REFINED_OUTPUTS): labels
        as palette PNGs, confidences as uint8 PNGs (255 × confidence), each with ``meta``."""
        for key, path in paths.items():
            array = getattr(self, key)
            if key in ("prediction", "pseudo"):
                write_label(path, array, preset, meta)
            else:
                write_confidence(path, array, meta)


@dataclass
class ImageRefiner:
    """Refine one record at a time: predict with its 'checkpoint' and, unless ``backend`` is None,
    refine the prediction with SAM (embeddings through ``cache``, a ``stages.sam.EmbeddingCache``).

    ``window`` / ``stride``: sliding-window prediction (None: the whole image at once).
    """

    networks: Networks
    params: RefineParams = RefineParams()
    backend: SamBackend | None = None
    cache: Any = None
    window: int | None = None
    stride: int | None = None

    @property
    def predict_only(self) -> bool:
        return self.backend is None

    def settings(self) -> dict[str, Any]:
        """The settings an output depends on (and so whether it is up to date)."""
        settings: dict[str, Any] = {"classes": self.networks.preset.name, "weights": self.networks.weights,
                                    "window": self.window, "stride": self.stride}
        if not self.predict_only:
            settings.update(refine=self.params.as_dict(), model=self.backend.identity.as_dict())
        return settings

    def artifact(self) -> tuple[str, str, tuple[str, ...]]:
        """(stage name, record key, companion keys) of a pass: the pseudo-label (or, predicting only, the
        prediction) is the artifact, the other outputs its companions."""
        outputs = PREDICTION_OUTPUTS if self.predict_only else REFINED_OUTPUTS + PREDICTION_OUTPUTS
        stage, key = (PREDICT_STAGE, "prediction") if self.predict_only else (STAGE, "pseudo")
        return stage, key, tuple(k for k in outputs if k != key)

    def refine_into(self, record: Record, paths: Mapping[str, str], report: RoundReport | None = None) -> None:
        """Refine ``record`` and write the outputs named in ``paths`` (output key -> file, see ``artifact``)
        with their provenance; count the new pseudo-label in ``report``."""
        refined = self.refine(record)
        stage = self.artifact()[0]
        refined.write(paths, self.networks.preset, provenance(stage, self.settings(), record, refined.network))
        if refined.pseudo is not None and report is not None:
            report.add(record, refined.pseudo)

    def refine(self, record: Record) -> RefinedImage:
        """The prediction of the record's 'image' by its 'checkpoint', and unless predicting only, the
        refined pseudo-label (its 'weak' or 'components' keep their class)."""
        from .train.predict import predict_label

        require(record, "image")
        require(record, "checkpoint", hint="pass --checkpoint FILE")
        model, trained = self.networks.get(record["checkpoint"])
        image = read_image(record["image"])
        prediction, confidence = predict_label(model, image, self.networks.device, self.window, self.stride)
        network = {"checkpoint": record["checkpoint"], "iteration": trained["iteration"],
                   "architecture": trained["architecture"], "weights": self.networks.weights}
        refined = RefinedImage(prediction, confidence, network)
        if not self.predict_only:
            weak = weak_pixels(record, self.networks.preset, image.shape[:2])
            embedding = self.cache.get_or_compute(self.backend, image)
            refined.pseudo, refined.confidence = refine_prediction(self.backend, embedding, prediction, confidence,
                                                                   weak, self.params)
        return refined


class RoundReport:
    """What one refine pass changed, summed over its images: the share of pixels whose pseudo-label
    differs from the record's incoming 'pseudo', and where records carry 'gt', the mIoU of the
    pseudo-labels before and after (``stages.evaluate``). A 'pseudo' or 'gt' that cannot be read
    is logged once and that comparison dropped: the report never fails an image."""

    def __init__(self, preset: ClassPreset):
        self.preset = preset
        self.images = self.changed = self.compared = self.scored = self.scored_before = 0
        self.before = self.after = None
        self.unreadable: set[str] = set()

    def _read(self, record: Record, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
        if not record.get(key) or key in self.unreadable:
            return None
        try:
            return read_label(record[key], self.preset, expected_size=shape)
        except SesamInputError as exc:
            self.unreadable.add(key)
            log.warning("refine: '%s' no longer compared in this pass: %s", key, exc)
            return None

    def add(self, record: Record, pseudo: np.ndarray) -> None:
        """Count one image: ``record`` as it came in, ``pseudo`` (H, W) uint8 its refined pseudo-label."""
        self.images += 1
        before = self._read(record, "pseudo", pseudo.shape)
        if before is not None:
            self.changed += int((before != pseudo).sum())
            self.compared += pseudo.size
        gt = self._read(record, "gt", pseudo.shape)
        if gt is None:
            return
        num_classes = self.preset.num_classes
        self.after = _summed(self.after, confusion_counts(pseudo, gt, num_classes))
        self.scored += 1
        if before is not None:
            self.before = _summed(self.before, confusion_counts(before, gt, num_classes))
            self.scored_before += 1

    def summary(self) -> str:
        """'N images, X% of the pixels changed, pseudo-label mIoU a -> b' with the parts the records allowed
        (the mIoU before only when every scored image had an incoming 'pseudo')."""
        parts = [f"{self.images} images"]
        if self.compared:
            parts.append(f"{100 * self.changed / self.compared:.1f}% of the pixels changed")
        if self.after is not None and "gt" not in self.unreadable:
            after = 100 * Scores.from_confusion(self.after).miou
            if self.before is not None and self.scored_before == self.scored and "pseudo" not in self.unreadable:
                parts.append(f"pseudo-label mIoU {100 * Scores.from_confusion(self.before).miou:.1f} -> {after:.1f}")
            else:
                parts.append(f"pseudo-label mIoU {after:.1f}")
        return ", ".join(parts)


def _summed(total: np.ndarray | None, counts: np.ndarray) -> np.ndarray:
    return counts if total is None else total + counts


def retrainer(records: Iterable[Record], networks: Networks, checkpoint: str, run_dir: str, device: str = "auto",
              workers: int | None = None):
    """A ``stages.train.loop.Trainer`` for a new network on the refined ``records`` (their 'pseudo'),
    with ``checkpoint``'s own training settings, writing to ``run_dir``; run it with ``resume=True``
    so that a run left there by an interrupted command continues."""
    from .train.data import training_images
    from .train.loop import TrainConfig, Trainer

    settings = dict(networks.get(checkpoint)[1]["config"])
    config = TrainConfig(**{**settings, "scale_range": tuple(settings["scale_range"])})
    images = training_images(list(records), use_weak=config.lambda_weak > 0, use_pseudo=config.lambda_sam > 0)
    return Trainer(config, images, networks.preset, run_dir, device=device, workers=workers)


def refine_pass(refiner: ImageRefiner, stream: PerImageStream, records: Iterable[Record], output_dir: str,
                checkpoint: str | None = None, sink: Callable[[Record], None] = emit,
                report: RoundReport | None = None) -> None:
    """One pass of ``refiner`` over ``records`` with ``checkpoint`` (None: each record's own), each output
    (see ``ImageRefiner.artifact``) in its own folder under ``output_dir``; finished records go to ``sink``."""
    stage_name, key, companions = refiner.artifact()
    stage = stream.stage(stage_name, key, ".png", refiner.settings(), os.path.join(output_dir, key), sink=sink,
                         companions={k: (os.path.join(output_dir, k), ".png") for k in companions})

    def with_checkpoint(rec: Record) -> Record:
        if checkpoint:
            rec["checkpoint"] = checkpoint
        if not rec.get("checkpoint"):
            raise SesamUsageError(f"record '{rec['id']}' names no checkpoint; pass --checkpoint FILE", bad_value=False)
        return rec

    def make(rec: Record, out: str) -> None:
        refiner.refine_into(rec, {key: out, **{k: stage.companion_path(rec, k) for k in companions}}, report)

    stage.run((with_checkpoint(rec) for rec in records), make)


def refine_rounds(refiner: ImageRefiner, stream: PerImageStream, records: Iterable[Record], rounds: int = 1,
                  checkpoint: str | None = None, retrain: Callable[[list[Record], str], str] | None = None) -> None:
    """Refine ``records`` in ``rounds`` passes under ``stream.output_dir`` (with several rounds, round R's
    files under its roundR/), logging each pass's ``RoundReport``; only the last pass's records are
    emitted. Between two passes ``retrain(records, run_dir)`` (needed when ``rounds`` > 1) trains a network
    on the pass's records in run_dir (roundR/train) and returns its checkpoint, which the next pass uses."""
    current = records
    for number in range(1, rounds + 1):
        round_dir = stream.output_dir if rounds == 1 else os.path.join(stream.output_dir, f"round{number}")
        if number > 1:
            checkpoint = retrain(current, os.path.join(round_dir, "train"))
        finished: list[Record] = []
        report = RoundReport(refiner.networks.preset)
        refine_pass(refiner, stream, current, round_dir, checkpoint, emit if number == rounds else finished.append,
                    report)
        if report.images:
            log.info("refine%s: %s", f" round {number}" if rounds > 1 else "", report.summary())
        current = finished
    if refiner.cache is not None:
        log.info("refine: %d images encoded, %d embeddings reused from the cache", refiner.cache.computed,
                 refiner.cache.reused)
