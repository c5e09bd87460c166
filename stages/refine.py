"""SeSAM step 6: a network's prediction becomes dense prompts for SAM, and SAM's masks new pseudo-labels.

The prediction (uint8 (H, W) class map) plays the part of a dense weak label: pixels below
``min_confidence`` are dropped (255), the rest is decomposed into components (those smaller than
``min_area`` of the image get no prompt), each component is prompted along its skeleton, SAM
decodes every prompt set (all four hypotheses), and the ``sesam`` selection keeps the hypotheses that
agree with the prediction (coverage of the own component, no overlap with other classes). The kept
masks are merged by score-weighted votes; what SAM leaves undecided is ``unclaimed`` (255, or the
prediction's class). Finally the original weak label is laid on top: its labelled pixels keep
their class, so refinement never overrules an annotator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import IGNORE_INDEX
from .decompose import decompose
from .prompts import sample_prompts
from .sam import predict_prompt_sets
from .io.embeddings import Embedding
from .sam.base import SamBackend
from .select import SesamParams, VoteParams, merge_votes, overlay_weak, select_sesam

UNCLAIMED = ("ignore", "prediction")
PROMPT_GROUP, PROMPT_NEGATIVES = "component", 0
"""A prediction's components are prompted as one set each, without negatives: refinement keeps the
prompts it was measured with (docs/TRAINING.md); the per-point prompts that sample-prompts now uses
by default were chosen for weak labels, not for predictions."""


@dataclass(frozen=True)
class RefineParams:
    """How a prediction is turned into prompts and SAM's masks back into a label map.

    - ``min_confidence``: prediction pixels less confident than this are not part of any component;
    - ``min_area``: components smaller than this fraction of the image get no prompts;
    - ``spacing`` / ``max_points``: skeleton prompt spacing (px) and cap per component;
    - ``selection``: the ``sesam`` selection thresholds (stages.select.SesamParams);
    - ``votes``: how the kept masks are merged (stages.select.VoteParams);
    - ``unclaimed``: pixels no kept mask decides: ``ignore`` (255) or ``prediction`` (its class).
    """

    min_confidence: float = 0.0
    min_area: float = 0.001
    spacing: float = 50.0
    max_points: int | None = 5
    selection: SesamParams = field(default_factory=SesamParams)
    votes: VoteParams = field(default_factory=VoteParams)
    unclaimed: str = "ignore"

    def __post_init__(self) -> None:
        if self.unclaimed not in UNCLAIMED:
            raise ValueError(f"unclaimed must be one of {', '.join(UNCLAIMED)}, not '{self.unclaimed}'")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def confident_prediction(prediction: np.ndarray, confidence: np.ndarray, min_confidence: float) -> np.ndarray:
    """The prediction (H, W) uint8 with pixels of confidence (H, W) float below ``min_confidence`` set to 255."""
    return np.where(confidence >= min_confidence, prediction, IGNORE_INDEX).astype(np.uint8)


def refine_prediction(backend: SamBackend, embedding: Embedding, prediction: np.ndarray, confidence: np.ndarray,
                      weak: np.ndarray, params: RefineParams = RefineParams()) -> tuple[np.ndarray, np.ndarray]:
    """The refined pseudo-label (H, W) uint8 (255 = no label) and its confidence (H, W) float32 in [0, 1].

    ``embedding`` is the image's SAM embedding (see ``stages.sam.EmbeddingCache``); ``prediction``
    and ``confidence`` the network's arg-max and its probability; ``weak`` the original weak label
    (all 255 for a boxes source), whose labelled pixels keep their class.
    """
    reference = confident_prediction(prediction, confidence, params.min_confidence)
    min_pixels = max(1, int(round(params.min_area * reference.size)))
    components = decompose(reference, min_area=min_pixels)
    prompts = sample_prompts(components, "skeleton", spacing=params.spacing, max_points=params.max_points,
                             negatives=PROMPT_NEGATIVES, group=PROMPT_GROUP)
    masks = predict_prompt_sets(backend, embedding, prompts, multimask=True)
    selection = select_sesam(masks["masks"], masks["iou_predictions"], masks["set_class"], masks["set_component"],
                             reference, components.component_map, params.selection, votes=params.votes)
    # select_sesam lays its reference label over the merged masks; with the dense prediction as
    # reference that would hide SAM's decision, so merge the kept hypotheses again without it.
    label, vote_confidence = merge_votes(masks["masks"], selection.hypothesis_class, masks["iou_predictions"],
                                         params.votes)
    if params.unclaimed == "prediction":
        undecided = label == IGNORE_INDEX
        label = np.where(undecided, prediction, label).astype(np.uint8)
        vote_confidence = np.where(undecided, confidence, vote_confidence).astype(np.float32)
    return overlay_weak(label, vote_confidence, weak)
