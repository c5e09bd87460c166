"""The ``masks`` artifact (stage ``sam-predict``): SAM's mask hypotheses for one image's prompt sets.

One HDF5 per image (docs/FORMATS.md), written by ``sesam sam-predict`` and read by ``select``:
``masks`` bool (S, M, H, W), M hypotheses for each of S prompt sets (0 = SAM's single-mask output,
1-3 its multimask outputs from small to large), chunked per (1, 1, <=1024, <=1024) plane tile so
that one set reads back alone; ``iou_predictions`` float32 (S, M); ``set_component`` and
``set_class`` int32 (S,) copied from the prompts; more datasets (``stability_scores``,
``low_res_logits``, automatic masks' ``boxes``) where the maker has them.

A photo's mask stack can be far larger than memory (100 sets of a 6000x4000 photo: 9.6 GB), so
it is written set by set (:class:`MasksWriter`) and read set by set (:func:`open_masks`,
:class:`MaskStack`); :func:`read_masks` reads it whole, for small images.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import OrderedDict
from typing import Any, Iterable, Iterator, Mapping

import h5py
import numpy as np

from ..errors import SesamInputError
from .artifacts import create_dataset, open_h5, read_h5, write_h5, writing_h5

STAGE = "sam-predict"
SET_CACHE_BYTES = 128 << 20
"""How many bytes of recently read prompt sets a :class:`MaskStack` keeps (at least one set): all
the sets of a CamVid or VOC photo (0.7 MB each), one of a 6000x4000 photo (96 MB)."""
DATASETS = ("masks", "iou_predictions", "set_component", "set_class")
"""The datasets selection needs."""


def write_masks(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """Atomically write SAM's outputs ``arrays`` (name -> array, see the module) as a ``masks`` HDF5
    artifact with root ``attrs`` (provenance, ``mode``, ``multimask``)."""
    write_h5(path, arrays, attrs)


class MasksWriter:
    """A ``masks`` artifact filled set by set (``write``); made by :func:`writing_masks`."""

    def __init__(self, h5: h5py.File, count: int, hypotheses: int, size: tuple[int, int]):
        self.masks = create_dataset(h5, "masks", shape=(count, hypotheses, *size), dtype=bool)

    def write(self, sets: np.ndarray, masks: np.ndarray) -> None:
        """Store ``masks`` bool (len(sets), M, H, W) as the prompt sets ``sets`` (int indices, any order)."""
        for index, set_masks in zip(np.asarray(sets).tolist(), masks):
            self.masks[index] = set_masks


@contextlib.contextmanager
def writing_masks(path: str | os.PathLike, count: int, hypotheses: int, size: tuple[int, int],
                  attrs: Mapping[str, Any]) -> Iterator[tuple[MasksWriter, dict[str, np.ndarray]]]:
    """Write a ``masks`` artifact of ``count`` prompt sets of ``hypotheses`` masks of ``size`` (H, W)
    without holding its mask stack: yields a :class:`MasksWriter` for the masks and a dict for the
    other (small) datasets; when the block succeeds they are stored with root ``attrs`` and the
    file is renamed to ``path`` (atomically, as every artifact)."""
    with writing_h5(path, attrs) as h5:
        others: dict[str, np.ndarray] = {}
        yield MasksWriter(h5, count, hypotheses, size), others
        for name, value in others.items():
            create_dataset(h5, name, value)


class MaskStack:
    """The ``masks`` dataset of a ``masks`` artifact, bool (S, M, H, W), read a prompt set at a time.

    Indexing reads from the file on demand: ``stack[s]`` (M, H, W), ``stack[s, m]`` (H, W), or any
    other h5py selection such as ``stack[s, :, y0:y1, x0:x1]``. The sets read last are kept, up to
    ``SET_CACHE_BYTES`` (at least one set), so the hypotheses of one set cost one read and a small
    photo's stack is read once. ``stack.flat[s]`` / ``stack.flat[s, m]`` are the same with the pixels
    raveled ((M, H*W) / (H*W,)).
    """

    ndim = 4
    dtype = np.dtype(bool)

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int, int]):
        self.path = os.fspath(path)
        self.shape = shape
        self._cached: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_sets = max(1, SET_CACHE_BYTES // max(1, shape[1] * shape[2] * shape[3]))

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, key: Any) -> np.ndarray:
        with h5py.File(self.path, "r") as h5:
            return h5["masks"][key]

    def set(self, index: int) -> np.ndarray:
        """Prompt set ``index``: bool (M, H, W)."""
        index = int(index)
        if index in self._cached:
            self._cached.move_to_end(index)
            return self._cached[index]
        while len(self._cached) >= self._cache_sets:  # make room before the read
            self._cached.popitem(last=False)
        planes = self._cached[index] = self._read(index)
        return planes

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.set(key)
        if (isinstance(key, tuple) and len(key) == 2
                and all(isinstance(part, (int, np.integer)) for part in key)):
            return self.set(key[0])[int(key[1])]
        return self._read(key)

    @property
    def flat(self) -> "FlatMasks":
        """The stack with each mask's pixels raveled: (S, M, H*W)."""
        return FlatMasks(self)


