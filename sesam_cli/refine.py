"""``sesam refine``: predict with a trained network, and turn the predictions into SAM pseudo-labels."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import click
import numpy as np

from stages.io.artifacts import provenance
from stages.errors import SesamInputError
from stages.io.images import IMAGE_SUFFIXES, read_image, read_label, write_confidence, write_label
from stages.presets import ClassPreset

from .models import backend_from_options, backend_option, cache_dir_option, device_option, embedding_cache, \
    model_option, model_type_option
from .options import classes_option, handle_errors, per_image_options
from .stream import PerImageStage, Record, emit, read_records, require
from .train import run_trainer

log = logging.getLogger("sesam")

STAGE = "refine"
PREDICT_STAGE = "predict"
OUTPUTS = ("pseudo", "confidence", "prediction", "prediction_confidence")


def _weak_pixels(record: Record, preset: ClassPreset, size: tuple[int, int]):
    """The labelled pixels of the record's weak label (all 255 for boxes): from its components, else its PNG."""
    from stages.io.components import read_components

    if record.get("components"):
        components = read_components(record["components"])
        if components.image_size != size:
            raise SesamInputError(record["components"], f"components are {components.image_size[1]}x"
                                                        f"{components.image_size[0]} (WxH), the photo {size[1]}x{size[0]}")
        return components.weak_label
    require(record, "weak")
    if record["weak"].endswith(".json"):
        return np.full(size, 255, np.uint8)
    return read_label(record["weak"], preset, expected_size=size)


class Networks:
    """Trained networks by checkpoint path, loaded once each, on ``device``."""

    def __init__(self, preset: ClassPreset, weights: str, device: str):
        from stages.train.distributed import Distributed
        from stages.train.loop import resolve_device

        self.preset, self.weights = preset, weights
        self.device = resolve_device(device, Distributed())
        self.loaded: dict[str, Any] = {}

    def get(self, path: str):
        """(model, checkpoint) of ``path``; SesamInputError if it is no checkpoint for the preset."""
        from stages.train.checkpoint import load_network

        if path not in self.loaded:
            model, checkpoint = load_network(path, self.preset, self.weights)
            self.loaded[path] = (model.to(self.device), checkpoint)
        return self.loaded[path]


@dataclass
class Refiner:
    """The per-image work of one refine pass: predict, and unless ``predict_only``, refine with SAM."""

    networks: Networks
    window: int | None
    stride: int | None
    predict_only: bool
    refine_params: Any
    backend: Any
    cache: Any
    overwrite: bool
    keep_going: bool

    def params(self) -> dict[str, Any]:
        """The settings an output depends on (and so whether it is up to date)."""
        params: dict[str, Any] = {"classes": self.networks.preset.name, "weights": self.networks.weights,
                                  "window": self.window, "stride": self.stride}
        if not self.predict_only:
            params.update(refine=self.refine_params.as_dict(), model=self.backend.identity.as_dict())
        return params

    def stage(self, output_dir: str, shard, sink: Callable[[Record], None]) -> PerImageStage:
        folder = {key: os.path.join(output_dir, key) for key in OUTPUTS}
        if self.predict_only:
            return PerImageStage(PREDICT_STAGE, "prediction", folder["prediction"], ".png", self.params(),
                                 self.overwrite, shard, self.keep_going, sink=sink,
                                 companions={"prediction_confidence": (folder["prediction_confidence"], ".png")})
        return PerImageStage(STAGE, "pseudo", folder["pseudo"], ".png", self.params(), self.overwrite, shard,
                             self.keep_going, sink=sink, companions={key: (folder[key], ".png") for key in OUTPUTS[1:]})

    def run(self, records: Iterable[Record], output_dir: str, checkpoint: str | None, shard,
            sink: Callable[[Record], None]) -> None:
        """Process ``records`` into ``output_dir`` with ``checkpoint`` (None: each record's own)."""
        from stages.train.predict import predict_label
        from stages.refine import refine_prediction

        stage = self.stage(output_dir, shard, sink)
        networks = self.networks

        def with_checkpoint(rec: Record) -> Record:
            if checkpoint:
                rec["checkpoint"] = checkpoint
            if not rec.get("checkpoint"):
                raise click.UsageError(f"record '{rec['id']}' names no checkpoint; pass --checkpoint FILE")
            return rec

        def make(rec: Record, out: str) -> None:
            require(rec, "image")
            model, trained = networks.get(rec["checkpoint"])
            image = read_image(rec["image"])
            prediction, confidence = predict_label(model, image, networks.device, self.window, self.stride)
            network = {"checkpoint": rec["checkpoint"], "iteration": trained["iteration"],
                       "architecture": trained["architecture"], "weights": networks.weights}
            meta = provenance(stage.stage, stage.params, rec, network)
            prediction_path = out if self.predict_only else stage.companion_path(rec, "prediction")
            write_label(prediction_path, prediction, networks.preset, meta)
            write_confidence(stage.companion_path(rec, "prediction_confidence"), confidence, meta)
            if self.predict_only:
                return
            weak = _weak_pixels(rec, networks.preset, image.shape[:2])
            embedding = self.cache.get_or_compute(self.backend, image)
            label, label_confidence = refine_prediction(self.backend, embedding, prediction, confidence, weak,
                                                        self.refine_params)
            write_confidence(stage.companion_path(rec, "confidence"), label_confidence, meta)
            write_label(out, label, networks.preset, meta)

        stage.run((with_checkpoint(rec) for rec in records), make)


