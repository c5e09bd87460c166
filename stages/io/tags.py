"""Image-level labels ("tags") on disk and in records: which classes an image contains.

A record's ``tags`` is either a JSON list of class names or indices (``["car", "road"]``, ``[3, 8]``)
or the path of a tags JSON file (``sesam simulate --kind tags`` writes one per image, docs/FORMATS.md):

    {"tags": ["road", "car"], "sesam": {...provenance...}}

A tags CSV holds one image per line, ``id,class,class,...`` (names or indices; an optional first line
starting with ``id`` is a header). The background class of a preset with one is never a tag: every
photo has background, so it tells a classifier nothing; it is dropped where given. Tags are returned
as sorted int64 arrays of class indices.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import SesamInputError
from ..presets import ClassPreset
from .atomic import write_json


def _class_index(value: Any, preset: ClassPreset, source: str | None) -> int:
    """The class index a tag names (a class name, or an index as int or digit string)."""
    if isinstance(value, str) and not value.strip().isdigit():
        name = value.strip()
        if name not in preset.classes:
            raise SesamInputError(source, f"tag '{name}' is not a class of the '{preset.name}' preset")
        return preset.classes.index(name)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SesamInputError(source, f"tag {value!r} is neither a class name nor a class index")
    index = int(value)
    if not 0 <= index < preset.num_classes:
        raise SesamInputError(source, f"tag {index} is outside the '{preset.name}' preset's classes "
                                      f"0..{preset.num_classes - 1}")
    return index


def parse_tags(values: Iterable[Any], preset: ClassPreset, source: str | None = None) -> np.ndarray:
    """Sorted unique int64 class indices from tag names / indices; the background class is dropped."""
    indices = {_class_index(value, preset, source) for value in values}
    if preset.has_background:
        indices.discard(0)
    return np.array(sorted(indices), dtype=np.int64)


def read_tags(value: Any, preset: ClassPreset, record_id: str | None = None) -> np.ndarray:
    """The tags of a record's ``tags`` value: an inline JSON list, or the path of a tags JSON file
    (``{"tags": [...]}`` or a bare list)."""
    if isinstance(value, list):
        return parse_tags(value, preset, f"record '{record_id}'")
    if not isinstance(value, str):
        raise SesamInputError(None, f"record '{record_id}': 'tags' must be a list of classes or a tags file")
    try:
        with open(value, encoding="utf-8") as handle:
            content = json.load(handle)
    except OSError as exc:
        raise SesamInputError(value, f"cannot read the tags file ({exc.strerror})") from None
    except ValueError:
        raise SesamInputError(value, "is not a JSON tags file") from None
    listed = content.get("tags") if isinstance(content, dict) else content
    if not isinstance(listed, list):
        raise SesamInputError(value, "holds no 'tags' list")
    return parse_tags(listed, preset, value)


def read_tags_csv(path: str, preset: ClassPreset) -> dict[str, np.ndarray]:
    """id -> tags from a CSV of ``id,class,class,...`` lines (blank fields and lines ignored)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = [[field.strip() for field in row] for row in csv.reader(handle)]
    except (OSError, UnicodeDecodeError) as exc:
        raise SesamInputError(path, f"cannot read the tags CSV ({getattr(exc, 'strerror', None) or exc})") from None
    rows = [row for row in rows if any(row)]
    if rows and rows[0][0].lower() == "id":
        rows = rows[1:]
    tags: dict[str, np.ndarray] = {}
    for number, row in enumerate(rows, 1):
        image_id = row[0]
        if image_id in tags:
            raise SesamInputError(path, f"lists id '{image_id}' twice")
        tags[image_id] = parse_tags([field for field in row[1:] if field], preset, f"{path} ({image_id})")
    if not tags:
        raise SesamInputError(path, "lists no image")
    return tags


def write_tags(path: str | os.PathLike, tags: np.ndarray, preset: ClassPreset,
               meta: Mapping[str, Any] | None = None) -> None:
    """Atomically write a tags JSON file (class names), with provenance ``meta`` under ``sesam``."""
    write_json(path, {"tags": [preset.classes[int(index)] for index in tags]}, meta)
