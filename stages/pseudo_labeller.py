"""One image at a time through ``stages.select.select_image``: its pseudo-label and confidence written,
its kept masks collected as COCO instances (the per-image work of ``sesam select``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .io.artifacts import provenance
from .io.coco import annotations, image_entry, write_coco
from .io.images import write_confidence, write_label
from .presets import ClassPreset
from .records import Record
from .select import SelectParams, background_class, instances, select_image

STAGE = "select"


@dataclass
class PseudoLabeller:
    """Select ``params``'s masks per record; with ``collect_instances``, also gather the kept masks of
    every image labelled as COCO ``images`` and ``annotations`` (RLE, box, class, score) for
    ``write_instances``."""

    preset: ClassPreset
    params: SelectParams = field(default_factory=SelectParams)
    collect_instances: bool = False
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        """The settings a pseudo-label depends on (and so whether it is up to date)."""
        return self.params.as_dict(self.preset)

    def label_into(self, record: Record, out: str, confidence_path: str | None = None) -> None:
        """Write the record's pseudo-label (uint8 (H, W) PNG, preset palette, 255 = no label) to ``out``
        and its confidence (uint8 PNG, 255 × confidence) to ``confidence_path`` if given, with provenance."""
        selection, masks = select_image(record, self.preset, self.params)
        meta = provenance(STAGE, self.settings(), record)
        if confidence_path:
            write_confidence(confidence_path, selection.confidence, meta)
        write_label(out, selection.label, self.preset, meta)
        if self.collect_instances:
            number = len(self.images) + 1
            self.images.append(image_entry(number, record["id"], record.get("image"), selection.label.shape))
            found = instances(masks["masks"], masks["iou_predictions"], selection, masks["set_component"],
                              background_class(self.preset))
            self.annotations.extend(annotations(found, number, len(self.annotations) + 1))

    def write_instances(self, path: str) -> None:
        """Write the collected instances as one COCO annotations file (see ``stages.io.coco``)."""
        write_coco(path, self.images, self.annotations, self.preset,
                   {"description": "sesam select instance pseudo-labels", "sesam": provenance(STAGE, self.settings())})
