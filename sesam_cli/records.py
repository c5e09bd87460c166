"""``sesam records``: photos and label directories paired by id into records, the first link of a chain."""

from __future__ import annotations

import logging
import os
import re
import time

import click

from .options import handle_errors, ids_option, strip_suffix_option
from stages.records import IdList, emit, files_under, index_images, record_id

log = logging.getLogger("sesam")

KEY_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
RESERVED_KEYS = ("id", "image")


def _parse_key(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """``NAME=DIR[:SUFFIX]`` -> (name, directory, suffix) for every --key."""
    parsed = []
    for value in values:
        name, sep, rest = value.partition("=")
        directory, _, suffix = rest.partition(":") if not os.path.isdir(rest) else (rest, "", "")
        if not sep or not KEY_PATTERN.match(name) or not directory:
            raise click.BadParameter(f"'{value}' is not NAME=DIR or NAME=DIR:SUFFIX (NAME in a-z, 0-9, _)")
        if name in RESERVED_KEYS or name in (key for key, _, _ in parsed):
            raise click.BadParameter(f"'{value}': the key '{name}' is {'reserved' if name in RESERVED_KEYS else 'given twice'}")
        if not os.path.isdir(directory):
            raise click.BadParameter(f"'{value}': {directory}: no such directory")
        parsed.append((name, directory, suffix))
    return parsed


def index_key_files(directory: str, suffix: str, strip_suffixes: tuple[str, ...]) -> dict[str, str]:
    """id -> file for the files below ``directory``: with ``suffix``, only files whose stem ends in it
    (the id is the stem without it); else every file, its id as for photos. Two files with one id
    are an error naming both."""
    index: dict[str, str] = {}
    for path in files_under(directory):
        stem = os.path.splitext(os.path.basename(path))[0]
        if suffix and not stem.endswith(suffix):
            continue
        key = stem[: -len(suffix)] if suffix else record_id(path, strip_suffixes)
        if key in index:
            raise click.ClickException(f"{path}: has the same id '{key}' as {index[key]}; "
                                       "give NAME=DIR:SUFFIX to pick one kind of file")
        index[key] = path
    return index


@click.command()
@click.option("--images", "images_dir", required=True, type=click.Path(file_okay=False),
              help="Directory of photos (searched recursively): one record per photo.")
@click.option("--key", "keys", multiple=True, callback=_parse_key, metavar="NAME=DIR[:SUFFIX]",
              help="Add record key NAME: the file under DIR with the photo's id (repeatable). With SUFFIX, "
                   "only files whose name (without extension) ends in SUFFIX count, and the id is the name "
                   "without it (e.g. gt=gtFine/train:_gtFine_labelTrainIds).")
@strip_suffix_option
@ids_option
@click.option("--allow-missing", is_flag=True,
              help="Keep photos that lack a --key file (without that key) instead of leaving them out.")
@handle_errors
def records(images_dir: str, keys: list[tuple[str, str, str]], strip_suffixes: tuple[str, ...],
            ids: IdList | None, allow_missing: bool) -> None:
    """Pair photos with label directories by id and write one record per image on stdout.

    The id of a photo is its file stem (minus any --strip-suffix); each --key NAME=DIR adds the file
    of DIR with that id under NAME. Photos that lack a --key file are left out (with a count on
    stderr) unless --allow-missing; with --ids FILE, only the listed ids, and a listed id without a
    photo or a --key file is an error. Makes no artifact: it starts a chain.

    \b
    Example:
      sesam records --images data/JPEGImages --key gt=data/SegmentationClass \\
          --key gt_instances=data/SegmentationObject --ids data/ImageSets/Segmentation/val.txt > work/val.jsonl
      sesam records --images cityscapes/leftImg8bit/train --strip-suffix _leftImg8bit \\
          --key gt=cityscapes/gtFine/train:_gtFine_labelTrainIds \\
          --key gt_instances=cityscapes/gtFine/train:_gtFine_instanceIds \\
        | sesam simulate --kind scribbles --classes cityscapes -o work/weak > work/weak.jsonl
    """
    start = time.perf_counter()
    photos = index_images(images_dir, strip_suffixes)
    indices = {name: index_key_files(directory, suffix, strip_suffixes) for name, directory, suffix in keys}
    wanted = sorted(photos) if ids is None else sorted(ids.ids)
    lacking = {name: [i for i in wanted if i not in index] for name, index in indices.items()}
    if ids is not None:
        incomplete = [i for i in wanted if i not in photos
                      or (not allow_missing and any(i in missing for missing in lacking.values()))]
        if incomplete:
            shown = ", ".join(incomplete[:5]) + (" ..." if len(incomplete) > 5 else "")
            raise click.BadParameter(f"{ids.path}: {len(incomplete)} listed id(s) lack a photo under {images_dir} "
                                     f"or a --key file: {shown}", param_hint="--ids")
    skipped = set() if allow_missing else {i for missing in lacking.values() for i in missing}
    written = 0
    for image_id in wanted:
        if image_id in skipped:
            continue
        record = {"id": image_id, "image": photos[image_id]}
        record.update({name: index[image_id] for name, index in indices.items() if image_id in index})
        emit(record)
        written += 1
    for name, missing in lacking.items():
        if missing:
            log.info("records: %d photo(s) have no '%s' file%s, e.g. %s", len(missing), name,
                     "" if allow_missing else " and are left out", missing[0])
    unpaired = {name: sum(1 for i in index if i not in photos) for name, index in indices.items()}
    for name, count in unpaired.items():
        if count:
            log.info("records: %d '%s' file(s) have no photo under %s", count, name, images_dir)
    log.info("records: %d record(s) with keys %s in %.1f s", written,
             ", ".join(("image", *indices)), time.perf_counter() - start)
