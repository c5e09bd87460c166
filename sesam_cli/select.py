"""``sesam select``: choose SAM mask hypotheses and merge them into pseudo-labels."""

from __future__ import annotations

from typing import Any

import click

from stages.io.masks import with_stored_record_keys
from stages.per_image import PerImageStream
from stages.presets import ClassPreset
from stages.pseudo_labeller import STAGE, PseudoLabeller
from stages.records import Record
from stages.select import STRATEGIES, UNCLAIMED, SelectParams, SesamParams, VoteParams

from .options import classes_option, handle_errors, per_image_command

DEFAULTS = SelectParams()


def _fraction(name: str, default: float, text: str) -> Any:
    return click.option(name, type=click.FloatRange(0, 1), default=default, show_default=True, help=text)


@click.command()
@per_image_command
@classes_option
@click.option("--strategy", type=click.Choice(STRATEGIES), default=DEFAULTS.strategy, show_default=True,
              help="sesam: agreement with the weak label; jiang: a fixed hypothesis (Jiang & Yang 2023); "
                   "cam-merge: automatic masks merged with a CAM map (record key 'cam', Chen et al. 2023).")
@click.option("--unclaimed", type=click.Choice(UNCLAIMED), default=DEFAULTS.unclaimed, show_default=True,
              help="Label of pixels no mask and no weak label decides: 255 (ignore), the preset's background class "
                   "(presets that have one), or the class of the nearest decided pixel; auto: background where the "
                   "preset has one, else 255, except that a box label fills its boxes (docs/SELECT.md).")
@click.option("--confidence-dir", type=click.Path(file_okay=False),
              help="Also write confidence maps (uint8 PNG, 255 x confidence) here as {id}.png; "
                   "record key 'confidence'.")
@click.option("--instances", "instances_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the kept masks as COCO instance annotations (RLE, box, class, score) to FILE at the "
                   "end; every image is processed again so the file covers them all.")
@_fraction("--other-tolerance", DEFAULTS.sesam.other_tolerance,
           "sesam: reject a hypothesis if more of the labelled pixels it covers belong to other classes.")
@_fraction("--other-limit", DEFAULTS.sesam.other_limit,
           "sesam: when all of a set's hypotheses are rejected so, keep the least mixed one if at most this.")
@_fraction("--tie-margin", DEFAULTS.sesam.tie_margin,
           "sesam: hypotheses this close to the best coverage of their own component are candidates.")
@click.option("--overlap-penalty", type=click.FloatRange(0), default=DEFAULTS.sesam.overlap_penalty,
              show_default=True,
              help="sesam: candidates are settled jointly; a pixel taken from another class's chosen mask costs "
                   "this much more than a free pixel gains.")
@_fraction("--box-min-inside", DEFAULTS.sesam.box_min_inside,
           "sesam, boxes: a hypothesis needs at least this fraction of itself inside its box.")
@_fraction("--box-min-cover", DEFAULTS.sesam.box_min_cover,
           "sesam, boxes: a hypothesis must cover at least this fraction of its box.")
@_fraction("--box-margin", DEFAULTS.sesam.box_margin,
           "sesam, boxes: masks vote inside each box grown by this fraction of its size (0: tight boxes; "
           "0.1 for loose, hand-drawn ones).")
@_fraction("--min-vote-share", DEFAULTS.votes.min_vote_share,
           "A pixel takes the winning class only when its share of the votes exceeds this.")
@click.option("--size-exponent", type=click.FloatRange(0), default=DEFAULTS.votes.size_exponent, show_default=True,
              help="Vote weight = predicted IoU / (mask area / image area) ** this: smaller masks weigh more.")
@click.option("--hypothesis", type=click.IntRange(0), default=DEFAULTS.hypothesis, show_default=True,
              help="jiang: the hypothesis index kept for every prompt set "
                   "(0 with centroid prompts: the naive baseline).")
@click.option("--reference", is_flag=True,
              help="sesam: the components are those of a dense reference, not of annotations (a CAM pseudo-label "
                   "prompted at its peaks, a network prediction): it guides the choice of masks but does not "
                   "overrule them; only pixels no kept mask decides keep its class.")
@_fraction("--cam-inside", DEFAULTS.cam_inside,
           "cam-merge: a mask goes to a class holding more than this fraction of it.")
@_fraction("--cam-cover", DEFAULTS.cam_cover,
           "cam-merge: ... or to a class whose region it covers at least this much of.")
@handle_errors
def select(stream: PerImageStream, preset: ClassPreset, strategy: str, unclaimed: str,
           confidence_dir: str | None, instances_path: str | None, other_tolerance: float, other_limit: float,
           tie_margin: float, overlap_penalty: float, box_min_inside: float, box_min_cover: float,
           box_margin: float, min_vote_share: float, size_exponent: float, hypothesis: int, reference: bool, cam_inside: float,
           cam_cover: float) -> None:
    """Choose SAM mask hypotheses that agree with the weak label and merge them into pseudo-labels.

    Reads each record's 'masks' (sam-predict), 'components' (decompose; for sesam and jiang) or
    'cam' (cam-merge); writes a pseudo-label PNG per image (preset palette, 255 = no label) under
    -o as record key 'pseudo'. Labelled weak pixels keep their class. INPUTS may be masks files or
    directories instead of records on stdin: the other keys come from the record stored in each
    masks file.

    \b
    Example:
      sesam select -o work/pseudo --confidence-dir work/confidence < work/masks.jsonl > work/pseudo.jsonl
      sesam select -o work/jiang --strategy jiang work/masks
      sesam select -o work/pseudo --instances work/instances.json < work/masks.jsonl > /dev/null
      sesam select --reference --classes camvid -o work/pseudo < work/peak-masks.jsonl > work/pseudo.jsonl
    """
    if reference and strategy != "sesam":
        raise click.UsageError("--reference applies to --strategy sesam")
    if unclaimed == "background" and not preset.has_background:
        raise click.BadParameter(f"the '{preset.name}' preset has no background class", param_hint="--unclaimed")
    labeller = PseudoLabeller(preset, SelectParams(
        strategy, SesamParams(other_tolerance, other_limit, tie_margin, overlap_penalty,
                              box_min_inside=box_min_inside, box_min_cover=box_min_cover, box_margin=box_margin),
        VoteParams(min_vote_share, size_exponent), hypothesis, cam_inside, cam_cover, unclaimed, reference),
        collect_instances=bool(instances_path))
    companions = {"confidence": (confidence_dir, ".png")} if confidence_dir else {}
    stage = stream.stage(STAGE, "pseudo", ".png", labeller.settings(), overwrite=bool(instances_path),
                         companions=companions)

    def make(rec: Record, out: str) -> None:
        labeller.label_into(rec, out, stage.companion_path(rec, "confidence") if confidence_dir else None)

    stage.run(with_stored_record_keys(stream.records("masks", (".h5",))), make)
    if instances_path:
        labeller.write_instances(instances_path)
