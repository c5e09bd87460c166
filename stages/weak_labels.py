"""One image's simulated weak label (or its tags) from its ground truth, as ``sesam simulate`` makes it.

:class:`WeakLabelSimulator` reads a record's ground truth (``gt``, and ``gt_instances`` for one
annotation per object), simulates the weak label of its kind with :mod:`stages.simulate` (or the
image-level tags with :mod:`stages.tags`) and writes it with its provenance: a palette PNG for
points, scribbles and coarse (255 = unlabelled), a boxes JSON for boxes, a tags JSON for tags.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from . import IGNORE_INDEX
from .errors import SesamInputError
from .io.artifacts import provenance
from .io.boxes import Boxes, write_boxes
from .io.images import image_size, read_instances, read_label, write_label
from .io.tags import write_tags
from .presets import ClassPreset
from .per_image import PerImageStage
from .records import Record, index_images, require
from .simulate import DEFAULT_MIN_AREA, KINDS, image_rng, label_regions, labelled_fraction, simulate_weak
from .tags import DEFAULT_MIN_AREA as TAGS_MIN_AREA, tags_from_label

log = logging.getLogger("sesam")

TAGS = "tags"
"""Image-level labels (stages.tags): a JSON file per image, not a label map."""
ALL_KINDS = KINDS + (TAGS,)
KIND_OPTIONS = {
    "points": ("points_per_region", "radius", "click_depth"),
    "scribbles": ("thickness", "max_strokes", "scribble_style"),
    "coarse": ("margin",),
    "boxes": ("box_jitter",),
    TAGS: (),
}
"""The options of ``simulate_weak`` that each kind takes."""


def artifact_of(kind: str) -> tuple[str, str]:
    """(record key, file suffix) of the artifact of ``kind``."""
    return (TAGS if kind == TAGS else "weak"), (".json" if kind in ("boxes", TAGS) else ".png")


@dataclass
class WeakLabelSimulator:
    """Simulates and writes one image's weak label of ``kind`` (one of ALL_KINDS).

    ``options``: the kind's own options of ``simulate_weak`` (KIND_OPTIONS; others are left out);
    ``min_area``: regions (for tags: classes) smaller than this are left out, pixels or below 1 a
    fraction of the image (None: the kind's default); ``instances_dir``: where the instance maps
    come from, when records must have one. Results depend only on ``seed`` and the image id.
    ``fractions`` and ``tag_counts`` collect, per image made, the labelled fraction or the number of tags.
    """

    kind: str
    preset: ClassPreset
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    min_area: float | None = None
    map_colours: bool = False
    reduce_zero_label: bool = False
    instances_dir: str | None = None
    fractions: list[float] = field(default_factory=list)
    tag_counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.options = {name: value for name, value in self.options.items() if name in KIND_OPTIONS[self.kind]}
        if self.min_area is None:
            self.min_area = DEFAULT_MIN_AREA.get(self.kind, TAGS_MIN_AREA)

    def settings(self) -> dict[str, Any]:
        """The parameters that decide the artifacts (their provenance)."""
        return {"kind": self.kind, "seed": self.seed, "classes": self.preset.name, "map_colours": self.map_colours,
                "reduce_zero_label": self.reduce_zero_label, "min_area": self.min_area,
                "instances": self.instances_dir is not None, **self.options}

    def simulate(self, record: Record, out_path: str) -> None:
        """Write the weak label (or tags) of ``record`` to ``out_path``."""
        require(record, "gt", hint="give ground-truth PNGs as arguments, or start the chain with "
                                   "`sesam records --images DIR --key gt=DIR`")
        if self.instances_dir is not None and not record.get("gt_instances"):
            raise SesamInputError(record["gt"], f"no instance map named '{record['id']}.*' under {self.instances_dir}")
        expected = image_size(record["image"]) if record.get("image") else None
        gt = read_label(record["gt"], self.preset, self.map_colours, expected, self.reduce_zero_label)
        instances = read_instances(record["gt_instances"], gt.shape) if record.get("gt_instances") else None
        if (gt == IGNORE_INDEX).all():
            log.warning("%s: the ground truth labels no pixel; the weak label is empty", record["gt"])
        meta = provenance("simulate", self.settings(), record)
        if self.kind == TAGS:
            tags = tags_from_label(gt, self.preset, self.min_area)
            write_tags(out_path, tags, self.preset, meta)
            self.tag_counts.append(len(tags))
            return
        regions = label_regions(gt, instances, self.min_area)
        weak = simulate_weak(self.kind, regions, image_rng(self.seed, record["id"]), self.preset, **self.options)
        fraction = labelled_fraction(weak)
        meta["labelled_fraction"] = fraction
        if isinstance(weak, Boxes):
            write_boxes(out_path, weak, meta)
        else:
            write_label(out_path, weak, self.preset, meta)
        self.fractions.append(fraction)
        log.debug("%s: %d regions, %.3g%% of the pixels labelled", record["id"], len(regions), 100 * fraction)

    def with_instance_maps(self, records: Iterable[Record], strip_suffixes: Iterable[str] = ()) -> Iterator[Record]:
        """``records``, each given 'gt_instances': the instance map under ``instances_dir`` with its id, where
        there is one (``simulate`` names a record left without)."""
        maps = index_images(self.instances_dir, strip_suffixes) if self.instances_dir is not None else {}
        for record in records:
            if record["id"] in maps:
                record["gt_instances"] = maps[record["id"]]
            yield record

    def run(self, stage: PerImageStage, records: Iterable[Record]) -> None:
        """Simulate every record's weak label in ``stage``; log the ``summary``, also when the stage fails."""
        try:
            stage.run(records, self.simulate)
        finally:
            summary = self.summary()
            if summary:
                log.info("simulate: %s", summary)

    def summary(self) -> str | None:
        """A line on what was made: the average number of tags or labelled fraction; None if nothing."""
        if self.tag_counts:
            return (f"tags: {sum(self.tag_counts) / len(self.tag_counts):.3g} classes per image on average "
                    f"over {len(self.tag_counts)} image(s)")
        if self.fractions:
            what = "inside a box" if self.kind == "boxes" else "labelled"
            return (f"{self.kind}: {100 * sum(self.fractions) / len(self.fractions):.3g}% of the pixels {what} "
                    f"on average over {len(self.fractions)} image(s)")
        return None
