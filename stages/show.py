"""Pictures of a record: its artifacts drawn over its photo, one panel each, side by side with a legend.

``render_record(record, ...)`` is what ``sesam show`` writes per image; the painters draw one
artifact each (label maps in class colours, boxes as rectangles, components and instances each in
their own colour, prompts as discs / crosses / rectangles, SAM masks per prompt set, confidences as
heat maps).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from .errors import SesamInputError
from .io.artifacts import provenance
from .io.images import read_image, read_label, read_single_channel, write_png
from .presets import ClassPreset
from .records import Record, require
from .render import (
    Panel, compose, distinct_colours, draw_boxes, draw_points, marker_radius, overlay_confidence, overlay_labels,
    overlay_masks, overlay_regions,
)
from .io.masks import ChosenMasks, open_masks

log = logging.getLogger("sesam")

STAGE = "show"

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
    datasets = open_masks(path)
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
    return [Panel(f"{key}: {title}", overlay_masks(drawing.photo, ChosenMasks(masks, chosen), colours),
                  _classes(classes)) for title, chosen in choices]


PAINTERS: dict[str, Callable[[Drawing, str, str], list[Panel]]] = {
    "gt": paint_label,
    "gt_instances": paint_instances,
    "weak": paint_label,
    "cam": paint_label,
    "components": paint_components,
    "prompts": paint_prompts,
    "masks": paint_masks,
    "pseudo_before": paint_label,
    "pseudo": paint_label,
    "confidence": paint_confidence,
    "prediction": paint_label,
    "prediction_confidence": paint_confidence,
}
"""Record keys ``show`` draws, in pipeline order (the default order of the panels)."""


def render_record(record: Record, preset: ClassPreset, keys: tuple[str, ...] | None = None, hypothesis: str = "best",
                  map_colours: bool = False, columns: int = 4, panel_width: int | None = None) -> np.ndarray:
    """The picture of one record: its photo, then a panel per artifact of ``keys`` (default: those it
    has, in ``PAINTERS`` order), then a legend of the classes shown. (H, W, 3) uint8.

    ``hypothesis`` picks the SAM mask per prompt set (see ``HYPOTHESES``); ``map_colours`` accepts
    colour label PNGs; ``columns`` panels per row, each scaled to ``panel_width`` pixels if given.
    """
    require(record, "image", *(keys or ()))
    drawing = Drawing(read_image(record["image"]), preset, preset.colour_lut(), map_colours, hypothesis)
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


@dataclass
class PictureWriter:
    """``render_record`` with the same options for every record, its picture written as a PNG with
    provenance: the per-image work of ``sesam show``."""

    preset: ClassPreset
    keys: tuple[str, ...] | None
    hypothesis: str
    map_colours: bool
    columns: int
    panel_width: int | None

    def settings(self) -> dict[str, Any]:
        """The settings a picture depends on (and so whether it is up to date)."""
        return {"keys": self.keys, "hypothesis": self.hypothesis, "columns": self.columns,
                "panel_width": self.panel_width, "classes": self.preset.name, "map_colours": self.map_colours}

    def write(self, record: Record, out_path: str) -> None:
        """Write the picture of ``record`` to ``out_path``."""
        picture = render_record(record, self.preset, self.keys, self.hypothesis, self.map_colours, self.columns,
                                self.panel_width)
        write_png(out_path, Image.fromarray(picture), provenance(STAGE, self.settings(), record))
