"""Running a ``stages.train.loop.Trainer`` from a command (train, cam train, refine --rounds): progress
on stderr, a one-line summary, and the exit status of a run stopped by a signal."""

from __future__ import annotations

import logging
import signal
from typing import Any, Callable

import click

from stages.io.atomic import remove_stale_temporaries
from stages.progress import format_duration, progress
from stages.train import recipe

from .options import compose


log = logging.getLogger("sesam")


def per_optimizer(values: dict[str, float]) -> str:
    """A default that depends on the optimizer, for help texts: ``[sgd: 0.01, adamw: 0.0001]``."""
    return "[" + ", ".join(f"{name}: {value}" for name, value in values.items()) + "]"


run_directory_option = click.option(
    "-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False),
    help="Run directory: config.json, metrics.jsonl, iter_N.pt and last.pt checkpoints.")
backbone_weights_option = click.option(
    "--backbone-weights", default=recipe.BACKBONE_WEIGHTS, show_default=True, metavar="imagenet|none|FILE",
    help="Backbone initialisation: ImageNet weights, random, or an ImageNet state-dict file.")
checkpoint_options = compose(
    click.option("--checkpoint-every", default=recipe.CHECKPOINT_EVERY, show_default=True, type=click.IntRange(min=0),
                 help="Write iter_N.pt every N iterations (0: only last.pt at the end)."),
    click.option("--resume", is_flag=True, help="Continue the run in -o from last.pt (a new run if there is none)."),
    click.option("--overwrite", is_flag=True, help="Start again even though -o holds a run."))


def scale_range_option(default: tuple[float, float]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--scale-range MIN MAX with ``default``."""
    return click.option("--scale-range", default=default, show_default=True, nargs=2, type=float, metavar="MIN MAX",
                        help="Random rescaling factors before cropping.")


def optimizer_options(head: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The optimiser options that ``train`` and ``cam train`` share (defaults from ``stages.train.recipe``):
    --optimizer, --lr, --head-lr-multiplier (``head`` names what trains at lr × it), --weight-decay,
    --momentum, --poly-power."""
    options = [
        click.option("--optimizer", default=recipe.OPTIMIZER, show_default=True, type=click.Choice(recipe.OPTIMIZERS)),
        click.option("--lr", type=float, help=f"Backbone learning rate {per_optimizer(recipe.LEARNING_RATE)}."),
        click.option("--head-lr-multiplier", default=recipe.HEAD_LR_MULTIPLIER, show_default=True,
                     help=f"{head} learning rate = lr × this."),
        click.option("--weight-decay", type=float, help=per_optimizer(recipe.WEIGHT_DECAY)),
        click.option("--momentum", default=recipe.MOMENTUM, show_default=True, help="SGD momentum."),
        click.option("--poly-power", default=recipe.POLY_POWER, show_default=True,
                     help="lr × (1 - it/iterations)^power."),
    ]
    return compose(*options)


class TrainingProgress:
    """Training progress on stderr (``stream.progress``: a bar on a terminal, a line every
    $SESAM_PROGRESS_INTERVAL seconds otherwise) with the loss and learning rate. The bar starts at
    the first reported iteration, so that a resumed run's speed and ETA count only its own iterations."""

    def __init__(self, iterations: int):
        self.iterations = iterations
        self.bar = None

    def __call__(self, entry: dict[str, Any]) -> None:
        if "val_miou" in entry:
            log.info("iteration %d: validation mIoU %.4f", entry["iteration"], entry["val_miou"])
            return
        done = entry["iteration"]
        if self.bar is None:
            self.bar = progress(None, "train", total=self.iterations, unit="it", initial=done - 1)
        self.bar.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{entry['lr']:.2e}", refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summary(result, iterations: int) -> str:
    """The one-line summary of a finished TrainResult: iterations, time, speed, last loss, the teacher's
    confident share (when its term is on) and val mIoU."""
    if result.iteration == result.start:
        return f"train: nothing to do, {result.checkpoint} holds all {result.iteration} iterations"
    trained = result.iteration - result.start
    span = f"{trained} iterations" if result.start == 0 else f"iterations {result.start + 1}-{result.iteration}"
    line = f"train: {span} of {iterations} in {format_duration(result.seconds)} ({trained / result.seconds:.2f} it/s)"
    if result.last is not None:
        line += f", last loss {result.last['loss']:.4f}"
        if "confident_fraction" in result.last:
            line += f", teacher confident on {100 * result.last['confident_fraction']:.0f}% of the pixels"
    if result.validation is not None:
        line += f", val mIoU {100 * result.validation['val_miou']:.1f}"
    return f"{line} -> {result.checkpoint}"


def run_trainer(trainer, resume: bool = False, overwrite: bool = False):
    """Run a ``stages.train.loop.Trainer`` with progress on stderr (see TrainingProgress) and a one-line
    summary at the end; returns its TrainResult. A run stopped by SIGINT/SIGTERM exits 128 + the signal
    number, saying how to resume. Temporaries that a killed run left in the run directory
    (``.iter_N.pt.*.tmp``) are removed first."""
    if trainer.distributed.is_main:
        for path in remove_stale_temporaries(trainer.output_dir):
            log.info("train: removed %s, left behind by a killed run", path)
    report = TrainingProgress(trainer.config.iterations)
    try:
        result = trainer.run(resume=resume, overwrite=overwrite,
                             on_iteration=report if trainer.distributed.is_main else None)
    finally:
        report.close()
    if result.stopped_by is not None:
        log.error("%s at iteration %d: checkpoint %s; continue with the same command and --resume",
                  signal.Signals(result.stopped_by).name, result.iteration, result.checkpoint)
        raise click.exceptions.Exit(128 + result.stopped_by)
    if trainer.distributed.is_main:
        log.info("%s", summary(result, trainer.config.iterations))
    return result
