"""``sesam train``: train a segmentation network on weak labels, SAM pseudo-labels and its own teacher."""

from __future__ import annotations

import click

from stages.records import emit_all
from stages.train import ARCHITECTURE_NAMES, DEFAULT_ARCHITECTURE, recipe

from .options import classes_option, device_option, handle_errors, seed_option, strip_suffix_option
from .training import (backbone_weights_option, checkpoint_options, optimizer_options, per_choice,
                       run_directory_option, run_trainer, scale_range_option)


def _per_device(field: str) -> str:
    """The device types' defaults of a setting, for help texts: ``[cpu: 8, cuda: 16]``."""
    return per_choice({device: getattr(defaults, field) for device, defaults in recipe.DEVICE_DEFAULTS.items()})


@click.command(short_help="Train a segmentation network on weak labels and pseudo-labels.")
@run_directory_option
@click.option("--records", "records_file", type=click.Path(dir_okay=False),
              help="Training records (JSON lines with image, weak, pseudo); default: stdin.")
@click.option("--images", "images_dir", type=click.Path(file_okay=False),
              help="Directory of photos, paired by file stem with label directories or stdin records that lack 'image'.")
@click.option("--weak", "weak_dir", type=click.Path(file_okay=False),
              help="Instead of records: a directory of weak-label PNGs (with --images).")
@click.option("--pseudo", "pseudo_dir", type=click.Path(file_okay=False),
              help="Instead of records: a directory of SAM pseudo-label PNGs (with --images).")
@strip_suffix_option
@click.option("--val", "val_file", type=click.Path(dir_okay=False),
              help="Held-out records (JSON lines with image and gt) scored during training.")
@click.option("--val-every", default=recipe.VAL_EVERY, show_default=True, type=click.IntRange(min=0),
              help="Score --val every N iterations (0: only at the end).")
@classes_option
@click.option("--arch", "architecture", default=DEFAULT_ARCHITECTURE, show_default=True,
              type=click.Choice(ARCHITECTURE_NAMES), help="Network (MobileNetV2 for CPUs, ResNets for GPUs).")
@backbone_weights_option
@click.option("--init-from", type=click.Path(dir_okay=False),
              help="Start from the weights of a sesam checkpoint (same --arch and --classes).")
@click.option("--iterations", type=click.IntRange(min=1), help=f"Training iterations {_per_device('iterations')}.")
@click.option("--batch-size", type=click.IntRange(min=2),
              help=f"Global batch size, split over torchrun processes {_per_device('batch_size')}.")
@click.option("--crop-size", type=click.IntRange(min=16), help=f"Square training crop {_per_device('crop_size')}.")
@scale_range_option(recipe.SCALE_RANGE)
@optimizer_options("Head")
@click.option("--warmup-iterations", default=recipe.WARMUP_ITERATIONS, show_default=True, type=click.IntRange(min=0),
              help="Linear learning-rate warm-up (at most a tenth of the run).")
@click.option("--lambda-weak", default=recipe.LOSS_WEIGHT, show_default=True, type=click.FloatRange(min=0),
              help="Weight of the weak-label loss (0: off).")
@click.option("--lambda-sam", default=recipe.LOSS_WEIGHT, show_default=True, type=click.FloatRange(min=0),
              help="Weight of the SAM pseudo-label loss (0: off).")
@click.option("--lambda-pl", default=recipe.LOSS_WEIGHT, show_default=True, type=click.FloatRange(min=0),
              help="Weight of the loss on the EMA teacher's confident predictions (0: off, no teacher pass).")
@click.option("--pl-threshold", default=recipe.PL_THRESHOLD, show_default=True, type=click.FloatRange(0, 1),
              help="Teacher confidence τ above which its prediction is a target.")
@click.option("--ema-momentum", default=recipe.EMA_MOMENTUM, show_default=True, type=click.FloatRange(0, 1),
              help="Teacher = EMA of the student with this momentum.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision (CUDA only).")
@seed_option
@checkpoint_options
@device_option
@click.option("--workers", type=click.IntRange(min=0), help=f"Data-loading processes {_per_device('workers')}.")
@click.option("--cache-mib", type=click.IntRange(min=0),
              help="Decode the training photos and labels into memory once when they take at most this many "
                   "MiB, else read them from disk at each use (0: always) [a quarter of the RAM, at most 16 GiB].")
@handle_errors
def train(output_dir: str, records_file: str | None, images_dir: str | None, weak_dir: str | None,
          pseudo_dir: str | None, strip_suffixes: tuple[str, ...], val_file: str | None, preset, resume: bool,
          overwrite: bool, device: str, workers: int | None, cache_mib: int | None, **options) -> None:
    """Train a DeepLabV3 network on the weak labels, SAM pseudo-labels and an EMA teacher's predictions.

    Reads training records (image, weak, pseudo) from --records or stdin, or pairs --weak/--pseudo
    label directories with --images. Loss = λ_weak·CE(weak) + λ_sam·CE(pseudo) + λ_pl·CE(teacher
    predictions with confidence ≥ τ); a weight of 0 switches a source off. The teacher (an EMA of the
    student) sees a weakly augmented view, the student a strongly augmented one.

    Unset schedule, batch, crop and loader options take the device's defaults (shown in brackets;
    docs/TRAINING.md says how they were chosen). On a CPU a run of the defaults takes hours: the
    demo trains 200 iterations of batch 8 on 128-pixel crops.

    Writes -o DIR/config.json, metrics.jsonl (one line per iteration) and checkpoints (iter_N.pt,
    last.pt), and ends with a one-line summary (iterations, time, last loss, val mIoU).
    SIGINT/SIGTERM save last.pt after the running iteration and exit 130/143; --resume continues
    exactly there (with another --iterations the schedule is recomputed for the new length). When
    training finishes, the records go to stdout with a `checkpoint` key (DIR/last.pt), so `sesam
    refine` can follow in a pipe. Runs under torchrun with DistributedDataParallel (only rank 0 writes).

    \b
    Example:
      sesam train --records work/pseudo.jsonl --val work/val.jsonl --iterations 2000 \\
        -o work/train > work/trained.jsonl
      torchrun --nproc_per_node 4 --no-python sesam train --arch deeplabv3_resnet101 \\
        --records work/pseudo.jsonl -o work/train-r101
    """
    from stages.train.data import training_images, training_records
    from stages.train.loop import TrainConfig, Trainer, validation_images

    records = training_records(records_file, images_dir, weak_dir, pseudo_dir, strip_suffixes)
    try:
        config = TrainConfig(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    images = training_images(records, use_weak=config.lambda_weak > 0, use_pseudo=config.lambda_sam > 0)
    try:
        trainer = Trainer(config, images, preset, output_dir, validation_images(val_file), device=device,
                          workers=workers, cache_bytes=None if cache_mib is None else cache_mib << 20)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    result = run_trainer(trainer, resume, overwrite)
    if trainer.distributed.is_main:
        emit_all(records, {"checkpoint": result.checkpoint})
