"""``sesam show``: draw a record's artifacts over its photo, side by side, into one PNG per image."""

from __future__ import annotations

import click

from stages.per_image import PerImageStream
from stages.show import HYPOTHESES, PAINTERS, STAGE, PictureWriter, render_record

from .options import classes_option, default_of, handle_errors, map_colours_option, per_image_command


def _parse_keys(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    keys = tuple(key.strip() for key in value.split(",") if key.strip())
    unknown = [key for key in keys if key not in PAINTERS]
    if unknown or not keys:
        raise click.BadParameter(f"unknown key(s) {', '.join(unknown) or '(none)'}; known: {', '.join(PAINTERS)}")
    return keys


@click.command()
@per_image_command
@click.option("--keys", callback=_parse_keys, metavar="KEY,KEY,...",
              help=f"Record keys to draw, in this order  [default: those present of {', '.join(PAINTERS)}]")
@click.option("--as", "input_key", default="weak", show_default=True, type=click.Choice(tuple(PAINTERS)),
              help="The record key that file arguments stand for.")
@click.option("--hypothesis", type=click.Choice(HYPOTHESES), default=default_of(render_record, "hypothesis"),
              show_default=True,
              help="masks: which SAM hypothesis to draw per prompt set: the best predicted IoU, an index, "
                   "or all (one panel per index).")
@click.option("--columns", default=default_of(render_record, "columns"), show_default=True, type=click.IntRange(min=1),
              help="Panels per row before wrapping.")
@click.option("--panel-width", type=click.IntRange(min=16), help="Scale every panel to this width in pixels.")
@classes_option
@map_colours_option
@handle_errors
def show(stream: PerImageStream, keys, input_key, hypothesis, columns, panel_width, preset, map_colours) -> None:
    """Draw each record's artifacts over its photo into OUTPUT/{id}.png.

    One panel per artifact, side by side under a title strip, with a legend of the classes shown:
    label maps (gt, weak, pseudo, pseudo_before, prediction, cam) in class colours, boxes as rectangles,
    components each in its own colour, prompts in their set's class colour as discs (positive),
    crosses (negative) and rectangles (boxes), SAM masks per prompt set in class colours (smaller
    masks on top, colours never mixed), confidences as heat maps. Adds the key 'picture' to each record.

    \b
    Example:
      sesam simulate --kind points --images data/JPEGImages -o work/weak data/SegmentationClass \\
        | sesam decompose -o work/components | sesam sample-prompts -o work/prompts \\
        | sesam show -o work/pictures
      sesam show --images data/JPEGImages --as gt -o work/gt-pictures data/SegmentationClass
    """
    writer = PictureWriter(preset, keys, hypothesis, map_colours, columns, panel_width)
    records = stream.records(input_key, (".png", ".json", ".h5"))
    stream.stage(STAGE, "picture", ".png", writer.settings()).run(records, writer.write)
