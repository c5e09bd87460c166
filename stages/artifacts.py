"""Per-image artifacts on disk: atomic writes, HDF5 with provenance, up-to-date checks.

Every artifact is written to a temporary file in its final directory and renamed into place, so a
crash never leaves a half-written file under the final name. The temporary is named
``.NAME.PID@HOST.XXXXXXXX.tmp`` after its writer, so that a later run can tell the leftovers of a
killed process (:func:`remove_stale_temporaries`) from a file another live process is writing.
HDF5 artifacts carry provenance as root attributes (``sesam_version``, ``stage``, ``params`` JSON,
``record`` JSON, ``inputs`` JSON, optional ``model`` JSON) and a final ``complete`` flag; a file
that lacks them, or does not open, is treated as absent and redone.

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
import re
import socket
import tempfile
import time
from stat import S_ISREG
from typing import Any, Iterable, Iterator, Mapping

import h5py
import numpy as np

from . import __version__
from .errors import SesamInputError

COMPLETE_ATTR = "complete"
_UMASK = os.umask(0)
os.umask(_UMASK)

DIGESTED_UP_TO = 64 << 20
"""Input files up to this size (label maps, photos, HDF5 artifacts) are identified by their sha256;
larger ones (checkpoints, huge photos) by size and modification time, so a check stays cheap."""
STALE_AFTER_S = 3600
"""A temporary whose writer cannot be checked (another host, or no writer in its name) counts as
left behind once it has not been modified for this long."""
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0])[:32] or "host"
_TEMPORARY = re.compile(r"^\.(?P<target>.+?)\.(?:(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]+)\.)?[A-Za-z0-9_]+\.tmp$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary, ``.NAME.PID@HOST.XXXXXXXX.tmp``, names its writer (see :func:`remove_stale_temporaries`).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}@{_HOST}.", suffix=".tmp", dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _writer_is_gone(match: re.Match, modified: float, now: float) -> bool:
    """Whether the process that named a temporary is certainly not writing it any more."""
    if match["pid"] is not None and match["host"] == _HOST:
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, under another user
            return False
        return False
    return now - modified > STALE_AFTER_S


def remove_stale_temporaries(directory: str | os.PathLike, suffixes: Iterable[str] = ("",)) -> list[str]:
    """Remove the temporaries that :func:`atomic_path` left in ``directory`` (a killed writer) for
    targets ending in one of ``suffixes``; returns the paths removed.

    A temporary is left behind when its writer (the PID in its name) no longer runs on this host; one
    from another host, or from a sesam that did not name its writer, when it has not been modified for
    ``STALE_AFTER_S``. A temporary that a live process is writing is never touched, so shards that
    share an output directory can each clean it when they start.
    """
    directory = os.fspath(directory)
    suffixes = tuple(suffixes)
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or not match["target"].endswith(suffixes) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if _writer_is_gone(match, entry.stat(follow_symlinks=False).st_mtime, now):
                os.unlink(entry.path)
                removed.append(entry.path)
        except FileNotFoundError:  # finished or removed by another process meanwhile
            continue
    return removed


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
