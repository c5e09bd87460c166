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


log = logging.getLogger("sesam")


def per_optimizer(values: dict[str, float]) -> str:
    """A default that depends on the optimizer, for help texts: ``[sgd: 0.01, adamw: 0.0001]``."""
    return "[" + ", ".join(f"{name}: {value}" for name, value in values.items()) + "]"


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

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


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
