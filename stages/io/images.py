"""Photos, label maps and other single-channel PNGs on disk, and the one size check.

Photos read as (H, W, 3) uint8 RGB. Label maps are single-channel PNGs of class indices, written in
mode "P" with the preset's palette so they open as coloured pictures and read back as indices;
255 = ignore. Confidence maps are grey PNGs of round(255 × confidence); instance maps follow VOC
(8-bit) or Cityscapes (16-bit). Provenance rides along in a PNG text chunk named ``sesam``.
:func:`check_same_size` is the check every reader uses when an array must match its photo.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .. import IGNORE_INDEX
from ..errors import SesamInputError
from ..presets import ClassPreset
from .atomic import atomic_path

PNG_TEXT_KEY = "sesam"
CLASSES_KEY = "classes"
"""Key of the class names a label PNG was written with, in its ``sesam`` text chunk."""
CITYSCAPES_INSTANCE_OFFSET = 1000
"""16-bit instance maps: values from this on are objects (label id x 1000 + k), below it no instance."""
MAX_LABEL_COLOURS = 256
"""A colour label map has one colour per class; an RGB file with more distinct colours is a photo."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: str | os.PathLike) -> Image.Image:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SesamInputError(path, "no such file")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SesamInputError(path, f"not a readable image (truncated or corrupt?): {exc}") from None
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A photo as (H, W, 3) uint8 RGB."""
    image = _open(path)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file, reading only its header."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SesamInputError(path, "no such file")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise SesamInputError(path, f"not a readable image: {exc}") from None
    return height, width


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours as int32 codes 0xRRGGBB."""
    return (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]


def colours_to_indices(rgb: np.ndarray, preset: ClassPreset, path: str | os.PathLike) -> np.ndarray:
    """Map an (H, W, 3) colour label to class indices by the preset's palette (white = 255)."""
    lut = preset.colour_lut()
    codes = _colour_codes(rgb)
    palette_codes = _colour_codes(lut)
    known = {int(code): idx for idx, code in list(enumerate(palette_codes))[::-1]
             if idx < preset.num_classes or idx == 255}
    uniq, inverse = np.unique(codes, return_inverse=True)
    mapped = np.empty(uniq.shape, np.uint8)
    for i, code in enumerate(uniq):
        if int(code) not in known:
            colour = (int(code) >> 16, (int(code) >> 8) & 255, int(code) & 255)
            raise SesamInputError(path, f"colour {colour} is not in the '{preset.name}' palette")
        mapped[i] = known[int(code)]
    return mapped[inverse].reshape(codes.shape)


def read_label(path: str | os.PathLike, preset: ClassPreset, map_colours: bool = False,
               expected_size: tuple[int, int] | None = None, reduce_zero_label: bool = False) -> np.ndarray:
    """A label map as (H, W) uint8 class indices, 255 = ignore.

    Palette ("P"), grey ("L") and 16-bit PNGs are read as indices. A colour (RGB) label is refused
    unless ``map_colours`` is set, which maps colours through the preset's palette.
    ``reduce_zero_label`` reads ADE20K-style files where 0 = "other": 0 becomes 255 and k becomes k-1.
    The preset's ``void_values`` (``--void``) become 255 too.
    Values outside the preset, and a size other than ``expected_size`` (H, W), raise SesamInputError.
    """
    image = _open(path)
    _check_written_classes(path, image, preset)
    if image.mode in ("P", "L"):
        label = np.asarray(image)
    elif image.mode in ("I", "I;16", "I;16B"):
        label = np.asarray(image).astype(np.int64)
    elif image.mode in ("RGB", "RGBA"):
        rgb = np.asarray(image.convert("RGB"))
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            label = rgb[..., 0]
        else:
            colours = len(np.unique(_colour_codes(rgb)))
            if colours > MAX_LABEL_COLOURS:
                raise SesamInputError(path, f"looks like a photo ({colours} distinct colours), not a label map; "
                                            "is a photo directory given where labels belong?")
            if not map_colours:
                raise SesamInputError(
                    path, "is a colour (RGB) image, not a map of class indices; pass --map-colours to "
                          f"map colours through the '{preset.name}' palette")
            label = colours_to_indices(rgb, preset, path)
    else:
        raise SesamInputError(path, f"unsupported PNG mode '{image.mode}' for a label map")
    if reduce_zero_label:
        label = np.where(label == 0, 256, label.astype(np.int64)) - 1
    if preset.void_values:
        label = np.where(np.isin(label, preset.void_values), IGNORE_INDEX, label)
    preset.check_values(label, path)
    label = label.astype(np.uint8)
    check_same_size(path, label.shape, expected_size, "label size")
    return label


