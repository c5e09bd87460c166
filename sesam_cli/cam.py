"""``sesam cam``: image-level labels -> a multi-label classifier -> class activation maps and CAM pseudo-labels.

Two subcommands, as ``sesam train`` and ``sesam refine --predict-only`` are two: ``cam train`` fits the
classifier once on a set of images (a run directory with checkpoints, resumable), ``cam predict`` is a
per-image stage (one artifact per image, sharded, skipped when up to date) that can run on any images,
in a pipe, as often as needed (e.g. with another ``--bg-threshold``). This module holds the group and
``cam train``; ``cam predict`` is in ``cam_predict.py``.
"""

from __future__ import annotations

import logging

import click

from stages.cam_predict import CHECKPOINT_KEY, TagSource, tag_counts, tagged_images, training_records
from stages.presets import ClassPreset
from stages.records import emit_all
from stages.train import recipe

from .cam_predict import predict_command, tags_csv_option
from .options import classes_option, device_option, handle_errors, seed_option, strip_suffix_option
from .training import (backbone_weights_option, checkpoint_options, optimizer_options, run_directory_option,
                       run_trainer, scale_range_option)

log = logging.getLogger("sesam")


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
@run_directory_option
@click.option("--records", "records_file", type=click.Path(dir_okay=False),
              help="Training records (JSON lines with image and tags); default: stdin.")
@tags_csv_option
@click.option("--images", "images_dir", type=click.Path(file_okay=False),
              help="Directory of photos, paired by id with records (or --tags-csv lines) that lack 'image'.")
@strip_suffix_option
@classes_option
@click.option("--arch", "architecture", default=recipe.CAM_ARCHITECTURE, show_default=True,
              type=click.Choice(recipe.CAM_ARCHITECTURES),
              help="Backbone (the one of `sesam train`'s networks of that name).")
@backbone_weights_option
@click.option("--iterations", default=recipe.CAM_ITERATIONS, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=recipe.CAM_BATCH_SIZE, show_default=True, type=click.IntRange(min=2))
@click.option("--crop-size", default=recipe.CAM_CROP_SIZE, show_default=True, type=click.IntRange(min=32))
@scale_range_option(recipe.CAM_SCALE_RANGE)
@optimizer_options("Classifier")
@seed_option
@checkpoint_options
@device_option
@click.option("--workers", default=recipe.CAM_WORKERS, show_default=True, type=click.IntRange(min=0),
              help="Data-loading processes.")
@handle_errors
def train_command(output_dir: str, records_file: str | None, tags_csv: str | None, images_dir: str | None,
                  strip_suffixes: tuple[str, ...], preset: ClassPreset, resume: bool, overwrite: bool, device: str,
                  workers: int, **options) -> None:
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
    from stages.train.classifier import CamTrainConfig, CamTrainer

    tags_of = TagSource(preset, tags_csv)
    records = training_records(records_file, tags_of, images_dir, strip_suffixes)
    images = tagged_images(records, tags_of)
    try:
        config = CamTrainConfig(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    trainer = CamTrainer(config, images, preset, output_dir, device=device, workers=workers)
    result = run_trainer(trainer, resume, overwrite)
    log.info("cam train: %d images, %d iterations -> %s; tagged images per class: %s", len(images),
             result.iteration, result.checkpoint, tag_counts((i.tags for i in images), preset))
    emit_all(records, {CHECKPOINT_KEY: result.checkpoint})


cam.add_command(predict_command)
