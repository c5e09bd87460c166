"""Class activation maps (CAM) as arrays: the ``cam_scores`` artifact, the CAM pseudo-label, CAM peaks.

``sesam cam predict`` computes, per image, the CAM of every class the image contains (its tags, or
the classes the classifier finds) with the classifier of ``stages.train.classifier``; this module
holds what follows on numpy arrays, and imports no torch:

- :class:`ClassActivationMaps`: ``cams`` float32 (C, H, W) in [0, 1] at image size, each plane
  divided by its maximum (so every present class peaks at 1); ``cam_class`` int64 (C,) the preset
  class of each plane; ``class_scores`` float32 (K,) the classifier's probability of every preset
  class (NaN for a background class, which the classifier has no output for). Stored as the
  ``cam_scores`` HDF5 artifact (stage ``cam``; ``cams`` as float16) by :mod:`stages.io.cams`.
- :func:`cam_label`: the CAM pseudo-label, uint8 (H, W): per pixel the present class with the
  highest CAM; where that CAM is below ``bg_threshold``, the background class (presets with one) or
  255 (presets without).
- :func:`cam_peaks` and :func:`cam_peak_prompts`: WeakSAM's point prompts, the local maxima of each
  present class's CAM, as ``PromptSets`` (the ``prompts`` artifact of ``sample-prompts``).

Points are (x, y) pixels of the image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import IGNORE_INDEX
from .io.cams import ClassActivationMaps
from .io.components import Components
from .io.prompts import PromptSets

DEFAULT_BG_THRESHOLD = 0.15
"""CAM below which a pixel is background (or 255). On CamVid train every value up to 0.2 scored the same
(benchmarks/bench_cam.py --tune); 0.15 is also IRN's threshold on VOC, where it decides background."""
PEAKS_STRATEGY = "cam-peaks"
DEFAULT_PEAK_WINDOW = 17
"""WeakSAM's peak kernel: a peak is the maximum of its 17 x 17 px neighbourhood."""
DEFAULT_PEAK_THRESHOLD = 0.9
"""WeakSAM's threshold (``--t 90``): only peaks of at least 0.9 of the class's maximum CAM."""
DEFAULT_MAX_PEAKS = 25
"""WeakSAM's cap: at most 25 peaks per class."""
PEAK_GROUPS = ("point", "component")


def normalise_cams(cams: np.ndarray) -> np.ndarray:
    """Each plane of (C, H, W) non-negative CAMs divided by its maximum (an all-zero plane stays 0); float32."""
    peak = cams.reshape(len(cams), -1).max(axis=1) if cams.size else np.zeros(len(cams))
    return (cams / np.maximum(peak, 1e-5)[:, None, None]).astype(np.float32)


def cam_label(maps: ClassActivationMaps, background_class: int | None, bg_threshold: float = DEFAULT_BG_THRESHOLD,
              ) -> np.ndarray:
    """The CAM pseudo-label uint8 (H, W): the class of the highest CAM where it reaches ``bg_threshold``,
    elsewhere ``background_class`` (None: 255)."""
    fill = IGNORE_INDEX if background_class is None else background_class
    label = np.full(maps.image_size, fill, np.uint8)
    if len(maps.cam_class):
        best = maps.cams.max(axis=0)
        winner = np.asarray(maps.cam_class, np.uint8)[maps.cams.argmax(axis=0)]
        confident = best >= bg_threshold
        label[confident] = winner[confident]
    return label


def cam_peaks(cam: np.ndarray, window: int = DEFAULT_PEAK_WINDOW, threshold: float = DEFAULT_PEAK_THRESHOLD,
              max_peaks: int = DEFAULT_MAX_PEAKS) -> np.ndarray:
    """WeakSAM's peaks of one CAM (H, W): pixels that are the maximum of their ``window`` x ``window``
    neighbourhood and at least ``threshold``, highest first, at most ``max_peaks``; a peak closer
    than window // 2 (city-block distance) to a higher one is dropped. Returns (n, 2) int64 (row, col)."""
    local_max = (cam == ndimage.maximum_filter(cam, size=window, mode="nearest")) & (cam >= threshold)
    rows, cols = np.nonzero(local_max)
    order = np.argsort(-cam[rows, cols], kind="stable")
    kept: list[tuple[int, int]] = []
    for row, col in zip(rows[order], cols[order]):
        if len(kept) == max_peaks:
            break
        if all(abs(row - r) + abs(col - c) >= window // 2 for r, c in kept):
            kept.append((int(row), int(col)))
    return np.array(kept, np.int64).reshape(-1, 2)


def cam_peak_prompts(maps: ClassActivationMaps, components: Components, window: int = DEFAULT_PEAK_WINDOW,
                     threshold: float = DEFAULT_PEAK_THRESHOLD, max_peaks: int = DEFAULT_MAX_PEAKS,
                     group: str = "component") -> PromptSets:
    """Prompt sets from the CAM peaks of each present class (:func:`cam_peaks`), as WeakSAM.

    ``components`` are those of the image's CAM pseudo-label (``sesam decompose --key cam``): a peak
    is kept when it lies in a component of its own class (elsewhere another class's CAM is higher,
    or the pixel is background), and its prompt set names that component. ``group``: ``component``
    (the default of ``sample-prompts``), the peaks in one component together (WeakSAM's class-aware
    prompts, kept within one connected region); ``point``, one prompt set per peak (WeakSAM's
    single-point prompts).
    """
    if group not in PEAK_GROUPS:
        raise ValueError(f"unknown group '{group}' (one of {', '.join(PEAK_GROUPS)})")
    if components.image_size != maps.image_size:
        raise ValueError(f"components of {components.image_size} and CAMs of {maps.image_size} differ in size")
    points: list[np.ndarray] = []
    owners: list[int] = []
    for cam, cls in zip(maps.cams, maps.cam_class):
        peaks = cam_peaks(cam, window, threshold, max_peaks)
        component = components.component_map[peaks[:, 0], peaks[:, 1]]
        own = (component > 0) & (components.component_class[np.maximum(component, 1) - 1] == cls)
        points.extend(peaks[own, ::-1].astype(np.float32))
        owners.extend(int(c) for c in component[own])
    owner = np.array(owners, np.int32)
    if group == "point":
        point_set = np.arange(len(owner), dtype=np.int32)
        set_component = owner
    else:
        set_component, point_set = np.unique(owner, return_inverse=True)
        set_component = set_component.astype(np.int32)
    order = np.argsort(point_set, kind="stable")
    set_class = components.component_class[set_component - 1].astype(np.int32) if len(set_component) else \
        np.zeros(0, np.int32)
    return PromptSets(
        points=np.array(points, np.float32).reshape(-1, 2)[order],
        point_labels=np.ones(len(owner), np.int8),
        point_set=point_set.astype(np.int32)[order],
        set_component=set_component,
        set_class=set_class,
        set_box=np.full((len(set_component), 4), np.nan, np.float32),
        image_size=maps.image_size,
        strategy=PEAKS_STRATEGY,
    )
