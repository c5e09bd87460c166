"""One record's pseudo-label: the selection parameters, and the dispatcher that reads a record's
``masks`` and ``components`` (or ``cam``) artifacts and runs the chosen strategy on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SesamInputError
from ..io.components import read_components
from ..io.images import read_label
from ..io.masks import open_masks
from ..presets import ClassPreset
from ..records import Record, require
from .merge import DEFAULT_UNCLAIMED, Selection, VoteParams, boxes_weak_label
from .rules import (CAM_MIN_COVER, CAM_MIN_INSIDE, JIANG_HYPOTHESIS, SesamParams, select_cam_merge, select_fixed,
                    select_sesam, select_sesam_reference)

STRATEGIES = ("sesam", "jiang", "cam-merge")


def background_class(preset: ClassPreset) -> int | None:
    """The preset's background class (0) where it has one, else None."""
    return 0 if preset.has_background else None


@dataclass(frozen=True)
class SelectParams:
    """Everything that decides one image's pseudo-label: the strategy and its thresholds.

    ``strategy`` is one of ``STRATEGIES``; ``sesam`` / ``votes`` as :class:`SesamParams` /
    :class:`VoteParams`; ``hypothesis`` the index ``jiang`` keeps; ``cam_inside`` / ``cam_cover`` the
    ``cam-merge`` thresholds; ``unclaimed`` as :func:`fill_unclaimed` (not for ``cam-merge``);
    ``reference``: ``sesam`` with a dense reference (:func:`select_sesam_reference`).
    """

    strategy: str = "sesam"
    sesam: SesamParams = SesamParams()
    votes: VoteParams = VoteParams()
    hypothesis: int = JIANG_HYPOTHESIS
    cam_inside: float = CAM_MIN_INSIDE
    cam_cover: float = CAM_MIN_COVER
    unclaimed: str = DEFAULT_UNCLAIMED
    reference: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not '{self.strategy}'")
        if self.reference and self.strategy != "sesam":
            raise ValueError("a reference applies to the sesam strategy")

    def as_dict(self, preset: ClassPreset) -> dict[str, Any]:
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


def select_image(record: Record, preset: ClassPreset,
                 params: SelectParams = SelectParams()) -> tuple[Selection, dict[str, np.ndarray]]:
    """The pseudo-label of one record: ``params.strategy`` run on its 'masks' (sam-predict) and its
    'components' (decompose; sesam, jiang) or 'cam' (cam-merge). Returns the selection and the masks
    datasets (:func:`~stages.io.masks.open_masks`: ``masks`` is a MaskStack, read a set at a time);
    SesamInputError names a missing key or a file that does not fit."""
    require(record, "masks")
    masks = open_masks(record["masks"])
    background = background_class(preset)
    size = masks["masks"].shape[2:]
    if params.strategy == "cam-merge":
        require(record, "cam")
        cam = read_label(record["cam"], preset, expected_size=size)
        return select_cam_merge(masks["masks"], masks["iou_predictions"], cam, params.cam_inside,
                                params.cam_cover, background, params.votes), masks
    require(record, "components")
    components = read_components(record["components"])
    if components.image_size != size:
        raise SesamInputError(record["masks"], f"masks are {size[1]}x{size[0]} (WxH) but the components "
                                               f"{record['components']} are {components.image_size[1]}x"
                                               f"{components.image_size[0]}")
    if masks["set_component"].size and (masks["set_component"].min() < 1
                                        or masks["set_component"].max() > components.count):
        raise SesamInputError(record["masks"], f"prompt sets name components outside 1..{components.count} of "
                                               f"{record['components']} (automatic-mode masks need "
                                               "--strategy cam-merge)")
    weak = (boxes_weak_label(components.component_map, background) if components.source == "boxes"
            else components.weak_label)
    fill = {"unclaimed": params.unclaimed, "background_class": background, "votes": params.votes}
    if params.strategy == "jiang":
        if params.hypothesis >= masks["masks"].shape[1]:
            raise SesamInputError(record["masks"], f"has {masks['masks'].shape[1]} hypotheses per prompt set, no "
                                                   f"index {params.hypothesis}; run sam-predict with multimask output")
        return select_fixed(masks["masks"], masks["iou_predictions"], masks["set_class"], weak, params.hypothesis,
                            **fill), masks
    if params.reference:
        return select_sesam_reference(masks["masks"], masks["iou_predictions"], masks["set_class"],
                                      masks["set_component"], weak, components.component_map, params.sesam,
                                      **fill), masks
    boxes = components.component_box if components.source == "boxes" else None
    return select_sesam(masks["masks"], masks["iou_predictions"], masks["set_class"], masks["set_component"],
                        weak, components.component_map, params.sesam, boxes, **fill), masks