class ChosenMasks:
    """One hypothesis per prompt set of a stack, seen as (S, H, W): ``chosen[s]`` is
    ``stack[s, hypotheses[s]]``, read on demand (a :class:`MaskStack` reads a set at a time)."""

    def __init__(self, stack: "MaskStack | np.ndarray", hypotheses: np.ndarray):
        self.stack = stack
        self.hypotheses = np.asarray(hypotheses)

    def __len__(self) -> int:
        return len(self.hypotheses)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.stack[int(index), int(self.hypotheses[index])]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[index] for index in range(len(self)))


class FlatMasks:
    """A :class:`MaskStack` (or an in-memory (S, M, H, W) array) seen as (S, M, H*W): ``flat[s]``
    (M, H*W), ``flat[s, m]`` (H*W,), ``shape``."""

    def __init__(self, stack: "MaskStack | np.ndarray"):
        self.stack = stack
        count, hypotheses, height, width = stack.shape
        self.shape = (count, hypotheses, height * width)

    def __getitem__(self, key: Any) -> np.ndarray:
        index, hypothesis = key if isinstance(key, tuple) else (key, None)
        planes = self.stack[int(index)]
        if hypothesis is None:
            return planes.reshape(planes.shape[0], -1)
        return planes[int(hypothesis)].ravel()


def flat_view(masks: "MaskStack | np.ndarray") -> "FlatMasks | np.ndarray":
    """(S, M, H, W) masks as (S, M, H*W): a view of an array, a per-set reader of a :class:`MaskStack`."""
    if isinstance(masks, np.ndarray):
        return masks.reshape(masks.shape[0], masks.shape[1], -1)
    return masks.flat


def _check(path: str | os.PathLike, datasets: Mapping[str, Any]) -> None:
    missing = [name for name in DATASETS if name not in datasets]
    if missing:
        raise SesamInputError(path, f"lacks dataset(s) {', '.join(missing)}; rerun 'sesam sam-predict'")
    shape = datasets["masks"].shape
    if (len(shape) != 4 or datasets["iou_predictions"].shape != shape[:2]
            or datasets["set_class"].shape != shape[:1] or datasets["set_component"].shape != shape[:1]):
        raise SesamInputError(path, "inconsistent dataset shapes; rerun 'sesam sam-predict'")


def read_masks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The datasets of a ``masks`` artifact (stage sam-predict) that selection needs: ``masks`` bool
    (S, M, H, W), ``iou_predictions`` (S, M), ``set_component``, ``set_class`` (S,), and any others
    it holds, all in memory. A file that is not one raises SesamInputError naming it."""
    datasets, _attrs = read_h5(path, STAGE)
    _check(path, datasets)
    return datasets


def open_masks(path: str | os.PathLike) -> dict[str, Any]:
    """As :func:`read_masks`, but ``masks`` is a :class:`MaskStack` that reads a prompt set at a time
    (the other datasets are small and read into memory)."""
    with open_h5(path, STAGE) as h5:
        datasets: dict[str, Any] = {name: h5[name][()] for name in h5 if isinstance(h5[name], h5py.Dataset)
                                    and name != "masks"}
        if "masks" in h5:
            datasets["masks"] = h5["masks"]
            _check(path, datasets)
            datasets["masks"] = MaskStack(path, tuple(h5["masks"].shape))
        else:
            _check(path, datasets)
    return datasets


def with_stored_record_keys(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Records get the keys they lack from the record stored in their masks file's provenance (so
    masks files alone are enough input to ``select``); an unreadable file is left to be reported
    when it is read."""
    for record in records:
        stored: dict[str, Any] = {}
        if record.get("masks") and os.path.isfile(record["masks"]):
            try:
                with open_h5(record["masks"], STAGE) as h5:
                    stored = json.loads(h5.attrs.get("record", "{}"))
            except SesamInputError:
                stored = {}
        yield {**record, **{key: value for key, value in stored.items() if key not in record}}
