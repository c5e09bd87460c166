"""``sesam simulate``: weak labels (points, scribbles, coarse polygons, boxes) from full ground truth."""

from __future__ import annotations

import click

from stages.per_image import PerImageStream
from stages.simulate import SCRIBBLE_STYLES, simulate_weak
from stages.weak_labels import ALL_KINDS, KIND_OPTIONS, WeakLabelSimulator, artifact_of

from .options import (classes_option, default_of, handle_errors, ids_option, map_colours_option, per_image_command,
                      reduce_zero_label_option, seed_option)


def _refuse_foreign_options(ctx: click.Context, kind: str) -> None:
    """A kind-specific option given with another kind is a usage error, not silently ignored."""
    for other, names in KIND_OPTIONS.items():
        for name in names:
            given = ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
            if other != kind and given:
                flag = "--" + name.replace("_", "-")
                raise click.UsageError(f"{flag} applies to --kind {other}, not --kind {kind}")


@click.command()
@per_image_command
@ids_option
@click.option("--kind", type=click.Choice(ALL_KINDS), required=True,
              help="Which weak label to simulate (tags: the classes an image contains, for `sesam cam`).")
@click.option("--instances", "instances_dir", type=click.Path(file_okay=False),
              help="Directory of instance-id PNGs, paired by file stem: one weak annotation per object "
                   "instead of per connected piece. 8-bit maps: 0 none, 255 ignore, 1..n objects (VOC); "
                   "16-bit maps: label id x 1000 + k on objects (Cityscapes' _gtFine_instanceIds.png).")
@classes_option
@map_colours_option
@reduce_zero_label_option
@seed_option
@click.option("--points-per-region", default=default_of(simulate_weak, "points_per_region"), show_default=True,
              type=click.IntRange(min=1),
              help="points: clicks per object / stuff region.")
@click.option("--radius", default=float(default_of(simulate_weak, "radius")), show_default=True,
              type=click.FloatRange(min=0),
              help="points: each click is a disc of this radius in pixels (0 = a single pixel).")
@click.option("--click-depth", default=default_of(simulate_weak, "click_depth"), show_default=True,
              type=click.FloatRange(0, 1),
              help="points: clicks lie where the distance to the region's boundary is at least this fraction "
                   "of the region's largest (0: anywhere inside, near edges too; 1: the deepest pixels).")
@click.option("--thickness", type=click.IntRange(min=1),
              help="scribbles: stroke width in pixels  [default: 3 per 500 px of the image's longest side]")
@click.option("--max-strokes", default=default_of(simulate_weak, "max_strokes"), show_default=True,
              type=click.IntRange(min=1),
              help="scribbles: at most this many strokes per region.")
@click.option("--scribble-style", type=click.Choice(SCRIBBLE_STYLES),
              default=default_of(simulate_weak, "scribble_style"), show_default=True,
              help="scribbles: skeleton: strokes along each region's skeleton, inside it; human: one long stroke "
                   "per class region through all its touching instances, straying a stroke width past boundaries.")
@click.option("--margin", default=default_of(simulate_weak, "margin"), show_default=True,
              type=click.FloatRange(min=0),
              help="coarse: shrink each region by this many pixels, or below 1 by this fraction of "
                   "its largest distance to its boundary.")
@click.option("--box-jitter", default=default_of(simulate_weak, "box_jitter"), show_default=True,
              type=click.FloatRange(0, 1),
              help="boxes: move each side by up to this fraction of the box's width or height (hand-drawn boxes "
                   "are not pixel-tight); 0: tight boxes.")
@click.option("--min-area", type=click.FloatRange(min=0),
              help="Leave regions smaller than this unlabelled (tags: classes with fewer pixels untagged): "
                   "pixels, or below 1 a fraction of the image  [default: 0.001 for coarse, 0.0002 otherwise]")
@click.pass_context
@handle_errors
def simulate(ctx: click.Context, stream: PerImageStream, ids, kind, instances_dir, preset, map_colours,
             reduce_zero_label, seed, min_area, **options) -> None:
    """Simulate weak labels from ground-truth label maps.

    Reads ground-truth PNGs (files, directories, or records with a 'gt' key on stdin) and writes one
    weak label per image to OUTPUT: a palette PNG for points, scribbles and coarse (255 = unlabelled),
    a boxes JSON for boxes, adding the key 'weak' to each record; for tags, a JSON file listing the
    classes (but background) with at least --min-area pixels, under the key 'tags' (`sesam cam`).
    Regions are object instances (with --instances) and connected pieces of each class, background
    included; see docs/SIMULATE.md.
    Results depend only on --seed and the image id, so shards and reruns agree.

    \b
    Example:
      sesam simulate --kind scribbles --images data/JPEGImages \\
          --instances data/SegmentationObject -o work/weak data/SegmentationClass > work/weak.jsonl
      sesam simulate --kind scribbles --scribble-style human --classes camvid \\
          --images camvid/val/images -o work/weak camvid/val/labels > work/weak.jsonl
      sesam simulate --kind points --ids data/ImageSets/Segmentation/train.txt --images data/JPEGImages \\
          -o work/weak-train data/SegmentationClass > work/weak-train.jsonl
      sesam simulate --kind tags --classes camvid --images camvid/train/images -o work/tags \\
          camvid/train/labels > work/tags.jsonl
    """
    _refuse_foreign_options(ctx, kind)
    simulator = WeakLabelSimulator(kind, preset, seed, options, min_area, map_colours, reduce_zero_label,
                                   instances_dir)
    records = simulator.with_instance_maps(stream.records("gt", (".png",), ids), stream.strip_suffixes)
    simulator.run(stream.stage("simulate", *artifact_of(kind), simulator.settings()), records)
