"""Options shared by several commands, as reusable click decorators (in the style of rasterio's rio)."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

import click

from stages.devices import DEVICE_NAMES, check_device
from stages.errors import SesamInputError, SesamUsageError, StageFailed, StageInterrupted
from stages.per_image import PerImageStream, failure_message
from stages.presets import get_preset
from stages.records import IdList, Shard

log = logging.getLogger("sesam")


def parsed_by(parse: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that turns an option's value into ``parse(value)`` (None stays None): the
    library's SesamInputError or ValueError becomes click.BadParameter with its message."""
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except (SesamInputError, ValueError) as exc:
            raise click.BadParameter(str(exc)) from None
    return callback


VOID_KEY = "sesam.void"


def _store_void(ctx: click.Context, param: click.Parameter, value: tuple[int, ...]) -> None:
    """--void is eager: its values are known when --classes builds the preset."""
    ctx.meta[VOID_KEY] = tuple(value)


def _parse_preset(ctx: click.Context, param: click.Parameter, value: str):
    preset = parsed_by(get_preset)(ctx, param, value)
    void = ctx.meta.get(VOID_KEY, ())
    try:
        return preset.with_void(void) if void else preset
    except SesamInputError as exc:
        raise click.BadParameter(str(exc), param_hint="--void") from None


def default_of(func: Callable, parameter: str) -> Any:
    """The library's default of ``func``'s ``parameter``: an option's default read, not restated."""
    return inspect.signature(func).parameters[parameter].default


def compose(*decorators: Callable) -> Callable:
    """Apply several option decorators as one."""
    def wrap(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return wrap


inputs_argument = click.argument("inputs", nargs=-1, type=click.Path())
images_option = click.option(
    "--images", "images_dir", type=click.Path(file_okay=False),
    help="Directory of photos, paired with the inputs by file stem (searched recursively).")
strip_suffix_option = click.option(
    "--strip-suffix", "strip_suffixes", multiple=True, metavar="SUFFIX",
    help="Remove SUFFIX from file stems to form ids (repeatable), e.g. _gtFine_labelTrainIds and _leftImg8bit.")
output_option = click.option(
    "-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False),
    help="Directory for this stage's artifacts, one file per image.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Redo images whose artifact is already up to date.")
shard_option = click.option(
    "--shard", callback=parsed_by(Shard.parse), metavar="K/N",
    help="Process only shard K of N (0-based; records split by a hash of their id).")
keep_going_option = click.option(
    "--keep-going", is_flag=True, help="Log a failing image and go on; exit non-zero at the end.")
ids_option = click.option(
    "--ids", callback=parsed_by(IdList.read), type=click.Path(dir_okay=False), metavar="FILE",
    help="Process only the ids listed in FILE, one per line (e.g. ImageSets/Segmentation/train.txt).")
classes_option = compose(
    click.option(
        "--classes", "preset", default="voc", show_default=True, callback=_parse_preset, metavar="PRESET|FILE",
        help="Class preset (voc, cityscapes, ade20k, camvid) or a classes file (one 'name [R G B]' per line)."),
    click.option(
        "--void", multiple=True, type=click.IntRange(0, 254), is_eager=True, expose_value=False, callback=_store_void,
        metavar="N", help="Label files use N for void: read it as 255 (ignore), e.g. --void 11 for the public "
                          "CamVid files (repeatable)."))
map_colours_option = click.option(
    "--map-colours", is_flag=True, help="Accept colour (RGB) label PNGs and map them through the preset's palette.")
reduce_zero_label_option = click.option(
    "--reduce-zero-label", is_flag=True,
    help="Ground truth uses 0 for 'other' (ADE20K files): read 0 as ignore and k as class k-1.")


device_option = click.option(
    "--device", default="auto", show_default=True, callback=parsed_by(check_device), metavar="|".join(DEVICE_NAMES),
    help="Where to compute: auto is CUDA when it is available, else the CPU; cuda:N picks a GPU.")
seed_option = click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")


per_image_options = compose(inputs_argument, images_option, strip_suffix_option, output_option,
                            overwrite_option, shard_option, keep_going_option)


def per_image_command(func: Callable) -> Callable:
    """``per_image_options``, handed to the command as one ``stream: PerImageStream`` argument."""
    @functools.wraps(func)
    def wrapper(*args: Any, inputs, images_dir, strip_suffixes, output_dir, overwrite, shard, keep_going,
                **kwargs: Any) -> Any:
        stream = PerImageStream(inputs, images_dir, strip_suffixes, output_dir, overwrite, shard, keep_going,
                                global_flag("verbose"))
        return func(*args, stream=stream, **kwargs)
    return per_image_options(wrapper)


def global_flag(name: str) -> bool:
    """The group's ``-v`` (``verbose``) or ``-q`` (``quiet``) flag of the running command; False outside one."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get(name))


def handle_errors(func: Callable) -> Callable:
    """Turn any error but click's own into a one-line ClickException (click prints it, also under -q);
    with -v, log the traceback first (see ``failure_message``). A SesamUsageError is a usage error
    (exit status 2), a stage stopped by Ctrl-C exits 130 (the stage has said how much was done)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except SesamUsageError as exc:
            if exc.bad_value:
                raise click.BadParameter(str(exc), param_hint=exc.option) from None
            raise click.UsageError(str(exc)) from None
        except StageFailed as exc:
            raise click.ClickException(str(exc)) from exc
        except StageInterrupted:
            raise click.exceptions.Exit(130) from None
        except Exception as exc:
            if global_flag("verbose"):
                log.exception("traceback")
            raise click.ClickException(failure_message(exc)) from exc
    return wrapper