def _retrain(records: list[Record], networks: Networks, checkpoint: str, run_dir: str, device: str,
             workers: int | None) -> str:
    """Train a new network on the refined records with ``checkpoint``'s own settings; its last.pt.

    Resumes a run left in ``run_dir`` by an interrupted command, so rerunning the command continues it.
    """
    from stages.train.data import training_images
    from stages.train.loop import TrainConfig, Trainer

    settings = dict(networks.get(checkpoint)[1]["config"])
    config = TrainConfig(**{**settings, "scale_range": tuple(settings["scale_range"])})
    images = training_images(records, use_weak=config.lambda_weak > 0, use_pseudo=config.lambda_sam > 0)
    trainer = Trainer(config, images, networks.preset, run_dir, device=device, workers=workers)
    return run_trainer(trainer, resume=True).checkpoint


@click.command(short_help="Predict with a trained network and refine its predictions with SAM.")
@per_image_options
@classes_option
@click.option("--checkpoint", "checkpoint", type=click.Path(dir_okay=False),
              help="The trained network (sesam train's last.pt) [default: each record's 'checkpoint'].")
@click.option("--weights", type=click.Choice(["teacher", "student"]), default="teacher", show_default=True,
              help="Predict with the EMA teacher or the student of the checkpoint.")
@click.option("--window", type=click.IntRange(min=16), default=None,
              help="Predict in sliding windows of this size (default: the whole image at once).")
@click.option("--stride", type=click.IntRange(min=1), default=None, help="Window stride [default: 2/3 window].")
@click.option("--predict-only", is_flag=True,
              help="Only write predictions and confidences (records need only 'image'); no SAM.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Prediction pixels less confident than this are not prompted.")
@click.option("--min-area", type=click.FloatRange(0, 1), default=0.001, show_default=True,
              help="Prediction components smaller than this fraction of the image are not prompted.")
@click.option("--spacing", type=click.FloatRange(min=1), default=50.0, show_default=True,
              help="Skeleton prompt spacing in pixels.")
@click.option("--max-points", type=click.IntRange(min=1), default=5, show_default=True, help="Prompts per component.")
@click.option("--unclaimed", type=click.Choice(["ignore", "prediction"]), default="ignore", show_default=True,
              help="Pixels no SAM mask decides: 255, or the prediction's class.")
@backend_option
@model_option
@click.option("--sam-checkpoint", type=click.Path(dir_okay=False), default=None,
              help="sam backend: the segment-anything checkpoint file [default: the official file of --model-type].")
@model_type_option
@device_option
@cache_dir_option
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Refine, retrain (with the checkpoint's own training settings) and refine again, N rounds.")
@click.option("--workers", type=click.IntRange(min=0),
              help="--rounds: data-loading processes of the retraining [the device's default, as train].")
@handle_errors
def refine(inputs, images_dir, strip_suffixes, output_dir, overwrite, shard, keep_going, preset, checkpoint,
           weights, window, stride, predict_only, min_confidence, min_area, spacing, max_points, unclaimed,
           backend, model, sam_checkpoint, model_type, device, cache_dir, rounds, workers) -> None:
    """Predict with a trained network; refine the predictions with SAM into new pseudo-labels.

    Reads records with 'image' and 'weak' (or 'components') on stdin, or weak-label files with
    --images. For each image it writes, under -o DIR, the prediction (prediction/ID.png, preset
    palette, record key 'prediction'; `sesam evaluate` reads it) and its confidence
    (prediction_confidence/ID.png, uint8 = 255 × probability). Then the prediction is decomposed,
    prompted along skeletons, run through SAM (cached embeddings: no image is encoded twice) and
    selected by coverage of the prediction; the original weak labels keep priority. The refined
    pseudo-label (pseudo/ID.png) and its confidence (confidence/ID.png) replace the record's
    'pseudo' and 'confidence', so `sesam train` can read the records next.

    With --rounds N, one command runs N refinements with a retraining between each two (the
    checkpoint's own settings, in DIR/roundR/train); round R's files go to DIR/roundR/ and only the
    last round's records are written.

    \b
    Example:
      sesam train --records work/pseudo.jsonl -o work/train \\
        | sesam refine -o work/refine1 > work/refined1.jsonl
      sesam refine --checkpoint work/train/last.pt --predict-only -o work/val-pred < work/val.jsonl \\
        | sesam evaluate --key prediction
      sesam refine --checkpoint work/train/last.pt --rounds 3 -o work/rounds < work/pseudo.jsonl
    """
    from stages.refine import RefineParams

    if rounds > 1 and (predict_only or shard):
        raise click.UsageError("--rounds retrains on all images: it does not combine with --predict-only or --shard")
    key, suffixes = ("image", IMAGE_SUFFIXES) if predict_only else ("weak", (".png", ".json"))
    records = read_records(inputs, key, images_dir, strip_suffixes, suffixes)
    networks = Networks(preset, weights, device)
    refine_params = RefineParams(min_confidence, min_area, spacing, max_points, unclaimed=unclaimed)
    sam = None if predict_only else backend_from_options(backend, model, sam_checkpoint, model_type, device)
    cache = None if predict_only else embedding_cache(cache_dir)
    refiner = Refiner(networks, window, stride, predict_only, refine_params, sam, cache, overwrite, keep_going)
    current = records
    for number in range(1, rounds + 1):
        round_dir = output_dir if rounds == 1 else os.path.join(output_dir, f"round{number}")
        if number > 1:
            checkpoint = _retrain(current, networks, current[0]["checkpoint"], os.path.join(round_dir, "train"),
                                  device, workers)
        finished: list[Record] = []
        refiner.run(current, round_dir, checkpoint, shard, emit if number == rounds else finished.append)
        current = finished
    if cache is not None:
        log.info("refine: %d images encoded, %d embeddings reused from the cache", cache.computed, cache.reused)
