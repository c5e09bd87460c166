"""``sesam sample-prompts``: SAM prompts from weak-label components (SeSAM step 2)."""

from __future__ import annotations

import logging

import click

from stages.artifacts import provenance
from stages.decompose import read_components
from stages.prompts import (
    DEFAULT_FRACTION, DEFAULT_SPACING, GROUPS, STAGE, STRATEGIES, STRATEGY_DEFAULTS, STRATEGY_OPTIONS,
    resolve_options, sample_prompts as sample, write_prompts,
)
from stages.simulate import image_rng

from .options import handle_errors, per_image_options, seed_option
from .stream import PerImageStage, read_records, require

log = logging.getLogger("sesam")


@click.command("sample-prompts")
@per_image_options
@click.option("--strategy", type=click.Choice(STRATEGIES), default="skeleton", show_default=True,
              help="skeleton: points along each component's skeleton (SeSAM); fraction: a random fraction "
                   "of its pixels (Jiang & Yang); centroid: its pixel nearest its centroid; box: its "
                   "bounding box.")
@click.option("--spacing", default=DEFAULT_SPACING, show_default=True, type=click.FloatRange(min=1),
              help="skeleton: at least this many pixels between a component's points.")
@click.option("--max-points", type=click.IntRange(min=1),
              help=f"skeleton, fraction: at most this many points per component  "
                   f"[default: {STRATEGY_DEFAULTS['skeleton'].max_points} for skeleton, "
                   f"{STRATEGY_DEFAULTS['fraction'].max_points} for fraction]")
@click.option("--fraction", default=DEFAULT_FRACTION, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="fraction: the share of a component's pixels taken as points (at least one).")
@click.option("--negatives", type=click.IntRange(min=0),
              help="Add to each prompt set the N nearest points of other classes' components as negatives  "
                   f"[default: {STRATEGY_DEFAULTS['skeleton'].negatives} for skeleton and box, 0 otherwise]")
@click.option("--group", type=click.Choice(GROUPS),
              help="component: a component's points form one prompt set; point: each point is its own set  "
                   "[default: point for skeleton, component otherwise]")
@seed_option
@handle_errors
def sample_prompts(inputs, images_dir, strip_suffixes, output_dir, overwrite, shard, keep_going, strategy,
                   spacing, max_points, fraction, negatives, group, seed) -> None:
    """Sample SAM prompts (points, boxes) from each image's weak-label components.

    Reads components HDF5 files (files, directories, or records with a 'components' key on stdin,
    as 'sesam decompose' writes them) and writes one prompts HDF5 per image to OUTPUT
    (docs/FORMATS.md), adding the key 'prompts' to each record. Points are (x, y) pixels inside
    their component; negatives are the positive points the strategy placed in other classes'
    components (for box: each component's pixel nearest its centroid), nearest first. By default
    (SeSAM) every skeleton point is a prompt set of its own with the 5 nearest other-class points as
    negatives. The fraction sample depends only on --seed and the image id, so shards and reruns agree.

    \b
    Example:
      sesam decompose -o work/components work/weak \\
        | sesam sample-prompts -o work/prompts > work/prompts.jsonl
      sesam sample-prompts --strategy fraction --negatives 5 -o work/jiang work/components
      sesam sample-prompts --strategy centroid -o work/naive work/components
    """
    group, max_points, negatives = resolve_options(strategy, group, max_points, negatives)
    chosen = {"spacing": spacing, "max_points": max_points, "fraction": fraction, "seed": seed}
    params = {"strategy": strategy, "negatives": negatives, "group": group,
              **{name: chosen[name] for name in STRATEGY_OPTIONS[strategy]}}

    def make(record: dict, out_path: str) -> None:
        require(record, "components")
        components = read_components(record["components"])
        if components.count == 0:
            log.warning("%s: no components; writing no prompt sets", record["components"])
        prompts = sample(components, strategy, spacing, max_points, fraction, negatives, group,
                         image_rng(seed, record["id"]))
        write_prompts(out_path, prompts, provenance(STAGE, params, record))

    records = read_records(inputs, "components", images_dir, strip_suffixes, suffixes=(".h5",))
    stage = PerImageStage(STAGE, "prompts", output_dir, ".h5", params, overwrite, shard, keep_going)
    stage.run(records, make)
