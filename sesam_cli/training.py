"""The options training commands share (train, cam train), and running a ``stages.train.loop.Trainer``
from a command (train, cam train, refine --rounds) with the exit status of a run stopped by a signal."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import click

from stages.train import recipe
from stages.train.report import run_with_progress

from .options import compose


def per_choice(values: Mapping[str, Any]) -> str:
    """Defaults that depend on a choice (the optimizer, the device), for help texts: ``[sgd: 0.01, adamw: 0.0001]``."""
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
        click.option("--lr", type=float, help=f"Backbone learning rate {per_choice(recipe.LEARNING_RATE)}."),
        click.option("--head-lr-multiplier", default=recipe.HEAD_LR_MULTIPLIER, show_default=True,
                     help=f"{head} learning rate = lr × this."),
        click.option("--weight-decay", type=float, help=per_choice(recipe.WEIGHT_DECAY)),
        click.option("--momentum", default=recipe.MOMENTUM, show_default=True, help="SGD momentum."),
        click.option("--poly-power", default=recipe.POLY_POWER, show_default=True,
                     help="lr × (1 - it/iterations)^power."),
    ]
    return compose(*options)


def run_trainer(trainer, resume: bool = False, overwrite: bool = False):
    """``stages.train.report.run_with_progress``; a run stopped by SIGINT/SIGTERM exits 128 + the signal number."""
    result = run_with_progress(trainer, resume, overwrite)
    if result.stopped_by is not None:
        raise click.exceptions.Exit(128 + result.stopped_by)
    return result
