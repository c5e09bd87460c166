"""``sesam sample-prompts``: SAM prompts from weak-label components (SeSAM step 2)."""

from __future__ import annotations

import logging

import click

from stages.cam import DEFAULT_MAX_PEAKS
from stages.io.prompts import STAGE
from stages.per_image import PerImageStream
from stages.prompt_sampler import ALL_STRATEGIES, PromptSampler
from stages.prompts import GROUPS, STRATEGY_DEFAULTS

from .options import default_of, handle_errors, per_image_command, seed_option

log = logging.getLogger("sesam")


@click.command("sample-prompts")
@per_image_command
@click.option("--strategy", type=click.Choice(ALL_STRATEGIES), default=default_of(PromptSampler, "strategy"),
              show_default=True,
              help="skeleton: points along each component's skeleton (SeSAM); fraction: a random fraction "
                   "of its pixels (Jiang & Yang); centroid: its pixel nearest its centroid; box: its "
                   "bounding box; cam-peaks: the local maxima of each present class's CAM (WeakSAM; "
                   "records need 'cam_scores' from `sesam cam predict` and the components of its 'cam').")
@click.option("--spacing", default=default_of(PromptSampler, "spacing"), show_default=True,
              type=click.FloatRange(min=1),
              help="skeleton: at least this many pixels between a component's points.")
@click.option("--max-points", type=click.IntRange(min=1),
              help=f"skeleton, fraction: at most this many points per component; cam-peaks: peaks per class  "
                   f"[default: {STRATEGY_DEFAULTS['skeleton'].max_points} for skeleton, "
                   f"{STRATEGY_DEFAULTS['fraction'].max_points} for fraction, {DEFAULT_MAX_PEAKS} for cam-peaks]")
@click.option("--fraction", default=default_of(PromptSampler, "fraction"), show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="fraction: the share of a component's pixels taken as points (at least one).")
@click.option("--negatives", type=click.IntRange(min=0),
              help="Add to each prompt set the N nearest points of other classes' components as negatives  "
                   f"[default: {STRATEGY_DEFAULTS['skeleton'].negatives} for skeleton and box, 0 otherwise]")
@click.option("--group", type=click.Choice(GROUPS),
              help="component: a component's points form one prompt set; point: each point is its own set  "
                   "[default: point for skeleton, component otherwise]")
@click.option("--peak-window", default=default_of(PromptSampler, "peak_window"), show_default=True,
              type=click.IntRange(min=1),
              help="cam-peaks: a peak is the highest CAM value of its N x N pixel window.")
@click.option("--peak-threshold", default=default_of(PromptSampler, "peak_threshold"), show_default=True,
              type=click.FloatRange(0, 1),
              help="cam-peaks: only peaks of at least this CAM value (each class's CAM peaks at 1).")
@seed_option
@handle_errors
def sample_prompts(stream: PerImageStream, strategy, spacing, max_points, fraction, negatives, group, peak_window,
                   peak_threshold, seed) -> None:
    """Sample SAM prompts (points, boxes) from each image's weak-label components.

    Reads components HDF5 files (files, directories, or records with a 'components' key on stdin,
    as 'sesam decompose' writes them) and writes one prompts HDF5 per image to OUTPUT
    (docs/FORMATS.md), adding the key 'prompts' to each record. Points are (x, y) pixels inside
    their component; negatives are the positive points the strategy placed in other classes'
    components (for box: each component's pixel nearest its centroid), nearest first. By default
    (SeSAM) every skeleton point is a prompt set of its own with the nearest other-class point as a
    negative. The fraction sample depends only on --seed and the image id, so shards and reruns agree.

    With --strategy cam-peaks (WeakSAM) the points are the peaks of each present class's CAM
    ('cam_scores' of `sesam cam predict`) that lie in a component of their class in the CAM
    pseudo-label (`sesam decompose --key cam`); --group point makes a prompt set of each peak,
    component one of the peaks in a component (docs/CAM.md).

    \b
    Example:
      sesam decompose -o work/components work/weak \\
        | sesam sample-prompts -o work/prompts > work/prompts.jsonl
      sesam sample-prompts --strategy fraction --negatives 5 -o work/jiang work/components
      sesam sample-prompts --strategy centroid -o work/naive work/components
      sesam decompose --key cam --classes camvid -o work/cam-components < work/cam.jsonl \\
        | sesam sample-prompts --strategy cam-peaks --group point -o work/peaks > work/peaks.jsonl
    """
    sampler = PromptSampler(strategy, spacing, max_points, fraction, negatives, group, peak_window, peak_threshold,
                            seed)
    stream.stage(STAGE, "prompts", ".h5", sampler.settings()).run(stream.records("components", (".h5",)),
                                                                  sampler.sample)
