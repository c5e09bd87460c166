"""Pictures of sesam's artifacts over their photo, drawn with PIL only.

Every function takes a photo as (H, W, 3) uint8 RGB plus arrays and returns a new (H, W, 3) uint8
picture; points are (x, y) = (column, row), boxes XYXY with inclusive maxima. ``compose`` lays
panels side by side (wrapping into rows) with a title strip each and a legend of class colours.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

POSITIVE_COLOUR = (0, 210, 0)
NEGATIVE_COLOUR = (235, 0, 0)
OUTLINE_COLOUR = (0, 0, 0)
CROSS_OUTLINE_COLOUR = (255, 255, 255)
BACKGROUND_COLOUR = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)

HEAT_STOPS = np.array([[0, 0, 96], [0, 64, 255], [0, 220, 220], [255, 230, 0], [230, 0, 0]], np.float64)
"""Colours of the confidence ramp from 0 (dark blue) through cyan and yellow to 1 (red)."""


def distinct_colours(count: int) -> np.ndarray:
    """``count`` well separated saturated colours (golden-ratio hues), (count, 3) uint8."""
    hues = (np.arange(count) * 0.618033988749895) % 1.0
    rgb = [colorsys.hsv_to_rgb(h, 0.85 if i % 2 else 0.65, 0.95 if i % 3 else 0.8) for i, h in enumerate(hues)]
    return (np.asarray(rgb, np.float64).reshape(-1, 3) * 255).round().astype(np.uint8)


def marker_radius(shape: tuple[int, ...]) -> int:
    """Radius in pixels of point markers for an image of ``shape`` (H, W, ...): visible at any size."""
    return max(3, round(max(shape[:2]) / 110))


def _blend(photo: np.ndarray, colours: np.ndarray, where: np.ndarray, alpha: float) -> np.ndarray:
    """``photo`` with ``colours`` (H, W, 3) mixed in at opacity ``alpha`` where ``where`` (H, W) is set."""
    picture = photo.astype(np.float32)
    picture[where] = (1 - alpha) * picture[where] + alpha * colours[where].astype(np.float32)
    return picture.round().astype(np.uint8)


def _edges(index_map: np.ndarray, empty: int) -> np.ndarray:
    """Pixels to outline in an index map: empty pixels touching a filled one (8-neighbours), and
    filled pixels whose right or lower neighbour is filled with another value. Bool (H, W)."""
    filled = index_map != empty
    padded = np.pad(filled, 1)
    height, width = filled.shape
    touching = np.zeros_like(filled)
    for d_row in (0, 1, 2):
        for d_col in (0, 1, 2):
            touching |= padded[d_row: d_row + height, d_col: d_col + width]
    edges = touching & ~filled
    right = filled[:, :-1] & filled[:, 1:] & (index_map[:, :-1] != index_map[:, 1:])
    down = filled[:-1] & filled[1:] & (index_map[:-1] != index_map[1:])
    edges[:, :-1] |= right
    edges[:-1] |= down
    return edges


def overlay_index_map(photo: np.ndarray, index_map: np.ndarray, lut: np.ndarray, empty: int,
                      alpha: float = 0.6) -> np.ndarray:
    """Colour each pixel of ``index_map`` (H, W) ints by ``lut`` (V, 3) uint8 over ``photo``, except
    pixels equal to ``empty``; outline the filled areas and the borders between values."""
    colours = np.asarray(lut, np.uint8)[np.where(index_map == empty, 0, index_map)]
    picture = _blend(photo, colours, index_map != empty, alpha)
    picture[_edges(index_map, empty)] = OUTLINE_COLOUR
    return picture


def grow_specks(label: np.ndarray, radius: float, empty: int = 255) -> np.ndarray:
    """``label`` (H, W) with each labelled blob smaller than a disc of ``radius`` grown into such a
    disc over unlabelled pixels, so single-pixel clicks stay visible in a picture."""
    filled = label != empty
    blobs, _ = ndimage.label(filled, structure=np.ones((3, 3), bool))
    specks = filled & (np.bincount(blobs.ravel())[blobs] < np.pi * radius ** 2)
    if not specks.any():
        return label
    distance, (rows, cols) = ndimage.distance_transform_edt(~specks, return_indices=True)
    grown = label.copy()
    around = (distance <= radius) & ~filled
    grown[around] = label[rows[around], cols[around]]
    return grown


def overlay_labels(photo: np.ndarray, label: np.ndarray, lut: np.ndarray, alpha: float = 0.6,
                   speck_radius: float = 0) -> np.ndarray:
    """A label map (H, W) uint8 (255 = unlabelled) in its class colours ``lut`` (256, 3) over ``photo``;
    with ``speck_radius``, tiny blobs are drawn as discs of that radius (see ``grow_specks``)."""
    if speck_radius > 0:
        label = grow_specks(label, speck_radius)
    return overlay_index_map(photo, label, lut, empty=255, alpha=alpha)


def overlay_regions(photo: np.ndarray, region_map: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Each region of ``region_map`` (H, W) ints (0 = none, 1..K) in its own colour over ``photo``."""
    lut = np.concatenate([np.zeros((1, 3), np.uint8), distinct_colours(int(region_map.max(initial=0)))])
    return overlay_index_map(photo, region_map, lut, empty=0, alpha=alpha)


