"""Atomic writes: every file sesam makes appears under its final name complete or not at all.

A file is written to a temporary in its final directory and renamed into place, so a crash never
leaves a half-written file under the final name. The temporary is named
``.NAME.PID@HOST.XXXXXXXX.tmp`` after its writer, so that a later run can tell the leftovers of a
killed process (:func:`remove_stale_temporaries`) from a file another live process is writing. It
gets the mode a plain ``open`` would give (0o666 less the umask in force when it is written).
JSON artifacts carry their provenance under a ``sesam`` key (:func:`write_json`,
:func:`read_json_provenance`); :func:`sha256_of_file` names a file's content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from typing import Any, Iterable, Iterator, Mapping

PROVENANCE_KEY = "sesam"
"""The key of a JSON artifact's provenance."""
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
    os.chmod(tmp, 0o666 & ~current_umask())
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


def current_umask() -> int:
    """The process's umask now (read from /proc where it can be, else set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8, newlines as given) to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)


def write_json(path: str | os.PathLike, content: Any, meta: Mapping[str, Any] | None = None,
               indent: int | None = None, sort_keys: bool = False) -> None:
    """Atomically write ``content`` as JSON; ``meta`` (provenance), if given, is added to the
    ``content`` dict under ``sesam`` (see :func:`read_json_provenance`)."""
    if meta is not None:
        content = {**content, PROVENANCE_KEY: dict(meta)}
    write_text(path, json.dumps(content, indent=indent, sort_keys=sort_keys))


def read_json_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance a JSON artifact carries under its ``sesam`` key, or None without it."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError):
        return None
    stored = content.get(PROVENANCE_KEY) if isinstance(content, dict) else None
    return stored if isinstance(stored, dict) else None


def sha256_of_file(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