def _short_list(names: list[str] | tuple[str, ...], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _check_written_classes(path: str | os.PathLike, image: Image.Image, preset: ClassPreset) -> None:
    """A label PNG that sesam wrote names its classes: refuse to read it with another class list."""
    text = getattr(image, "text", {}).get(PNG_TEXT_KEY)
    try:
        stored = json.loads(text) if text else {}
    except ValueError:
        return
    written = stored.get(CLASSES_KEY) if isinstance(stored, dict) else None
    if written is not None and list(written) != list(preset.classes):
        raise SesamInputError(
            path, f"was written with the classes of '{stored.get('preset')}' ({_short_list(written)}), not "
                  f"those of '{preset.name}' ({_short_list(preset.classes)}); pass the --classes it was made with")


def check_same_size(path: str | os.PathLike | None, size: tuple[int, ...], expected: tuple[int, ...] | None,
                    what: str = "size", of: str = "its photo's") -> None:
    """Raise SesamInputError naming ``path`` unless ``size`` and ``expected`` agree in (H, W) (their
    first two entries: an array's shape will do); ``expected`` None checks nothing. The message reads
    "``what`` WxH (WxH) does not match ``of`` WxH"."""
    if expected is not None and tuple(size[:2]) != tuple(expected[:2]):
        raise SesamInputError(path, f"{what} {size[1]}x{size[0]} (WxH) does not match {of} "
                                    f"{expected[1]}x{expected[0]}")


def read_single_channel(path: str | os.PathLike, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """An 8-bit single-channel PNG (instance ids, confidences) as (H, W) uint8, values unchecked.

    Palette ("P") and grey ("L") images read as their stored values; anything else, and a size other
    than ``expected_size`` (H, W), raises SesamInputError.
    """
    image = _open(path)
    if image.mode not in ("P", "L"):
        raise SesamInputError(path, f"is a '{image.mode}' image, not an 8-bit single-channel PNG")
    array = np.asarray(image)
    check_same_size(path, array.shape, expected_size)
    return array


def read_instances(path: str | os.PathLike, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """An instance-id map as (H, W) int32: 0 = no instance, 255 = ignore, any other value an instance.

    8-bit maps (palette or grey) follow VOC's ``SegmentationObject``: 0 none, 255 ignore (object
    borders), 1..n instances. 16-bit maps follow Cityscapes' ``*_gtFine_instanceIds.png``: label id
    x 1000 + k on objects, a bare label id (below 1000) on stuff and crowd regions, which are no
    instance. Another mode, or a size other than ``expected_size`` (H, W), raises SesamInputError.
    """
    image = _open(path)
    if image.mode in ("P", "L"):
        ids = np.asarray(image).astype(np.int32)
    elif image.mode in ("I", "I;16", "I;16B"):
        raw = np.asarray(image).astype(np.int64)
        ids = np.where(raw >= CITYSCAPES_INSTANCE_OFFSET, raw, 0).astype(np.int32)
    else:
        raise SesamInputError(path, f"is a '{image.mode}' image, not an 8-bit (VOC) or 16-bit (Cityscapes) "
                                    "instance-id PNG")
    check_same_size(path, ids.shape, expected_size)
    return ids


def write_label(path: str | os.PathLike, label: np.ndarray, preset: ClassPreset,
                meta: Mapping[str, Any] | None = None) -> None:
    """Atomically write an (H, W) uint8 index map as a palette PNG; its text chunk holds ``meta``
    (provenance) and the preset's name and class names, which ``read_label`` checks."""
    image = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    image.putpalette(preset.palette())
    write_png(path, image, {**(meta or {}), "preset": preset.name, CLASSES_KEY: list(preset.classes)})


def write_png(path: str | os.PathLike, image: Image.Image, meta: Mapping[str, Any] | None = None) -> None:
    """Atomically write a PIL image as PNG, with ``meta`` as JSON in the ``sesam`` text chunk."""
    info = PngImagePlugin.PngInfo()
    if meta is not None:
        info.add_text(PNG_TEXT_KEY, json.dumps(dict(meta), sort_keys=True, default=str))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)


def read_png_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance stored by write_png, or None for a PNG without it or one that does not read."""
    try:
        with Image.open(path) as image:
            image.load()
            text = image.text.get(PNG_TEXT_KEY)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    return None if text is None else json.loads(text)


def confidence_to_uint8(confidence: np.ndarray) -> np.ndarray:
    """A [0, 1] float confidence map as uint8 round(255 × confidence), the stored PNG form."""
    return np.round(np.clip(confidence, 0.0, 1.0) * 255).astype(np.uint8)


def write_confidence(path: str | os.PathLike, confidence: np.ndarray, meta: Mapping[str, Any] | None = None) -> None:
    """Atomically write an (H, W) float confidence map in [0, 1] as a grey PNG of
    round(255 × confidence), with ``meta`` (provenance) in its text chunk."""
    write_png(path, Image.fromarray(confidence_to_uint8(confidence), mode="L"), meta)
