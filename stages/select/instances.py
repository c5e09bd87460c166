"""The kept masks of a selection as objects (the COCO instances of ``select --instances``)."""

from __future__ import annotations

import numpy as np

from ..io.coco import Instance
from .merge import Selection, box_window


def instances(masks: np.ndarray, iou: np.ndarray, selection: Selection, set_component: np.ndarray,
              background_class: int | None = None) -> list[Instance]:
    """The kept masks as objects: the union of the kept hypotheses of the prompt sets of one
    component (``set_component`` >= 1), or each kept hypothesis on its own (automatic mode, -1),
    each inside its box for a boxes source (``selection.set_box``, as they voted). Hypotheses kept as
    ``background_class`` are left out."""
    keep = selection.hypothesis_class >= 0
    if background_class is not None:
        keep &= selection.hypothesis_class != background_class
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for s, m in zip(*np.nonzero(keep)):
        cls = int(selection.hypothesis_class[s, m])
        key = (int(set_component[s]), cls) if set_component[s] >= 1 else (-1 - len(groups), cls)
        groups.setdefault(key, []).append((int(s), int(m)))
    found = []
    for (_, cls), members in groups.items():
        mask = np.zeros(masks.shape[2:], bool)
        for s, m in members:
            window = np.s_[:, :] if selection.set_box is None else box_window(selection.set_box[s])
            mask[window] |= masks[s, m][window]
        found.append(Instance(mask, cls, float(np.mean([iou[s, m] for s, m in members]))))
    return found



