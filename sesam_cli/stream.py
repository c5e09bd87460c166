"""The record stream between commands, and the per-image loop every stage command runs.

A record is one JSON object per line naming an image and the artifacts made for it so far, e.g.
``{"id": "2007_000032", "image": "data/JPEGImages/2007_000032.jpg", "weak": "work/weak/2007_000032.png"}``.
Records come from stdin, or are built from label files / directories given as arguments (paired
with photos in ``--images DIR`` by file stem). Records go to stdout, everything else to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import unicodedata
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import click
from tqdm import tqdm

from stages.io.artifacts import is_current
from stages.io.atomic import remove_stale_temporaries
from stages.errors import SesamInputError
from stages.io.images import IMAGE_SUFFIXES
from stages.records import Record

log = logging.getLogger("sesam")

MAX_ID_BYTES = 180
"""Longest id (UTF-8 bytes): an artifact's suffix and temporary name add up to 60 bytes, and 255 is the limit."""


def id_problem(record_id: str) -> str | None:
    """Why ``record_id`` cannot name an artifact file, or None if it can.

    Ids become file names (``-o DIR/{id}.h5``), so an id must stay inside its directory and be an
    ordinary, visible file name: not empty, no '/' or '\\', not '.' or '..' or any other name
    starting with '.' (a hidden file, which directory inputs skip), no NUL or other control
    character, at most ``MAX_ID_BYTES`` bytes.
    """
    if not record_id:
        return "the id is empty"
    if "/" in record_id or "\\" in record_id:
        return f"id {record_id!r} contains a path separator"
    if record_id.startswith("."):
        return f"id {record_id!r} starts with '.' (a hidden file name, or a step out of the directory)"
    if any(unicodedata.category(char) == "Cc" for char in record_id):
        return f"id {record_id!r} contains a control character"
    if len(record_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return f"id {record_id[:20]!r}... is longer than {MAX_ID_BYTES} bytes"
    return None


def checked_id(record_id: str, source: str | None) -> str:
    """``record_id`` if it can name a file, else SesamInputError naming ``source`` and the problem."""
    problem = id_problem(record_id)
    if problem:
        raise SesamInputError(source, f"{problem}; an id must be a plain file name")
    return record_id


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based, as SLURM array task ids): owns ids whose CRC32 % count == index."""

    index: int
    count: int

    def owns(self, record_id: str) -> bool:
        return zlib.crc32(record_id.encode("utf-8")) % self.count == self.index


@dataclass(frozen=True)
class IdList:
    """The ids listed in a file, one per line (e.g. VOC's ImageSets/Segmentation/train.txt)."""

    path: str
    ids: frozenset[str]

    @classmethod
    def read(cls, path: str) -> "IdList":
        """Read ``path``: one id per line, surrounding blanks and empty lines ignored."""
        try:
            with open(path, encoding="utf-8") as handle:
                ids = frozenset(line.strip() for line in handle if line.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise SesamInputError(path, f"cannot read the id list ({getattr(exc, 'strerror', None) or exc})") from None
        if not ids:
            raise SesamInputError(path, "lists no id")
        return cls(path, ids)

    def missing_message(self, found: Iterable[str]) -> str | None:
        """None if every listed id is in ``found``, else how many are not, with a few of them."""
        missing = sorted(self.ids - set(found))
        if not missing:
            return None
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        return f"{len(missing)} of its {len(self.ids)} ids have no input: {shown}"


def record_id(path: str, strip_suffixes: Iterable[str] = ()) -> str:
    """A record id from a file name: its stem, with the first matching suffix in ``strip_suffixes``
    removed; SesamInputError naming the file if that is no usable id (:func:`id_problem`)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    for suffix in strip_suffixes:
        if suffix and stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return checked_id(stem, path)


def files_under(path: str, suffixes: tuple[str, ...] | None = None) -> list[str]:
    """Files below ``path`` (recursively), not hidden, whose names end in one of ``suffixes``
    (None: any), sorted."""
    found = []
    for root, _dirs, files in os.walk(path):
        found.extend(os.path.join(root, f) for f in files
                     if (suffixes is None or f.lower().endswith(suffixes)) and not f.startswith("."))
    return sorted(found)


def index_images(images_dir: str, strip_suffixes: Iterable[str] = ()) -> dict[str, str]:
    """Map record id -> photo path for every image below ``images_dir``."""
    if not os.path.isdir(images_dir):
        raise click.BadParameter(f"{images_dir}: no such directory", param_hint="--images")
    return {record_id(p, strip_suffixes): p for p in files_under(images_dir, IMAGE_SUFFIXES)}


def records_from_files(inputs: Iterable[str], key: str, images_dir: str | None = None,
                       strip_suffixes: Iterable[str] = (),
                       suffixes: tuple[str, ...] = (".png", ".json"), ids: IdList | None = None) -> list[Record]:
    """Records built from files and directories: ``{"id": stem, key: path, "image": photo}``.

    With ``ids``, only files whose id it lists; a listed id with no file is an error naming the list.
    """
    strip_suffixes = tuple(strip_suffixes)
    images = index_images(images_dir, strip_suffixes) if images_dir else None
    records = []
    for item in inputs:
        if os.path.isdir(item):
            paths = files_under(item, suffixes)
            if not paths:
                raise click.BadParameter(f"{item}: no {'/'.join(suffixes)} files in this directory")
        elif os.path.exists(item):
            paths = [item]
        else:
            raise click.BadParameter(f"{item}: no such file or directory")
        for path in paths:
            rec: Record = {"id": record_id(path, strip_suffixes), key: path}
            if ids is not None and rec["id"] not in ids.ids:
                continue
            if images is not None:
                if rec["id"] not in images:
                    raise click.BadParameter(f"{path}: no photo named '{rec['id']}.*' under {images_dir}",
                                             param_hint="--images")
                rec["image"] = images[rec["id"]]
            records.append(rec)
    problem = ids.missing_message(rec["id"] for rec in records) if ids is not None else None
    if problem:
        raise click.BadParameter(f"{ids.path}: {problem}", param_hint="--ids")
    return records


def records_from_lines(lines: Iterable[str], source: str = "<stdin>") -> Iterator[Record]:
    """Parse newline-delimited JSON records; a bad line, or an id that cannot name a file
    (:func:`id_problem`), is an error naming its line number. No record at all is a warning: the
    command before this one in a pipe probably failed."""
    count = 0
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{source} line {number}: not a JSON record ({exc.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
            raise click.ClickException(f"{source} line {number}: a record must be a JSON object with a string 'id'")
        problem = id_problem(rec["id"])
        if problem:
            raise click.ClickException(f"{source} line {number}: {problem}; an id must be a plain file name")
        count += 1
        yield rec
    if count == 0:
        log.warning("0 records on %s: nothing to do (did the command before this one fail?)", source)


def read_jsonl(path: str) -> list[Record]:
    """The records of a JSON-lines file; click.BadParameter if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return list(records_from_lines(handle, source=path))
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror}") from None


def read_records(inputs: Iterable[str], key: str, images_dir: str | None = None,
                 strip_suffixes: Iterable[str] = (), suffixes: tuple[str, ...] = (".png", ".json"),
                 ids: IdList | None = None) -> Iterable[Record]:
    """Records from file/dir arguments if any, else from stdin; a terminal on stdin is a usage error.

    With ``ids``, only the records whose id it lists. Listed ids with no input file are an error; on
    stdin, where the stream may be one shard of a dataset, a warning at its end.
    """
    inputs = list(inputs)
    if inputs:
        return records_from_files(inputs, key, images_dir, strip_suffixes, suffixes, ids)
    stdin = sys.stdin
    if stdin.isatty():
        raise click.UsageError("no input: give files or directories, or pipe records on stdin")
    images = index_images(images_dir, strip_suffixes) if images_dir else None
    records = records_from_lines(stdin)
    if ids is not None:
        records = _listed(records, ids)
    return _with_images(records, images, images_dir)


def _listed(records: Iterable[Record], ids: IdList) -> Iterator[Record]:
    """The records whose id ``ids`` lists; a warning at the end names the listed ids never seen."""
    seen = []
    for rec in records:
        if rec["id"] in ids.ids:
            seen.append(rec["id"])
            yield rec
    problem = ids.missing_message(seen)
    if problem:
        log.warning("%s: %s", ids.path, problem)


def _with_images(records: Iterable[Record], images: dict[str, str] | None, images_dir: str | None) -> Iterator[Record]:
    for rec in records:
        if images is not None and "image" not in rec:
            if rec["id"] not in images:
                raise click.BadParameter(f"no photo named '{rec['id']}.*' under {images_dir}", param_hint="--images")
            rec["image"] = images[rec["id"]]
        yield rec


def prefetched(records: Iterable[Record], size: int, wanted: Callable[[Record], bool],
               load: Callable[[list[Record]], Any]) -> Iterator[tuple[Record, Any]]:
    """``records`` in order, each with what ``load`` made for its batch.

    Records are grouped so that each group holds ``size`` records for which ``wanted`` is true (the
    others ride along, ``load`` never sees them). ``load(batch)`` runs in a background thread: the
    next group's while the caller works through the current one (reading the next images while the
    current ones are encoded and decoded). Records of the stream are read one group ahead.
    """
    iterator = iter(records)

    def take() -> tuple[list[Record], list[Record]]:
        group: list[Record] = []
        batch: list[Record] = []
        for rec in iterator:
            group.append(rec)
            if wanted(rec):
                batch.append(rec)
                if len(batch) == size:
                    break
        return group, batch

    with ThreadPoolExecutor(max_workers=1) as pool:
        group, batch = take()
        pending = pool.submit(load, batch)
        while group:
            next_group, next_batch = take()
            upcoming = pool.submit(load, next_batch) if next_group else None
            loaded = pending.result()
            for rec in group:
                yield rec, loaded
            group, pending = next_group, upcoming


def emit(record: Mapping[str, Any]) -> None:
    """Write one record as a JSON line on stdout and flush, so the next command can start on it."""
    out = sys.stdout
    out.write(json.dumps(record, sort_keys=False) + "\n")
    out.flush()


PROGRESS_INTERVAL = 30.0
"""Seconds between progress lines when stderr is not a terminal ($SESAM_PROGRESS_INTERVAL overrides)."""


def format_duration(seconds: float) -> str:
    """``seconds`` for people: '42 s', '3 min 05 s', '2 h 07 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LogProgress:
    """What a progress bar says, as a log line every ``interval`` seconds, for a stderr that is not a
    terminal (``make demo 2>&1 | tee log``): done / total, rate, ETA and the latest postfix values.
    Has the part of tqdm's interface the commands use: iteration, ``update``, ``set_postfix``, ``n``, ``close``."""

    def __init__(self, iterable: Iterable[Any] | None, desc: str, total: int | None, unit: str, initial: int,
                 interval: float):
        self.iterable, self.desc, self.total, self.unit, self.interval = iterable, desc, total, unit, interval
        self.n = self._first = initial
        self._start = self._last = time.monotonic()
        self._postfix = ""

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def update(self, count: int = 1) -> None:
        self.n += count
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            log.info("%s", self.line(now))

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self._postfix = "".join(f", {name} {value}" for name, value in values.items())

    def line(self, now: float) -> str:
        rate = (self.n - self._first) / max(now - self._start, 1e-9)
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        eta = f", ETA {format_duration((self.total - self.n) / rate)}" if self.total and rate > 0 else ""
        return f"{self.desc}: {done} {self.unit}, {rate:.3g} {self.unit}/s{eta}{self._postfix}"

    def close(self) -> None:
        """Nothing to tear down: the command's summary line follows."""


def global_flag(name: str) -> bool:
    """The group's ``-v`` (``verbose``) or ``-q`` (``quiet``) flag of the running command; False outside one."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get(name))


def failure_message(exc: Exception) -> str:
    """One line for an error: a SesamInputError as it is (it names its file), anything unexpected as
    its type and the first line of its message, with a pointer to the traceback."""
    if isinstance(exc, SesamInputError):
        return str(exc)
    if isinstance(exc, click.ClickException):
        return exc.format_message()
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    what = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return f"{what} (unexpected; `sesam -v` shows the traceback)"


def progress(iterable: Iterable[Any] | None, desc: str, total: int | None = None, unit: str = "img",
             initial: int = 0) -> tqdm | LogProgress:
    """Progress on stderr: a bar on a terminal, a log line every PROGRESS_INTERVAL seconds otherwise;
    nothing with -q or SESAM_PROGRESS=0 (SESAM_PROGRESS=1 forces the bar).

    With ``iterable`` None it is a manual bar: call ``update(n)`` on it, and ``close()`` at the end.
    """
    quiet = global_flag("quiet")
    setting = os.environ.get("SESAM_PROGRESS")
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not quiet and setting != "1" and setting != "0" and not sys.stderr.isatty():
        interval = float(os.environ.get("SESAM_PROGRESS_INTERVAL") or PROGRESS_INTERVAL)
        return LogProgress(iterable, desc, total, unit, initial, interval)
    enabled = not quiet and setting != "0"
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, file=sys.stderr,
                unit=unit, initial=initial, dynamic_ncols=True)


@dataclass
class PerImageStage:
    """The loop of a per-image command: shard, skip what is up to date, make, add the key, emit.

    ``make(record, out_path)`` writes the artifact (atomically, through ``stages.artifacts`` or
    ``stages.labels``) and may add more keys to the record. Any error while making one image ends the
    command with one line naming the image (the traceback with ``sesam -v``); with ``keep_going`` the
    image is logged and left out of the stream instead, and the command exits non-zero at the end.
    ``companions`` (record key -> (directory, suffix)) names further artifacts ``make`` writes beside
    the main one (written before it): an image is up to date only if they exist too, and their keys
    are added to every record passed on, made or skipped (``companion_path`` gives their paths).
    Artifact paths come from record ids, which must be plain file names (:func:`id_problem`). On
    start, the temporaries that killed runs left in the output directories are removed.
    """

    stage: str
    key: str
    output_dir: str
    suffix: str
    params: Mapping[str, Any]
    overwrite: bool = False
    shard: Shard | None = None
    keep_going: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"made": 0, "skipped": 0, "failed": 0})
    companions: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    sink: Callable[[Record], None] = emit
    """Where finished records go: stdout by default (a multi-round command collects them instead)."""

    def output_path(self, record: Mapping[str, Any]) -> str:
        return os.path.join(self.output_dir, checked_id(record["id"], None) + self.suffix)

    def companion_path(self, record: Mapping[str, Any], key: str) -> str:
        directory, suffix = self.companions[key]
        return os.path.join(directory, checked_id(record["id"], None) + suffix)

    def remove_stale_temporaries(self) -> None:
        """Remove what killed runs left in the output directories (see ``stages.artifacts``)."""
        folders: dict[str, set[str]] = {self.output_dir: {self.suffix}}
        for directory, suffix in self.companions.values():
            folders.setdefault(directory, set()).add(suffix)
        for directory, suffixes in folders.items():
            for path in remove_stale_temporaries(directory, suffixes):
                log.info("%s: removed %s, left behind by a killed run", self.stage, path)

    def owns(self, rec: Mapping[str, Any]) -> bool:
        """Whether ``rec`` belongs to this shard."""
        return self.shard is None or self.shard.owns(rec["id"])

    def up_to_date(self, rec: Mapping[str, Any], out: str) -> bool:
        """Whether the artifact ``out`` (and the companions) of ``rec`` exist and are current."""
        companions = {key: self.companion_path(rec, key) for key in self.companions}
        return (not self.overwrite and all(os.path.exists(p) for p in companions.values())
                and is_current(out, self.stage, self.params, rec, exclude=(self.key, *companions)))

    def will_make(self, rec: Mapping[str, Any]) -> bool:
        """Whether ``run`` will call ``make`` for ``rec`` (owned, not up to date; a record whose
        output path cannot even be found counts, so that ``make``'s error is reported)."""
        try:
            return self.owns(rec) and not self.up_to_date(rec, self.output_path(rec))
        except SesamInputError:
            return self.owns(rec)

    def run(self, records: Iterable[Record], make: Callable[[Record, str], None]) -> None:
        """Make every record's artifact; ends with a summary line. Ctrl-C stops after the image in
        hand with exit status 130 and says how much was done (a rerun resumes)."""
        os.makedirs(self.output_dir, exist_ok=True)
        self.remove_stale_temporaries()
        start = time.monotonic()
        try:
            self._loop(records, make)
        except KeyboardInterrupt:
            log.error("%s: interrupted after %s; run the same command again to resume",
                      self.stage, self._counted(start))
            raise click.exceptions.Exit(130) from None
        log.info("%s: %s", self.stage, self._counted(start))
        if self.counts["failed"]:
            raise click.ClickException(f"{self.stage}: {self.counts['failed']} image(s) failed (see above)")

    def _counted(self, start: float) -> str:
        return (f"{self.counts['made']} made, {self.counts['skipped']} up to date, {self.counts['failed']} failed "
                f"in {format_duration(time.monotonic() - start)}")

    def _loop(self, records: Iterable[Record], make: Callable[[Record, str], None]) -> None:
        seen: set[str] = set()
        for rec in progress(records, self.stage):
            if not self.owns(rec):
                continue
            if rec["id"] in seen:
                log.warning("%s: image '%s' comes twice; its artifact is now the later record's", self.stage, rec["id"])
            seen.add(rec["id"])
            try:
                companions = {key: self.companion_path(rec, key) for key in self.companions}
                out = self.output_path(rec)
                if self.up_to_date(rec, out):
                    self.counts["skipped"] += 1
                else:
                    make(rec, out)
                    self.counts["made"] += 1
            except (click.exceptions.Exit, click.Abort):
                raise
            except Exception as exc:  # any failure on one image: see the class docstring
                message = f"image '{rec['id']}': {failure_message(exc)}"
                if global_flag("verbose"):
                    log.exception("%s: %s", self.stage, message)
                if not self.keep_going:
                    raise click.ClickException(f"{self.stage}: {message}") from exc
                log.error("%s: %s", self.stage, message)
                self.counts["failed"] += 1
                continue
            rec[self.key] = out
            rec.update(companions)
            self.sink(rec)
