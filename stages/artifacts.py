"""Per-image artifacts on disk: atomic writes, HDF5 with provenance, up-to-date checks.

Every artifact is written to a temporary file in its final directory and renamed into place, so a
crash never leaves a half-written file under the final name. HDF5 artifacts carry provenance as root
attributes (``sesam_version``, ``stage``, ``params`` JSON, ``record`` JSON, optional ``model``
JSON) and a final ``complete`` flag; a file that lacks them, or does not open, is treated as absent
and redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, Iterator, Mapping

import h5py
import numpy as np

from . import __version__
from .errors import SesamInputError

COMPLETE_ATTR = "complete"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def provenance(stage: str, params: Mapping[str, Any], record: Mapping[str, Any] | None = None,
               model: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Root attributes that say what made an artifact: version, stage, parameters, input, model."""
    attrs = {
        "sesam_version": __version__,
        "stage": stage,
        "params": json.dumps(dict(params), sort_keys=True, default=str),
    }
    if record is not None:
        attrs["record"] = json.dumps(dict(record), sort_keys=True, default=str)
    if model is not None:
        attrs["model"] = json.dumps(dict(model), sort_keys=True, default=str)
    return attrs


def _chunks(array: np.ndarray) -> tuple[int, ...] | None:
    """One chunk per 2-D plane (capped at 1024x1024) for arrays of two or more dimensions."""
    if array.ndim < 2 or array.size == 0:
        return None
    lead = (1,) * (array.ndim - 2)
    return lead + (min(array.shape[-2], 1024), min(array.shape[-1], 1024))


def write_h5(path: str | os.PathLike, datasets: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """Atomically write ``datasets`` (name -> array; '/' makes groups) and root ``attrs`` to ``path``.

    Arrays of two or more dimensions are chunked per plane and gzip-compressed; booleans stay boolean.
    """
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            for name, value in datasets.items():
                array = np.asarray(value)
                chunks = _chunks(array)
                if chunks is None:
                    h5.create_dataset(name, data=array)
                else:
                    h5.create_dataset(name, data=array, chunks=chunks, compression="gzip",
                                      compression_opts=4, shuffle=True)
            for key, value in attrs.items():
                h5.attrs[key] = value
            h5.attrs[COMPLETE_ATTR] = True


@contextlib.contextmanager
def open_h5(path: str | os.PathLike, stage: str | None = None) -> Iterator[h5py.File]:
    """Open a finished sesam HDF5 artifact read-only, or raise SesamInputError saying why not."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SesamInputError(path, "no such file")
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise SesamInputError(path, "not a readable HDF5 file (truncated or corrupt?); "
                                    "rerun the stage that made it") from None
    with h5:
        if not h5.attrs.get(COMPLETE_ATTR, False):
            raise SesamInputError(path, "an unfinished sesam artifact; rerun the stage that made it")
        if stage is not None and h5.attrs.get("stage") != stage:
            raise SesamInputError(path, f"made by stage '{h5.attrs.get('stage')}', expected '{stage}'")
        yield h5


def read_h5(path: str | os.PathLike, stage: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read every dataset and root attribute of a sesam HDF5 artifact into memory."""
    with open_h5(path, stage) as h5:
        datasets: dict[str, np.ndarray] = {}
        h5.visititems(lambda name, obj: datasets.__setitem__(name, obj[()])
                      if isinstance(obj, h5py.Dataset) else None)
        attrs = {key: h5.attrs[key] for key in h5.attrs}
    return datasets, attrs


def _input_paths(record: Mapping[str, Any]) -> list[str]:
    return [v for k, v in record.items() if k != "id" and isinstance(v, str) and os.path.isfile(v)]


def stored_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance of an existing artifact (HDF5 root attrs or PNG text), or None if unreadable."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    if path.endswith((".h5", ".hdf5")):
        try:
            with open_h5(path) as h5:
                return {key: h5.attrs[key] for key in h5.attrs}
        except SesamInputError:
            return None
    if path.endswith(".png"):
        from .labels import read_png_provenance
        return read_png_provenance(path)
    if path.endswith(".json"):
        return read_json_provenance(path)
    return {"params": None}


def read_json_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance a JSON artifact carries under its ``sesam`` key, or None without it."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError):
        return None
    stored = content.get("sesam") if isinstance(content, dict) else None
    return stored if isinstance(stored, dict) else None


def is_current(path: str | os.PathLike, stage: str, params: Mapping[str, Any],
               record: Mapping[str, Any]) -> bool:
    """True if ``path`` is a finished artifact of ``stage`` with the same ``params``, newer than
    every input file named in ``record``: the per-image equivalent of a Make rule being up to date."""
    stored = stored_provenance(path)
    if not stored or stored.get("stage") != stage:
        return False
    if stored.get("params") != json.dumps(dict(params), sort_keys=True, default=str):
        return False
    mtime = os.path.getmtime(path)
    return all(os.path.getmtime(p) <= mtime for p in _input_paths(record))
