"""``sesam select``: choose SAM mask hypotheses and merge them into pseudo-labels."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import click
import numpy as np

from stages.io.artifacts import open_h5, provenance
from stages.io.components import read_components
from stages.errors import SesamInputError
from stages.io.coco import annotations, image_entry, write_coco
from stages.io.images import read_label, write_confidence, write_label
from stages.presets import ClassPreset
from stages.io.masks import STAGE as MASKS_STAGE, read_masks
from stages.select import (DEFAULT_UNCLAIMED, JIANG_HYPOTHESIS, STRATEGIES, UNCLAIMED, SesamParams, Selection,
                           VoteParams, boxes_weak_label, instances, select_cam_merge, select_fixed, select_sesam,
                           select_sesam_reference)

from .options import classes_option, handle_errors, per_image_options
from .stream import PerImageStage, Record, read_records, require

STAGE = "select"
DEFAULTS = SesamParams()
VOTES = VoteParams()


def _with_upstream_keys(records: Iterable[Record]) -> Iterator[Record]:
    """Records get the keys they lack from the record stored in their masks file's provenance (so
    masks files alone are enough input); an unreadable file is reported when it is selected from."""
    for rec in records:
        stored: dict[str, Any] = {}
        if rec.get("masks") and os.path.isfile(rec["masks"]):
            try:
                with open_h5(rec["masks"], MASKS_STAGE) as h5:
                    stored = json.loads(h5.attrs.get("record", "{}"))
            except SesamInputError:
                stored = {}
        yield {**rec, **{k: v for k, v in stored.items() if k not in rec}}


@dataclass(frozen=True)
class SelectOptions:
    """The options that decide a pseudo-label: the strategy and its thresholds."""

    strategy: str
    sesam: SesamParams
    votes: VoteParams
    hypothesis: int
    cam_inside: float
    cam_cover: float
    unclaimed: str
    reference: bool = False

    def params(self, preset: ClassPreset) -> dict[str, Any]:
        """The provenance parameters: only what ``strategy`` uses (they decide up-to-dateness)."""
        chosen: dict[str, Any] = {"strategy": self.strategy, "classes": preset.name, **self.votes.as_dict()}
        if self.strategy == "sesam":
            chosen.update(self.sesam.as_dict())
            if self.reference:
                chosen["reference"] = True
        elif self.strategy == "jiang":
            chosen["hypothesis"] = self.hypothesis
        else:
            chosen.update(cam_inside=self.cam_inside, cam_cover=self.cam_cover)
        if self.strategy != "cam-merge":
            chosen["unclaimed"] = self.unclaimed
        return chosen


def _select_image(rec: Record, options: SelectOptions, preset: ClassPreset) -> tuple[Selection, dict[str, np.ndarray]]:
    """Run the chosen strategy on one record's artifacts; returns the selection and the masks datasets."""
    require(rec, "masks")
    masks = read_masks(rec["masks"])
    background = _background(preset)
    size = masks["masks"].shape[2:]
    if options.strategy == "cam-merge":
        require(rec, "cam")
        cam = read_label(rec["cam"], preset, expected_size=size)
        return select_cam_merge(masks["masks"], masks["iou_predictions"], cam, options.cam_inside,
                                options.cam_cover, background, options.votes), masks
    require(rec, "components")
    components = read_components(rec["components"])
    if components.image_size != size:
        raise SesamInputError(rec["masks"], f"masks are {size[1]}x{size[0]} (WxH) but the components "
                                            f"{rec['components']} are {components.image_size[1]}x"
                                            f"{components.image_size[0]}")
    if masks["set_component"].size and (masks["set_component"].min() < 1
                                        or masks["set_component"].max() > components.count):
        raise SesamInputError(rec["masks"], f"prompt sets name components outside 1..{components.count} "
                                            f"of {rec['components']} (automatic-mode masks need --strategy cam-merge)")
    weak = (boxes_weak_label(components.component_map, background) if components.source == "boxes"
            else components.weak_label)
    fill = {"unclaimed": options.unclaimed, "background_class": background, "votes": options.votes}
    if options.strategy == "jiang":
        if options.hypothesis >= masks["masks"].shape[1]:
            raise SesamInputError(rec["masks"], f"has {masks['masks'].shape[1]} hypotheses per prompt set, "
                                                f"no index {options.hypothesis}; run sam-predict with multimask output")
        return select_fixed(masks["masks"], masks["iou_predictions"], masks["set_class"], weak, options.hypothesis,
                            **fill), masks
    if options.reference:
        return select_sesam_reference(masks["masks"], masks["iou_predictions"], masks["set_class"],
                                      masks["set_component"], weak, components.component_map, options.sesam,
                                      **fill), masks
    boxes = components.component_box if components.source == "boxes" else None
    return select_sesam(masks["masks"], masks["iou_predictions"], masks["set_class"], masks["set_component"],
                        weak, components.component_map, options.sesam, boxes, **fill), masks


def _background(preset: ClassPreset) -> int | None:
    return 0 if preset.has_background else None


def _fraction(name: str, default: float, text: str) -> Any:
    return click.option(name, type=click.FloatRange(0, 1), default=default, show_default=True, help=text)


