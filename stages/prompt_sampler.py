"""One image's prompts from its components, as ``sesam sample-prompts`` makes them.

:class:`PromptSampler` reads a record's components (and, for WeakSAM's ``cam-peaks``, its
``cam_scores``), samples the prompt sets with :func:`stages.prompts.sample_prompts` (or
:func:`stages.cam.cam_peak_prompts`) and writes the ``prompts`` artifact with its provenance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .cam import DEFAULT_MAX_PEAKS, DEFAULT_PEAK_THRESHOLD, DEFAULT_PEAK_WINDOW, PEAKS_STRATEGY, cam_peak_prompts
from .errors import SesamUsageError
from .io.artifacts import provenance
from .io.cams import read_cams
from .io.components import read_components
from .io.images import check_same_size
from .io.prompts import STAGE, write_prompts
from .prompts import DEFAULT_FRACTION, DEFAULT_SPACING, STRATEGIES, STRATEGY_OPTIONS, resolve_options, sample_prompts
from .records import Record, require
from .simulate import image_rng

log = logging.getLogger("sesam")

ALL_STRATEGIES = STRATEGIES + (PEAKS_STRATEGY,)


@dataclass
class PromptSampler:
    """Samples and writes one image's prompt sets by ``strategy`` (one of ALL_STRATEGIES).

    ``group``, ``max_points`` and ``negatives`` None take the strategy's defaults (for cam-peaks:
    one set per component, ``DEFAULT_MAX_PEAKS`` peaks per class; negatives do not apply to it).
    The fraction sample depends only on ``seed`` and the image id.
    """

    strategy: str = STRATEGIES[0]
    spacing: float = DEFAULT_SPACING
    max_points: int | None = None
    fraction: float = DEFAULT_FRACTION
    negatives: int | None = None
    group: str | None = None
    peak_window: int = DEFAULT_PEAK_WINDOW
    peak_threshold: float = DEFAULT_PEAK_THRESHOLD
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy == PEAKS_STRATEGY:
            if self.negatives:
                raise SesamUsageError("--negatives does not apply to --strategy cam-peaks", bad_value=False)
            self.group = self.group or "component"
            self.max_points = self.max_points or DEFAULT_MAX_PEAKS
        else:
            self.group, self.max_points, self.negatives = resolve_options(self.strategy, self.group, self.max_points,
                                                                          self.negatives)

    def settings(self) -> dict[str, Any]:
        """The parameters that decide the artifacts (their provenance)."""
        if self.strategy == PEAKS_STRATEGY:
            return {"strategy": PEAKS_STRATEGY, "group": self.group, "peak_window": self.peak_window,
                    "peak_threshold": self.peak_threshold, "max_points": self.max_points}
        chosen = {"spacing": self.spacing, "max_points": self.max_points, "fraction": self.fraction, "seed": self.seed}
        return {"strategy": self.strategy, "negatives": self.negatives, "group": self.group,
                **{name: chosen[name] for name in STRATEGY_OPTIONS[self.strategy]}}

    def sample(self, record: Record, out_path: str) -> None:
        """Write the prompts of ``record`` (its 'components', and 'cam_scores' for cam-peaks) to ``out_path``."""
        if self.strategy == PEAKS_STRATEGY:
            require(record, "components", "cam_scores")
        else:
            require(record, "components")
        components = read_components(record["components"])
        if self.strategy == PEAKS_STRATEGY:
            maps = read_cams(record["cam_scores"])
            check_same_size(record["components"], components.image_size, maps.image_size, "components",
                            f"the CAMs {record['cam_scores']}")
            prompts = cam_peak_prompts(maps, components, self.peak_window, self.peak_threshold, self.max_points,
                                       self.group)
        else:
            if components.count == 0:
                log.warning("%s: no components; writing no prompt sets", record["components"])
            prompts = sample_prompts(components, self.strategy, self.spacing, self.max_points, self.fraction,
                                     self.negatives, self.group, image_rng(self.seed, record["id"]))
        write_prompts(out_path, prompts, provenance(STAGE, self.settings(), record))
