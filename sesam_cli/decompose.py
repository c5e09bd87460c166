"""``sesam decompose``: split each class of a weak label into connected components (SeSAM step 1)."""

from __future__ import annotations

import click

from stages.decompose import CONNECTIVITIES, DEFAULT_CONNECTIVITY, DEFAULT_MIN_AREA, RecordDecomposer
from stages.io.components import STAGE
from stages.per_image import PerImageStream

from .options import classes_option, handle_errors, map_colours_option, per_image_command


@click.command()
@per_image_command
@classes_option
@map_colours_option
@click.option("--connectivity", type=click.Choice([str(c) for c in CONNECTIVITIES]),
              default=str(DEFAULT_CONNECTIVITY), show_default=True,
              help="Pixel neighbourhood that connects a component: 4 (edges) or 8 (edges and corners).")
@click.option("--min-area", default=DEFAULT_MIN_AREA, show_default=True, type=click.IntRange(min=1),
              help="Drop components with fewer pixels (their pixels stay in the weak label).")
@click.option("--key", default="weak", show_default=True,
              help="The record key of the label map to decompose, e.g. cam (`sesam cam predict`'s CAM pseudo-labels).")
@handle_errors
def decompose(stream: PerImageStream, preset, map_colours, connectivity, min_area, key) -> None:
    """Split each class of the weak labels into connected components.

    Reads weak labels (label PNGs or boxes JSON files, directories of them, or records with a 'weak'
    key, or the --key given, on stdin) and writes one components HDF5 per image to OUTPUT (docs/FORMATS.md), adding the key
    'components' to each record. Every class, background included, is split into connected pieces;
    255 (unlabelled) never is. A boxes file makes one component per box. With a photo ('image' key
    or --images) the label must have its size. An image with no labelled pixel passes through with
    no components (and a warning).

    \b
    Example:
      sesam simulate --kind scribbles --images data/JPEGImages -o work/weak data/SegmentationClass \\
        | sesam decompose --connectivity 8 --min-area 4 -o work/components > work/components.jsonl
      sesam decompose --key cam --classes camvid -o work/cam-components < work/cam.jsonl > work/cam-components.jsonl
    """
    decomposer = RecordDecomposer(preset, int(connectivity), min_area, map_colours, key)
    stream.stage(STAGE, "components", ".h5", decomposer.settings()).run(stream.records(key), decomposer.decompose_into)
