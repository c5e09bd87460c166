"""``sesam records``: photos and label directories paired by id into records, the first link of a chain."""

from __future__ import annotations

import logging
import os
import re
import time

import click

from stages.records import IdList, emit_all, paired_records

from .options import handle_errors, ids_option, strip_suffix_option

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
            why = "reserved" if name in RESERVED_KEYS else "given twice"
            raise click.BadParameter(f"'{value}': the key '{name}' is {why}")
        if not os.path.isdir(directory):
            raise click.BadParameter(f"'{value}': {directory}: no such directory")
        parsed.append((name, directory, suffix))
    return parsed


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
    written = emit_all(paired_records(images_dir, keys, strip_suffixes, ids, allow_missing))
    log.info("records: %d record(s) with keys %s in %.1f s", written,
             ", ".join(("image", *(name for name, _, _ in keys))), time.perf_counter() - start)