@click.command()
@per_image_options
@classes_option
@click.option("--strategy", type=click.Choice(STRATEGIES), default="sesam", show_default=True,
              help="sesam: agreement with the weak label; jiang: a fixed hypothesis (Jiang & Yang 2023); "
                   "cam-merge: automatic masks merged with a CAM map (record key 'cam', Chen et al. 2023).")
@click.option("--unclaimed", type=click.Choice(UNCLAIMED), default=DEFAULT_UNCLAIMED, show_default=True,
              help="Label of pixels no mask and no weak label decides: 255 (ignore), the preset's background class "
                   "(presets that have one), or the class of the nearest decided pixel; auto: background where the "
                   "preset has one, else 255.")
@click.option("--confidence-dir", type=click.Path(file_okay=False),
              help="Also write confidence maps (uint8 PNG, 255 x confidence) here as {id}.png; "
                   "record key 'confidence'.")
@click.option("--instances", "instances_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the kept masks as COCO instance annotations (RLE, box, class, score) to FILE at the "
                   "end; every image is processed again so the file covers them all.")
@_fraction("--other-tolerance", DEFAULTS.other_tolerance,
           "sesam: reject a hypothesis if more of the labelled pixels it covers belong to other classes.")
@_fraction("--other-limit", DEFAULTS.other_limit,
           "sesam: when all of a set's hypotheses are rejected so, keep the least mixed one if at most this.")
@_fraction("--tie-margin", DEFAULTS.tie_margin,
           "sesam: hypotheses this close to the best coverage of their own component are candidates.")
@click.option("--overlap-penalty", type=click.FloatRange(0), default=DEFAULTS.overlap_penalty, show_default=True,
              help="sesam: candidates are settled jointly; a pixel taken from another class's chosen mask costs "
                   "this much more than a free pixel gains.")
@_fraction("--box-min-inside", DEFAULTS.box_min_inside,
           "sesam, boxes: a hypothesis needs at least this fraction of itself inside its box.")
@_fraction("--box-min-cover", DEFAULTS.box_min_cover,
           "sesam, boxes: a hypothesis must cover at least this fraction of its box.")
@_fraction("--min-vote-share", VOTES.min_vote_share,
           "A pixel takes the winning class only when its share of the votes exceeds this.")
@click.option("--size-exponent", type=click.FloatRange(0), default=VOTES.size_exponent, show_default=True,
              help="Vote weight = predicted IoU / (mask area / image area) ** this: smaller masks weigh more.")
@click.option("--hypothesis", type=click.IntRange(0), default=JIANG_HYPOTHESIS, show_default=True,
              help="jiang: the hypothesis index kept for every prompt set "
                   "(0 with centroid prompts: the naive baseline).")
@click.option("--reference", is_flag=True,
              help="sesam: the components are those of a dense reference, not of annotations (a CAM pseudo-label "
                   "prompted at its peaks, a network prediction): it guides the choice of masks but does not "
                   "overrule them; only pixels no kept mask decides keep its class.")
@_fraction("--cam-inside", 0.5, "cam-merge: a mask goes to a class holding more than this fraction of it.")
@_fraction("--cam-cover", 0.85, "cam-merge: ... or to a class whose region it covers at least this much of.")
@handle_errors
def select(inputs: tuple[str, ...], images_dir: str | None, strip_suffixes: tuple[str, ...], output_dir: str,
           overwrite: bool, shard, keep_going: bool, preset: ClassPreset, strategy: str, unclaimed: str,
           confidence_dir: str | None, instances_path: str | None, other_tolerance: float, other_limit: float,
           tie_margin: float, overlap_penalty: float, box_min_inside: float, box_min_cover: float,
           min_vote_share: float, size_exponent: float, hypothesis: int, reference: bool, cam_inside: float,
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
    options = SelectOptions(
        strategy, SesamParams(other_tolerance, other_limit, tie_margin, overlap_penalty,
                              box_min_inside=box_min_inside, box_min_cover=box_min_cover),
        VoteParams(min_vote_share, size_exponent), hypothesis, cam_inside, cam_cover, unclaimed, reference)
    params = options.params(preset)
    companions = {"confidence": (confidence_dir, ".png")} if confidence_dir else {}
    stage = PerImageStage(STAGE, "pseudo", output_dir, ".png", params, overwrite or bool(instances_path), shard,
                          keep_going, companions=companions)
    images: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []

    def make(rec: Record, out: str) -> None:
        selection, masks = _select_image(rec, options, preset)
        meta = provenance(STAGE, params, rec)
        if confidence_dir:
            write_confidence(stage.companion_path(rec, "confidence"), selection.confidence, meta)
        write_label(out, selection.label, preset, meta)
        if instances_path:
            number = len(images) + 1
            images.append(image_entry(number, rec["id"], rec.get("image"), selection.label.shape))
            found = instances(masks["masks"], masks["iou_predictions"], selection, masks["set_component"],
                              _background(preset))
            entries.extend(annotations(found, number, len(entries) + 1))

    records = read_records(inputs, "masks", images_dir, strip_suffixes, suffixes=(".h5",))
    stage.run(_with_upstream_keys(records), make)
    if instances_path:
        write_coco(instances_path, images, entries, preset,
                   {"description": "sesam select instance pseudo-labels", "sesam": provenance(STAGE, params)})
