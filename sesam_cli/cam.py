"""``sesam cam``: image-level labels -> a multi-label classifier -> class activation maps and CAM pseudo-labels.

Two subcommands, as ``sesam train`` and ``sesam refine --predict-only`` are two: ``cam train`` fits the
classifier once on a set of images (a run directory with checkpoints, resumable), ``cam predict`` is a
per-image stage (one artifact per image, sharded, skipped when up to date) that can run on any images,
in a pipe, as often as needed (e.g. with another ``--bg-threshold``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Iterable

import click
import numpy as np

from stages.io.artifacts import is_current, provenance, stored_provenance
from stages.cam import DEFAULT_BG_THRESHOLD, cam_label, normalise_cams
from stages.io.cams import STAGE, ClassActivationMaps, read_cams, write_cams
from stages.errors import SesamInputError
from stages.io.images import IMAGE_SUFFIXES, read_image, write_label
from stages.presets import ClassPreset
from stages.io.tags import read_tags, read_tags_csv
from stages.tags import class_outputs, tag_classes
from stages.train import recipe
from stages.records import Record, emit, index_images, read_jsonl, read_records, require

from .options import (PerImageStream, classes_option, device_option, handle_errors, per_image_command,
                      seed_option)
from .training import optimizer_options, run_trainer

log = logging.getLogger("sesam")

PRESENT = ("tags", "predicted")
CHECKPOINT_KEY = "cam_checkpoint"


def _parse_scales(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of numbers") from None
    if not scales or min(scales) <= 0:
        raise click.BadParameter(f"'{value}': scales must be positive")
    return scales


tags_csv_option = click.option(
    "--tags-csv", type=click.Path(dir_okay=False), metavar="FILE",
    help="Image-level labels as CSV lines 'id,class,class,...' (names or indices) instead of the records' 'tags'.")


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


def _training_records(records_file: str | None, tags: TagSource, images_dir: str | None,
                      strip_suffixes: Iterable[str]) -> list[Record]:
    """Records from --records, from the ids of --tags-csv paired with --images, or from stdin."""
    if records_file:
        records = read_jsonl(records_file)
    elif tags.csv is not None and images_dir:
        records = [{"id": image_id} for image_id in tags.csv]
    else:
        return list(read_records([], "image", images_dir, strip_suffixes))
    if images_dir:
        photos = index_images(images_dir, strip_suffixes)
        for record in records:
            if "image" not in record:
                if record["id"] not in photos:
                    raise click.BadParameter(f"no photo named '{record['id']}.*' under {images_dir}",
                                             param_hint="--images")
                record["image"] = photos[record["id"]]
    return records


@click.group()
def cam() -> None:
    """Class activation maps from image-level labels (for the Chen et al. and WeakSAM recipes).

    `cam train` fits a multi-label classifier (the MobileNetV2 backbone of `sesam train`) on images
    and their tags; `cam predict` computes each image's class activation maps (CAM) and its CAM
    pseudo-label, which `select --strategy cam-merge` and `sample-prompts --strategy cam-peaks` read.
    See docs/CAM.md.

    \b
    Example:
      sesam simulate --kind tags --images data/images -o work/tags data/labels > work/tags.jsonl
      sesam cam train --records work/tags.jsonl -o work/cam-train > work/tagged.jsonl
      sesam cam predict -o work/cam < work/tagged.jsonl > work/cam.jsonl
    """


@cam.command("train", short_help="Train a multi-label classifier on image-level labels.")
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory: config.json, metrics.jsonl, iter_N.pt and last.pt checkpoints.")
@click.option("--records", "records_file", type=click.Path(dir_okay=False),
              help="Training records (JSON lines with image and tags); default: stdin.")
@tags_csv_option
@click.option("--images", "images_dir", type=click.Path(file_okay=False),
              help="Directory of photos, paired by id with records (or --tags-csv lines) that lack 'image'.")
@click.option("--strip-suffix", "strip_suffixes", multiple=True, metavar="SUFFIX",
              help="Remove SUFFIX from photo file stems to form ids (repeatable).")
@classes_option
@click.option("--arch", "architecture", default=recipe.CAM_ARCHITECTURE, show_default=True,
              type=click.Choice(recipe.CAM_ARCHITECTURES),
              help="Backbone (the one of `sesam train`'s networks of that name).")
@click.option("--backbone-weights", default=recipe.BACKBONE_WEIGHTS, show_default=True, metavar="imagenet|none|FILE",
              help="Backbone initialisation: ImageNet weights, random, or an ImageNet state-dict file.")
@click.option("--iterations", default=recipe.CAM_ITERATIONS, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=recipe.CAM_BATCH_SIZE, show_default=True, type=click.IntRange(min=2))
@click.option("--crop-size", default=recipe.CAM_CROP_SIZE, show_default=True, type=click.IntRange(min=32))
@click.option("--scale-range", default=recipe.CAM_SCALE_RANGE, show_default=True, nargs=2, type=float,
              metavar="MIN MAX",
              help="Random rescaling factors before cropping.")
@optimizer_options("Classifier")
@seed_option
@click.option("--checkpoint-every", default=recipe.CHECKPOINT_EVERY, show_default=True, type=click.IntRange(min=0),
              help="Write iter_N.pt every N iterations (0: only last.pt at the end).")
@click.option("--resume", is_flag=True, help="Continue the run in -o from last.pt (a new run if there is none).")
@click.option("--overwrite", is_flag=True, help="Start again even though -o holds a run.")
@device_option
@click.option("--workers", default=recipe.CAM_WORKERS, show_default=True, type=click.IntRange(min=0),
              help="Data-loading processes.")
@handle_errors
def train_command(output_dir: str, records_file: str | None, tags_csv: str | None, images_dir: str | None,
                  strip_suffixes: tuple[str, ...], preset: ClassPreset, architecture: str, backbone_weights: str,
                  iterations: int, batch_size: int, crop_size: int, scale_range: tuple[float, float],
                  optimizer: str, lr: float | None, head_lr_multiplier: float, weight_decay: float | None,
                  momentum: float, poly_power: float, seed: int, checkpoint_every: int, resume: bool,
                  overwrite: bool, device: str, workers: int) -> None:
    """Train a multi-label classifier on image-level labels, for class activation maps.

    Reads records with 'image' and 'tags' (a list of class names or indices, or a tags JSON file as
    `sesam simulate --kind tags` writes) from --records or stdin; or --tags-csv lines 'id,class,...'
    with --images. The network is `sesam train`'s backbone (MobileNetV2 with ImageNet weights by
    default), a 1x1 convolution per class and global average pooling; loss: multi-label soft margin.
    The background class of a preset with one is never a tag.

    Writes -o DIR/config.json, metrics.jsonl (loss, share of tag decisions right, lr) and checkpoints
    (iter_N.pt, last.pt); SIGINT/SIGTERM save last.pt and exit 130/143, --resume continues exactly
    there, as `sesam train`. When done, the records go to stdout with a 'cam_checkpoint' key
    (DIR/last.pt), so `sesam cam predict` can follow in a pipe.

    \b
    Example:
      sesam cam train --records work/tags.jsonl --iterations 1000 -o work/cam-train > work/tagged.jsonl
      sesam cam train --tags-csv labels.csv --images data/JPEGImages --classes voc -o work/cam-train
    """
    from stages.train.classifier import CamTrainConfig, CamTrainer, TaggedImage

    tags_of = TagSource(preset, tags_csv)
    records = _training_records(records_file, tags_of, images_dir, strip_suffixes)
    images = []
    for record in records:
        require(record, "image")
        images.append(TaggedImage(record["id"], record["image"], tuple(int(t) for t in tags_of(record))))
    try:
        config = CamTrainConfig(architecture, backbone_weights, iterations, batch_size, crop_size, scale_range,
                                optimizer, lr, weight_decay, momentum, head_lr_multiplier, poly_power, seed,
                                checkpoint_every)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    trainer = CamTrainer(config, images, preset, output_dir, device=device, workers=workers)
    result = run_trainer(trainer, resume, overwrite)
    counts = np.bincount(np.concatenate([np.array(i.tags, np.int64) for i in images]), minlength=preset.num_classes)
    log.info("cam train: %d images, %d iterations -> %s; tagged images per class: %s", len(images),
             result.iteration, result.checkpoint,
             ", ".join(f"{preset.classes[c]} {counts[c]}" for c in tag_classes(preset)))
    for record in records:
        emit({**record, CHECKPOINT_KEY: result.checkpoint})


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Classifiers:
    """Trained classifiers by checkpoint path, loaded once each on ``device``, with their provenance."""

    def __init__(self, preset: ClassPreset, device: str):
        from stages.train.distributed import Distributed
        from stages.train.loop import resolve_device

        self.preset = preset
        self.device = resolve_device(device, Distributed())
        self.loaded: dict[str, tuple[Any, dict[str, Any]]] = {}

    def get(self, path: str) -> tuple[Any, dict[str, Any]]:
        """(model, provenance) of checkpoint ``path``."""
        from stages.train.classifier import load_classifier

        if path not in self.loaded:
            model, checkpoint = load_classifier(path, self.preset)
            model_info = {"name": checkpoint["architecture"], "checkpoint": os.path.abspath(path),
                          "iteration": checkpoint["iteration"], "sha256": _sha256(path)}
            self.loaded[path] = (model.to(self.device), model_info)
        return self.loaded[path]


def _reusable_cams(out: str, params: dict[str, Any], inputs: Record) -> ClassActivationMaps | None:
    """The CAMs of an existing artifact made with the same parameters but another --bg-threshold."""
    stored = stored_provenance(out)
    if not stored or stored.get("stage") != STAGE or not stored.get("params"):
        return None
    earlier = json.loads(stored["params"])
    if {**earlier, "bg_threshold": params["bg_threshold"]} != params or not is_current(out, STAGE, earlier, inputs):
        return None
    return read_cams(out)


@cam.command("predict", short_help="Class activation maps and CAM pseudo-labels, one per image.")
@per_image_command
@classes_option
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="A `sesam cam train` checkpoint [default: each record's 'cam_checkpoint'].")
@tags_csv_option
@click.option("--present", type=click.Choice(PRESENT), default="tags", show_default=True,
              help="The classes an image contains: its tags (records' 'tags' or --tags-csv), or those the "
                   "classifier predicts (probability >= --score-threshold).")
@click.option("--score-threshold", default=recipe.CAM_SCORE_THRESHOLD, show_default=True, type=click.FloatRange(0, 1),
              help="--present predicted: a class is present from this probability on.")
@click.option("--scales", default=",".join(str(s) for s in recipe.CAM_SCALES), show_default=True,
              callback=_parse_scales,
              help="Comma-separated rescaling factors of the photo; the CAMs of all scales are summed.")
@click.option("--flip/--no-flip", default=True, show_default=True, help="Also add each scale's mirrored CAMs.")
@click.option("--bg-threshold", default=DEFAULT_BG_THRESHOLD, show_default=True, type=click.FloatRange(0, 1),
              help="Pixels whose highest CAM (each normalised to a maximum of 1) is below this are background "
                   "(presets with a background class) or 255.")
@device_option
@handle_errors
def predict_command(stream: PerImageStream, preset: ClassPreset, checkpoint: str | None, tags_csv: str | None,
                    present: str, score_threshold: float, scales: tuple[float, ...], flip: bool,
                    bg_threshold: float, device: str) -> None:
    """Compute each image's class activation maps (CAM) and its CAM pseudo-label.

    Reads records with 'image' (and 'tags' unless --present predicted or --tags-csv), or photos as
    INPUTS. For each class the image contains, the classifier's CAM (its 1x1 convolution's ReLU
    output) is summed over --scales and their mirror images, resized to the photo, and divided by
    its maximum. Writes per image, in OUTPUT:

    \b
      ID.h5   record key 'cam_scores': 'cams' float16 (C, H, W), 'cam_class' (C,),
              'class_scores' (K,) classifier probabilities, provenance (docs/FORMATS.md);
      ID.png  record key 'cam': the CAM pseudo-label, the present class of the highest CAM,
              background (or 255) where it is below --bg-threshold.

    An image whose artifacts are up to date (same options and --checkpoint, newer than the photo,
    the tags and the checkpoint) is skipped; after a change of --bg-threshold alone only the
    pseudo-labels are redone, from the stored CAMs.

    \b
    Example:
      sesam cam predict --checkpoint work/cam-train/last.pt --classes camvid -o work/cam < work/val-tags.jsonl \\
        | sesam decompose --key cam --classes camvid -o work/cam-components \\
        | sesam sample-prompts --strategy cam-peaks -o work/peaks \\
        | sesam sam-predict -o work/peak-masks \\
        | sesam select --reference --classes camvid -o work/pseudo > work/pseudo.jsonl
      sesam evaluate --key cam --classes camvid < work/pseudo.jsonl
    """
    from stages.train.classifier import class_activation_maps

    params: dict[str, Any] = {"classes": preset.name, "present": present, "scales": list(scales), "flip": flip,
                              "bg_threshold": bg_threshold}
    if present == "predicted":
        params["score_threshold"] = score_threshold
    if checkpoint:
        params["checkpoint"] = os.path.abspath(checkpoint)
    classifiers = Classifiers(preset, device)
    tags_of = TagSource(preset, tags_csv)
    background = 0 if preset.has_background else None
    classes = tag_classes(preset)
    stage = stream.stage(STAGE, "cam_scores", ".h5", params, companions={"cam": (stream.output_dir, ".png")})
    present_counts: list[int] = []

    def make(record: Record, out: str) -> None:
        require(record, "image", CHECKPOINT_KEY)
        inputs = {k: v for k, v in record.items() if k not in ("cam", "cam_scores")}
        maps = None if stream.overwrite else _reusable_cams(out, params, inputs)
        model, model_info = classifiers.get(record[CHECKPOINT_KEY])
        if maps is None:
            if present == "tags":
                outputs = class_outputs(tags_of(record), preset)
                select = lambda scores: outputs  # noqa: E731 - the tags decide, whatever the scores
            else:
                select = lambda scores: np.flatnonzero(scores >= score_threshold)  # noqa: E731
            cams, scores, chosen = class_activation_maps(model, read_image(record["image"]), scales, flip,
                                                         classifiers.device, select)
            class_scores = np.full(preset.num_classes, np.nan, np.float32)
            class_scores[classes] = scores
            maps = ClassActivationMaps(normalise_cams(cams), classes[chosen], class_scores)
        meta = provenance(STAGE, params, record, model_info)
        write_label(stage.companion_path(record, "cam"), cam_label(maps, background, bg_threshold), preset, meta)
        write_cams(out, maps, meta)
        present_counts.append(len(maps.cam_class))

    stage.run(_with_checkpoint(stream.records("image", IMAGE_SUFFIXES), checkpoint), make)
    if present_counts:
        log.info("cam predict: %d image(s) computed, %.1f present classes on average", len(present_counts),
                 float(np.mean(present_counts)))


def _with_checkpoint(records: Iterable[Record], checkpoint: str | None) -> Iterable[Record]:
    """Records with --checkpoint as their 'cam_checkpoint' (so that a newer checkpoint redoes the images)."""
    for record in records:
        if checkpoint:
            record[CHECKPOINT_KEY] = checkpoint
        yield record
