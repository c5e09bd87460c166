"""SeSAM step 4: choose SAM mask hypotheses that agree with the weak label, merge them into a class map.

Modules: :mod:`~stages.select.rules` (which hypotheses each strategy keeps), :mod:`~stages.select.merge`
(the vote merge and the ``unclaimed`` rule), :mod:`~stages.select.instances` (the kept masks as objects),
:mod:`~stages.select.image` (one record's artifacts read and its strategy run); their public names are
exported here.

Inputs are the arrays of the ``masks``, ``prompts`` and ``components`` artifacts (FORMATS.md):
``masks`` bool (S, M, H, W), M hypotheses per prompt set (an array, or a
:class:`~stages.io.masks.MaskStack` that reads a set at a time: :func:`select_image` never holds a
large photo's whole stack); ``iou`` float32 (S, M), SAM's predicted
IoU; ``set_class`` / ``set_component`` int32 (S,); the weak label uint8 (H, W) (255 = unlabelled)
and its ``component_map`` int32 (H, W) (0 = none, k = component k). Strategies:

- ``sesam`` (:func:`select_sesam`): per prompt set, reject hypotheses that cover other classes'
  labelled pixels beyond a tolerance; the rest within ``tie_margin`` of the best coverage of the
  set's own component are candidates (for a boxes source: hypotheses mostly inside the box that
  cover a good part of it; they vote only inside their box). Candidates are settled jointly over
  all sets, so that the chosen masks of different classes overlap least and cover most (a click is
  covered by every hypothesis alike: this is what decides for clicks).
- ``jiang`` (:func:`select_fixed`): Jiang & Yang 2023, one fixed hypothesis index per set (theirs: 3).
- ``cam-merge`` (:func:`select_cam_merge`): Chen et al. 2023, automatic-mode masks given to the
  (foreground) class of a CAM pseudo-label map they lie in (over half of the mask) or cover (at
  least 85% of the class region); CAM pixels no mask claims keep their label.
- ``sesam`` with a dense reference (:func:`select_sesam_reference`, ``select --reference``): the
  components are those of a CAM pseudo-label (prompted at its CAM peaks) or a prediction; the
  reference guides the choice but does not overrule SAM.

All strategies merge the kept masks by score-weighted votes (:class:`VoteParams`, :func:`merge_votes`):
a pixel takes the class with the most votes when its share of all votes exceeds ``min_vote_share``;
labelled weak pixels keep their class (confidence 1); pixels with conflicting votes or none follow
the ``unclaimed`` rule (:func:`fill_unclaimed`: 255, background, or the nearest decided class).
"""

from .image import STRATEGIES, SelectParams, background_class, select_image
from .instances import instances
from .merge import (CAM_ONLY_CONFIDENCE, DEFAULT_UNCLAIMED, MERGE_BAND_PIXELS, UNCLAIMED, Selection, VoteParams,
                    box_window, boxes_weak_label, fill_in_boxes, fill_unclaimed, keep_reference, kept_classes,
                    merge_kept, merge_votes, overlay_weak, set_boxes)
from .rules import (CAM_MIN_COVER, CAM_MIN_INSIDE, JIANG_HYPOTHESIS, SesamParams, choose_sesam, select_cam_merge,
                    select_fixed, select_sesam, select_sesam_reference, settle_ties)

__all__ = [
    "CAM_MIN_COVER", "CAM_MIN_INSIDE", "CAM_ONLY_CONFIDENCE", "DEFAULT_UNCLAIMED", "JIANG_HYPOTHESIS",
    "MERGE_BAND_PIXELS", "STRATEGIES", "UNCLAIMED", "SelectParams", "Selection", "SesamParams", "VoteParams",
    "background_class", "box_window", "boxes_weak_label", "choose_sesam", "fill_in_boxes", "fill_unclaimed",
    "instances", "keep_reference", "kept_classes", "merge_kept", "merge_votes", "overlay_weak", "select_cam_merge",
    "select_fixed", "select_image", "select_sesam", "select_sesam_reference", "set_boxes", "settle_ties",
]
