"""HDF5 artifacts with provenance, and whether an artifact on disk is up to date.

HDF5 artifacts are written atomically (:mod:`stages.io.atomic`) and carry provenance as root
attributes (``sesam_version``, ``stage``, ``params`` JSON, ``record`` JSON, ``inputs`` JSON,
optional ``model`` JSON) and a final ``complete`` flag; a file that lacks them, or does not open,
is treated as absent and redone. PNG and JSON artifacts carry the same provenance in a text chunk
(:mod:`stages.io.images`) or under a ``sesam`` key (:mod:`stages.io.atomic`).

``inputs`` is the identity of every input file the record names (:func:`input_identities`): its
content digest (sha256) for files up to ``DIGESTED_UP_TO`` bytes, and its size and modification
time for larger ones. An artifact is up to date only while those identities still hold.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from stat import S_ISREG
from typing import Any, Iterable, Iterator, Mapping

import h5py
import numpy as np

from .. import __version__
from ..errors import SesamInputError
from .atomic import atomic_path, read_json_provenance
from .images import read_png_provenance

COMPLETE_ATTR = "complete"

DIGESTED_UP_TO = 64 << 20
"""Input files up to this size (label maps, photos, HDF5 artifacts) are identified by their sha256;
larger ones (checkpoints, huge photos) by size and modification time, so a check stays cheap."""


@functools.lru_cache(maxsize=4096)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """sha256 of a file's content, remembered per (path, size, mtime, inode) for this process."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_identity(path: str) -> dict[str, Any] | None:
    """What identifies the content of the file at ``path``: ``{"size", "sha256"}`` for files up to
    ``DIGESTED_UP_TO`` bytes, else ``{"path", "size", "mtime_ns"}``; None if it is no file."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    if not S_ISREG(stat.st_mode):
        return None
    if stat.st_size <= DIGESTED_UP_TO:
        return {"size": stat.st_size, "sha256": _sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns,
                                                           stat.st_ino)}
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def input_identities(record: Mapping[str, Any], exclude: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """The identity (:func:`file_identity`) of every file a record names, by key; ``id`` and the keys in
    ``exclude`` left out. Values that name no file (directories, numbers, missing paths) are skipped."""
    skipped = {"id", *exclude}
    found = {}
    for key, value in record.items():
        if key not in skipped and isinstance(value, str):
            identity = file_identity(value)
            if identity is not None:
                found[key] = identity
    return found


def provenance(stage: str, params: Mapping[str, Any], record: Mapping[str, Any] | None = None,
               model: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Root attributes that say what made an artifact: version, stage, parameters, input record and
    the identity of its files, model."""
    attrs = {
        "sesam_version": __version__,
        "stage": stage,
        "params": json.dumps(dict(params), sort_keys=True, default=str),
    }
    if record is not None:
        attrs["record"] = json.dumps(dict(record), sort_keys=True, default=str)
        attrs["inputs"] = json.dumps(input_identities(record), sort_keys=True)
    if model is not None:
        attrs["model"] = json.dumps(dict(model), sort_keys=True, default=str)
    return attrs


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """One chunk per 2-D plane (capped at 1024x1024) for arrays of two or more dimensions."""
    if len(shape) < 2 or 0 in shape:
        return None
    lead = (1,) * (len(shape) - 2)
    return lead + (min(shape[-2], 1024), min(shape[-1], 1024))


def create_dataset(h5: h5py.Group, name: str, data: np.ndarray | None = None,
                   shape: tuple[int, ...] | None = None, dtype: Any = None) -> h5py.Dataset:
    """A dataset ``name`` in ``h5`` holding ``data``, or empty with ``shape`` and ``dtype`` to be filled
    piece by piece (a mask stack written per prompt set). Arrays of two or more dimensions are
    chunked per plane and gzip-compressed, so one plane reads back alone; booleans stay boolean."""
    if data is not None:
        data = np.asarray(data)
        shape, dtype = data.shape, data.dtype
    chunks = _chunks(tuple(shape))
    if chunks is None:
        return h5.create_dataset(name, shape=shape, dtype=dtype, data=data)
    return h5.create_dataset(name, shape=shape, dtype=dtype, data=data, chunks=chunks, compression="gzip",
                             compression_opts=4, shuffle=True)


@contextlib.contextmanager
def writing_h5(path: str | os.PathLike, attrs: Mapping[str, Any]) -> Iterator[h5py.File]:
    """An HDF5 file open for writing at a temporary beside ``path``; when the block succeeds it gets
    the root ``attrs`` and the ``complete`` flag and is renamed to ``path`` (nothing appears if it fails)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            yield h5
            for key, value in attrs.items():
                h5.attrs[key] = value
            h5.attrs[COMPLETE_ATTR] = True


def write_h5(path: str | os.PathLike, datasets: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """Atomically write ``datasets`` (name -> array; '/' makes groups) and root ``attrs`` to ``path``
    (:func:`create_dataset` says how arrays are stored)."""
    with writing_h5(path, attrs) as h5:
        for name, value in datasets.items():
            create_dataset(h5, name, value)


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
        return read_png_provenance(path)
    if path.endswith(".json"):
        return read_json_provenance(path)
    return {"params": None}


def is_current(path: str | os.PathLike, stage: str, params: Mapping[str, Any],
               record: Mapping[str, Any], exclude: Iterable[str] = ()) -> bool:
    """True if ``path`` is a finished artifact of ``stage`` made with the same ``params`` from the
    same input files as ``record`` names now: the same keys naming files, each with the identity
    (:func:`file_identity`) it had when the artifact was made. ``exclude``: record keys that are not
    inputs (the stage's own outputs, when a stream is fed back). Artifacts of sesam versions that
    stored no input identities are not current (they are redone once)."""
    stored = stored_provenance(path)
    if not stored or stored.get("stage") != stage:
        return False
    if stored.get("params") != json.dumps(dict(params), sort_keys=True, default=str):
        return False
    try:
        made_from = json.loads(stored["inputs"])
    except (KeyError, TypeError, ValueError):
        return False
    exclude = set(exclude)
    made_from = {key: identity for key, identity in made_from.items() if key not in exclude}
    return made_from == input_identities(record, exclude)
