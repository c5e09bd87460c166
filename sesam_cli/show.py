"""``sesam show``: draw a record's artifacts over its photo, side by side, into one PNG per image."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import click
import numpy as np
from PIL import Image

from stages.io.artifacts import provenance
from stages.io.masks import read_masks
from stages.errors import SesamInputError
from stages.io.images import read_image, read_label, read_single_channel, write_png
from stages.presets import ClassPreset
from stages.render import (
    Panel, compose, distinct_colours, draw_boxes, draw_points, marker_radius, overlay_confidence, overlay_labels,
    overlay_masks, overlay_regions,
)

from .options import classes_option, handle_errors, map_colours_option, per_image_options
from .stream import PerImageStage, read_records, require

log = logging.getLogger("sesam")

HYPOTHESES = ("best", "0", "1", "2", "3", "all")


@dataclass(frozen=True)
class Drawing:
    """What every painter needs: the photo (H, W, 3) uint8, the class colours (256, 3) and the options."""

    photo: np.ndarray
    preset: ClassPreset
    lut: np.ndarray
    map_colours: bool
    hypothesis: str

    @property
    def size(self) -> tuple[int, int]:
        return self.photo.shape[:2]

    def class_colours(self, classes: np.ndarray) -> np.ndarray:
        """Colours (N, 3) of ``classes`` (N,); a class of -1 (no class) gets a colour of its own."""
        colours = self.lut[np.clip(classes, 0, 255)]
        unclassed = classes < 0
        colours[unclassed] = distinct_colours(int(unclassed.sum()))
        return colours

    def check_size(self, path: str, size: tuple[int, ...]) -> None:
        if tuple(int(v) for v in size) != self.size:
            raise SesamInputError(path, f"size {size[1]}x{size[0]} (WxH) does not match its photo's "
                                        f"{self.size[1]}x{self.size[0]}")


def _classes(values: np.ndarray) -> set[int]:
    return {int(v) for v in np.unique(values) if 0 <= v < 255}


def paint_label(drawing: Drawing, key: str, path: str) -> list[Panel]:
    """A label map PNG in class colours (a weak label's single-pixel clicks as discs), or a boxes
    JSON as rectangles."""
    if path.lower().endswith(".json"):
        from stages.io.boxes import read_boxes

        boxes, classes, _ = read_boxes(path, drawing.preset, drawing.size)
        picture = draw_boxes(drawing.photo, boxes, drawing.class_colours(classes))
        return [Panel(f"{key}: {len(boxes)} boxes", picture, _classes(classes))]
    label = read_label(path, drawing.preset, drawing.map_colours, drawing.size)
    speck_radius = marker_radius(drawing.size) if key == "weak" else 0
    return [Panel(key, overlay_labels(drawing.photo, label, drawing.lut, speck_radius=speck_radius), _classes(label))]


def paint_instances(drawing: Drawing, key: str, path: str) -> list[Panel]:
    """An instance-id PNG (0 none, 255 ignore), each instance in its own colour."""
    ids = read_single_channel(path, drawing.size).astype(np.int32)
    ids[ids == 255] = 0
    return [Panel(f"{key}: {len(np.unique(ids[ids > 0]))} instances", overlay_regions(drawing.photo, ids))]


def paint_confidence(drawing: Drawing, key: str, path: str) -> list[Panel]:
    """A confidence PNG (255 = 1.0) as a heat map, blue low, red high."""
    confidence = read_single_channel(path, drawing.size)
    return [Panel(f"{key} (blue 0, red 1)", overlay_confidence(drawing.photo, confidence))]


def paint_components(drawing: Drawing, key: str, path: str) -> list[Panel]:
    """A components HDF5: each component in its own colour, outlined."""
    from stages.io.components import read_components

    components = read_components(path)
    drawing.check_size(path, components.image_size)
    picture = overlay_regions(drawing.photo, components.component_map)
    return [Panel(f"{key}: {components.count}", picture, _classes(components.component_class))]


def paint_prompts(drawing: Drawing, key: str, path: str) -> list[Panel]:
    """A prompts HDF5, in the class colour of each prompt set: box prompts as rectangles, positive
    points as discs, negative points as crosses (in the colour of the class they exclude)."""
    from stages.io.prompts import read_prompts

    prompts = read_prompts(path)
    drawing.check_size(path, prompts.image_size)
    has_box = ~np.isnan(prompts.set_box).any(axis=1)
    picture = draw_boxes(drawing.photo, prompts.set_box[has_box], drawing.class_colours(prompts.set_class[has_box]))
    picture = draw_points(picture, prompts.points, prompts.point_labels == 1,
                          drawing.class_colours(prompts.set_class[prompts.point_set]))
    negatives = int((prompts.point_labels == 0).sum())
    title = (f"{key}: {prompts.count} sets, {len(prompts.points) - negatives} points (discs)"
             + (f", {negatives} negatives (crosses)" if negatives else ""))
    return [Panel(title, picture, _classes(prompts.set_class))]


def paint_masks(drawing: Drawing, key: str, path: str) -> list[Panel]:
    """A SAM masks HDF5: per prompt set the hypothesis ``--hypothesis`` picks, in its class colour
    (smaller masks on top, colours never mixed)."""
    datasets = read_masks(path)
    masks, scores, classes = datasets["masks"], datasets["iou_predictions"], datasets["set_class"]
    drawing.check_size(path, masks.shape[2:])
    count = masks.shape[1]
    if drawing.hypothesis == "all":
        choices = [(f"hypothesis {m}", np.full(len(masks), m)) for m in range(count)]
    elif drawing.hypothesis == "best":
        choices = [("best predicted IoU", scores.argmax(axis=1))]
    elif int(drawing.hypothesis) < count:
        choices = [(f"hypothesis {drawing.hypothesis}", np.full(len(masks), int(drawing.hypothesis)))]
    else:
        raise SesamInputError(path, f"holds {count} mask hypothesis(es) per prompt set; "
                                    f"--hypothesis {drawing.hypothesis} does not exist")
    colours = drawing.class_colours(classes)
    return [Panel(f"{key}: {title}", overlay_masks(drawing.photo, masks[np.arange(len(masks)), chosen], colours),
                  _classes(classes)) for title, chosen in choices]


PAINTERS: dict[str, Callable[[Drawing, str, str], list[Panel]]] = {
    "gt": paint_label,
    "gt_instances": paint_instances,
    "weak": paint_label,
    "cam": paint_label,
    "components": paint_components,
    "prompts": paint_prompts,
    "masks": paint_masks,
    "pseudo": paint_label,
    "confidence": paint_confidence,
    "prediction": paint_label,
    "prediction_confidence": paint_confidence,
}
"""Record keys ``show`` draws, in pipeline order (the default order of the panels)."""


def _parse_keys(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    keys = tuple(key.strip() for key in value.split(",") if key.strip())
    unknown = [key for key in keys if key not in PAINTERS]
    if unknown or not keys:
        raise click.BadParameter(f"unknown key(s) {', '.join(unknown) or '(none)'}; known: {', '.join(PAINTERS)}")
    return keys


def render_record(record: dict, keys: tuple[str, ...] | None, drawing_options: dict, columns: int,
                  panel_width: int | None) -> np.ndarray:
    """The picture of one record: its photo, then a panel per artifact, then a legend. (H, W, 3) uint8."""
    require(record, "image", *(keys or ()))
    drawing = Drawing(read_image(record["image"]), **drawing_options)
    shown = keys or tuple(key for key in PAINTERS if record.get(key))
    if not shown:
        log.warning("record '%s' has no artifact to draw (known keys: %s)", record["id"], ", ".join(PAINTERS))
    panels = [Panel("image", drawing.photo)]
    for key in shown:
        panels.extend(PAINTERS[key](drawing, key, record[key]))
    present = sorted(set().union(*(panel.classes for panel in panels)))
    legend = [(drawing.preset.classes[c], tuple(int(v) for v in drawing.lut[c]))
              for c in present if c < drawing.preset.num_classes]
    return compose(panels, columns=columns, legend=legend, panel_width=panel_width)


@click.command()
@per_image_options
@click.option("--keys", callback=_parse_keys, metavar="KEY,KEY,...",
              help=f"Record keys to draw, in this order  [default: those present of {', '.join(PAINTERS)}]")
@click.option("--as", "input_key", default="weak", show_default=True, type=click.Choice(tuple(PAINTERS)),
              help="The record key that file arguments stand for.")
@click.option("--hypothesis", type=click.Choice(HYPOTHESES), default="best", show_default=True,
              help="masks: which SAM hypothesis to draw per prompt set: the best predicted IoU, an index, "
                   "or all (one panel per index).")
@click.option("--columns", default=4, show_default=True, type=click.IntRange(min=1),
              help="Panels per row before wrapping.")
@click.option("--panel-width", type=click.IntRange(min=16), help="Scale every panel to this width in pixels.")
@classes_option
@map_colours_option
@handle_errors
def show(inputs, images_dir, strip_suffixes, output_dir, overwrite, shard, keep_going, keys, input_key,
         hypothesis, columns, panel_width, preset, map_colours) -> None:
    """Draw each record's artifacts over its photo into OUTPUT/{id}.png.

    One panel per artifact, side by side under a title strip, with a legend of the classes shown:
    label maps (gt, weak, pseudo, prediction, cam) in class colours, boxes as rectangles,
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
    params = {"keys": keys, "hypothesis": hypothesis, "columns": columns, "panel_width": panel_width,
              "classes": preset.name, "map_colours": map_colours}
    drawing_options = {"preset": preset, "lut": preset.colour_lut(), "map_colours": map_colours,
                       "hypothesis": hypothesis}

    def make(record: dict, out_path: str) -> None:
        picture = render_record(record, keys, drawing_options, columns, panel_width)
        write_png(out_path, Image.fromarray(picture), provenance("show", params, record))

    records = read_records(inputs, input_key, images_dir, strip_suffixes, suffixes=(".png", ".json", ".h5"))
    PerImageStage("show", "picture", output_dir, ".png", params, overwrite, shard, keep_going).run(records, make)
