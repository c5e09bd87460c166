"""Class presets: names, palettes and whether index 0 is a background class.

A preset maps class indices 0..K-1 to names and RGB colours; 255 is always "ignore / unlabelled".
Built in: ``voc`` (21 classes, 0 = background), ``cityscapes`` (19 train ids), ``ade20k`` (150
classes, the usual reduce-zero-label indices), ``camvid`` (the 11 classes of SegNet's 480x360 CamVid,
void = 255). Any other class list comes from a text file with one
class per line, ``name`` or ``name R G B``; a first class named ``background`` marks a background class.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

import numpy as np

from . import IGNORE_INDEX
from .errors import SesamInputError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)

CITYSCAPES_COLOURS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian", "bicyclist",
)

CAMVID_COLOURS = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair",
    "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box",
    "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet",
    "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower",
    "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower",
    "radiator", "glass", "clock", "flag",
)


def pascal_colourmap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: (n, 3) uint8, index i's colour from the bits of i."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


PHOTO_MIN_VALUES = 200
"""A single-channel file with more distinct values than this (and values outside its preset) is a photo."""


@dataclass(frozen=True)
class ClassPreset:
    """A class list. ``colours`` is (K, 3) uint8; ``has_background`` means class 0 is background."""

    name: str
    classes: tuple[str, ...]
    colours: np.ndarray
    has_background: bool
    void_values: tuple[int, ...] = ()
    """Values that label files use for "void" and that are read as 255 (ignore), e.g. 11 in the public
    CamVid files (``--void 11``)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def palette(self) -> list[int]:
        """A 768-entry PIL palette: the class colours, then the VOC colour map, 255 = white."""
        full = pascal_colourmap(256)
        full[: self.num_classes] = self.colours
        full[IGNORE_INDEX] = (255, 255, 255)
        return full.reshape(-1).tolist()

    def colour_lut(self) -> np.ndarray:
        """(256, 3) uint8 lookup from class index to colour, for drawing."""
        return np.asarray(self.palette(), dtype=np.uint8).reshape(256, 3)

    def with_void(self, values: tuple[int, ...]) -> "ClassPreset":
        """This preset with ``values`` read as ignore; each must lie outside the classes (K..254)."""
        inside = [v for v in values if not self.num_classes <= v < IGNORE_INDEX]
        if inside:
            raise SesamInputError(None, f"void value {inside[0]} is not outside the '{self.name}' classes "
                                        f"({self.num_classes}..{IGNORE_INDEX - 1})")
        return replace(self, void_values=tuple(sorted(set(values))))

    def check_values(self, label: np.ndarray, path: str | os.PathLike | None) -> None:
        """Raise SesamInputError if ``label`` holds values that are neither classes nor 255."""
        values = np.unique(label)
        bad = values[(values >= self.num_classes) & (values != IGNORE_INDEX)]
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if bad.size > 10 else "")
            looks_like_photo = (f"; {values.size} distinct values: this looks like a photo, not a label map"
                                if values.size > PHOTO_MIN_VALUES else "")
            raise SesamInputError(
                path,
                f"class values {shown} are outside the '{self.name}' preset "
                f"(0..{self.num_classes - 1}, and 255 = ignore){looks_like_photo}",
            )


def _builtin(name: str) -> ClassPreset:
    if name == "voc":
        return ClassPreset("voc", VOC_CLASSES, pascal_colourmap(21), True)
    if name == "cityscapes":
        return ClassPreset("cityscapes", CITYSCAPES_CLASSES, np.array(CITYSCAPES_COLOURS, np.uint8), False)
    if name == "ade20k":
        return ClassPreset("ade20k", ADE20K_CLASSES, pascal_colourmap(151)[1:], False)
    if name == "camvid":
        return ClassPreset("camvid", CAMVID_CLASSES, np.array(CAMVID_COLOURS, np.uint8), False)
    raise KeyError(name)


BUILTIN_PRESETS = ("voc", "cityscapes", "ade20k", "camvid")


MAX_CLASSES = 255
"""Class indices 0..254: 255 is the ignore value."""
_INTEGER = re.compile(r"[+-]?\d+")


def _classes_file_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """(line number, text without comment and surrounding blanks) of each non-empty line of ``path``."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise SesamInputError(path, f"cannot read the classes file ({exc.strerror})") from None
    lines = []
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise SesamInputError(path, f"line {number} is not UTF-8 text; a classes file lists one "
                                        "'name' or 'name R G B' per line") from None
        text = text.removeprefix("\ufeff").split("#", 1)[0].strip()
        if text:
            lines.append((number, text))
    return lines


def _parse_class_line(path: str | os.PathLike, number: int, line: str) -> tuple[str, tuple[int, int, int] | None]:
    """(name, colour or None) of a classes-file line ``name`` or ``name R G B``; trailing integers are
    always read as a colour, so ``bar 1 2`` or ``foo -1 0 0`` are errors, not names."""
    parts = line.split()
    numbers = 0
    while numbers < len(parts) and _INTEGER.fullmatch(parts[-1 - numbers]):
        numbers += 1
    if numbers == 0:
        return line, None
    expected = "expected 'name' or 'name R G B' with R, G, B in 0..255 (a name cannot end in a number)"
    if numbers < 3 or len(parts) == 3:
        raise SesamInputError(path, f"line {number} '{line}': {expected}")
    rgb = tuple(int(p) for p in parts[-3:])
    if not all(0 <= value <= 255 for value in rgb):
        raise SesamInputError(path, f"line {number} '{line}': colour {rgb} is not 0..255")
    return " ".join(parts[:-3]), rgb  # type: ignore[return-value]


def load_classes_file(path: str | os.PathLike) -> ClassPreset:
    """Read a class list: one class per line, ``name`` or ``name R G B``; '#' starts a comment.

    A file that is not UTF-8, a line that ends in numbers but is no ``name R G B`` with R, G, B in
    0..255, and more than ``MAX_CLASSES`` classes raise SesamInputError naming the file and line.
    """
    lines = _classes_file_lines(path)
    if not lines:
        raise SesamInputError(path, "the classes file lists no class")
    if len(lines) > MAX_CLASSES:
        raise SesamInputError(path, f"{len(lines)} classes; at most {MAX_CLASSES} fit next to the ignore value 255")
    default = pascal_colourmap(256)
    names, colours = [], []
    for number, line in lines:
        name, rgb = _parse_class_line(path, number, line)
        names.append(name)
        colours.append(rgb if rgb is not None else tuple(default[len(names) - 1]))
    stem = os.path.splitext(os.path.basename(path))[0]
    return ClassPreset(stem, tuple(names), np.array(colours, np.uint8), names[0].lower() == "background")


def get_preset(name_or_path: str) -> ClassPreset:
    """A built-in preset by name, or a class list read from a file path."""
    if name_or_path in BUILTIN_PRESETS:
        return _builtin(name_or_path)
    if os.path.exists(name_or_path):
        return load_classes_file(name_or_path)
    raise SesamInputError(
        name_or_path,
        f"neither a built-in preset ({', '.join(BUILTIN_PRESETS)}) nor an existing classes file",
    )