def overlay_masks(photo: np.ndarray, masks: Sequence[np.ndarray], colours: np.ndarray, alpha: float = 0.55,
                  ) -> np.ndarray:
    """Binary masks (S, H, W) in ``colours`` (S, 3) over ``photo``, each outlined (an array or any
    sequence of (H, W) masks, e.g. a ``ChosenMasks`` that reads them one at a time). Where masks
    overlap, the smaller one is drawn on top; colours are never mixed, so every coloured pixel
    shows exactly one mask's class colour."""
    top = np.full(photo.shape[:2], -1, np.int64)
    outline = np.zeros(photo.shape[:2], bool)
    for index in np.argsort([-int(mask.sum()) for mask in masks], kind="stable"):
        top[masks[index]] = index
        outline &= ~masks[index]
        outline |= mask_border(masks[index])
    covered = top >= 0
    picture = _blend(photo, np.asarray(colours, np.uint8)[np.where(covered, top, 0)], covered, alpha)
    picture[outline] = OUTLINE_COLOUR
    return picture


def mask_border(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` (H, W) bool with a 4-neighbour outside it (the image edge counts as outside)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _line_width(shape: tuple[int, ...]) -> int:
    return max(2, marker_radius(shape) // 2)


def draw_boxes(photo: np.ndarray, boxes: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Rectangles for ``boxes`` (N, 4) XYXY (inclusive maxima) in ``colours`` (N, 3) over ``photo``."""
    image = Image.fromarray(photo)
    draw = ImageDraw.Draw(image)
    width = _line_width(photo.shape)
    for box, colour in zip(np.asarray(boxes, np.float64), np.asarray(colours)):
        draw.rectangle([float(v) for v in box], outline=tuple(int(c) for c in colour), width=width)
    return np.asarray(image)


def draw_points(photo: np.ndarray, points: np.ndarray, positive: np.ndarray,
                colours: np.ndarray | None = None) -> np.ndarray:
    """Point prompts over ``photo``: ``points`` (P, 2) float (x, y), ``positive`` (P,) bool,
    ``colours`` (P, 3) uint8 (default: green for positive, red for negative points).

    Positive points are filled discs outlined in black; negative points are crosses a little larger
    than a disc, outlined in white and drawn after every disc, so that a negative placed on another
    class's positive point stays visible.
    """
    points = np.asarray(points, np.float64)
    positive = np.asarray(positive, bool)
    if colours is None:
        colours = np.where(positive[:, None], POSITIVE_COLOUR, NEGATIVE_COLOUR)
    image = Image.fromarray(photo)
    draw = ImageDraw.Draw(image)
    radius = marker_radius(photo.shape)
    width = _line_width(photo.shape)
    for (x, y), colour in zip(points[positive], np.asarray(colours)[positive]):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(int(c) for c in colour),
                     outline=OUTLINE_COLOUR, width=max(1, width // 2))
    arm = round(1.4 * radius)
    for (x, y), colour in zip(points[~positive], np.asarray(colours)[~positive]):
        strokes = ((x - arm, y - arm, x + arm, y + arm), (x - arm, y + arm, x + arm, y - arm))
        for stroke in strokes:
            draw.line(stroke, fill=CROSS_OUTLINE_COLOUR, width=width + 2)
        for stroke in strokes:
            draw.line(stroke, fill=tuple(int(c) for c in colour), width=width)
    return np.asarray(image)


def heat_colours(confidence: np.ndarray) -> np.ndarray:
    """A confidence map (H, W) uint8 (255 = 1.0) as heat colours (H, W, 3) uint8, blue low, red high."""
    positions = np.linspace(0, 255, len(HEAT_STOPS))
    channels = [np.interp(confidence, positions, HEAT_STOPS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def overlay_confidence(photo: np.ndarray, confidence: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """A confidence map (H, W) uint8 as heat colours over ``photo``."""
    return _blend(photo, heat_colours(confidence), np.ones(confidence.shape, bool), alpha)


@dataclass
class Panel:
    """One picture of a composition: its title and its (H, W, 3) uint8 pixels."""

    title: str
    picture: np.ndarray
    classes: set[int] = field(default_factory=set)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _scaled(picture: np.ndarray, width: int | None) -> Image.Image:
    image = Image.fromarray(picture)
    if width is None or width == image.width:
        return image
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def _legend_rows(entries: Sequence[tuple[str, tuple[int, int, int]]], font, swatch: int,
                 max_width: int) -> list[list[tuple[str, tuple[int, int, int], int]]]:
    """Legend entries wrapped into rows no wider than ``max_width``: (name, colour, entry width)."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows: list[list[tuple[str, tuple[int, int, int], int]]] = [[]]
    used = 0
    for name, colour in entries:
        width = swatch + 4 + int(np.ceil(measure.textlength(name, font=font))) + 2 * swatch
        if rows[-1] and used + width > max_width:
            rows.append([])
            used = 0
        rows[-1].append((name, colour, width))
        used += width
    return rows if rows[0] else []


def compose(panels: Sequence[Panel], columns: int = 4,
            legend: Sequence[tuple[str, tuple[int, int, int]]] = (), panel_width: int | None = None,
            font_size: int = 14) -> np.ndarray:
    """Panels side by side, ``columns`` per row, each under a title strip, then a legend of
    (class name, colour) entries. ``panel_width`` scales every panel to that width. (H, W, 3) uint8."""
    font = _font(font_size)
    images = [_scaled(panel.picture, panel_width) for panel in panels]
    columns = max(1, min(columns, len(images)))
    gap = 4
    title_height = font_size + 8
    cell_width = max(image.width for image in images)
    cell_height = max(image.height for image in images) + title_height
    rows = -(-len(images) // columns)
    width = columns * cell_width + (columns + 1) * gap
    swatch = font_size
    legend_rows = _legend_rows(legend, font, swatch, width - 2 * gap)
    legend_height = len(legend_rows) * (swatch + 8) + (gap if legend_rows else 0)
    height = rows * cell_height + (rows + 1) * gap + legend_height
    canvas = Image.new("RGB", (width, height), BACKGROUND_COLOUR)
    draw = ImageDraw.Draw(canvas)
    for index, (panel, image) in enumerate(zip(panels, images)):
        left = gap + (index % columns) * (cell_width + gap)
        top = gap + (index // columns) * (cell_height + gap)
        draw.text((left + 2, top + 3), panel.title, fill=TEXT_COLOUR, font=font)
        canvas.paste(image, (left, top + title_height))
    top = rows * cell_height + (rows + 1) * gap
    for row in legend_rows:
        left = gap
        for name, colour, entry_width in row:
            draw.rectangle((left, top, left + swatch - 1, top + swatch - 1), fill=tuple(colour),
                           outline=OUTLINE_COLOUR)
            draw.text((left + swatch + 4, top - 1), name, fill=TEXT_COLOUR, font=font)
            left += entry_width
        top += swatch + 8
    return np.asarray(canvas)
