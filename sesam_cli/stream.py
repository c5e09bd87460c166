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
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import click
from tqdm import tqdm

from stages.artifacts import is_current
from stages.errors import SesamInputError
from stages.labels import IMAGE_SUFFIXES

log = logging.getLogger("sesam")

Record = dict[str, Any]


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
    """A record id from a file name: its stem, with the first matching suffix in ``strip_suffixes`` removed."""
    stem = os.path.splitext(os.path.basename(path))[0]
    for suffix in strip_suffixes:
        if suffix and stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _files_under(path: str, suffixes: tuple[str, ...]) -> list[str]:
    """Files below ``path`` (recursively) whose names end in one of ``suffixes``, sorted."""
    found = []
    for root, _dirs, files in os.walk(path):
        found.extend(os.path.join(root, f) for f in files
                     if f.lower().endswith(suffixes) and not f.startswith("."))
    return sorted(found)


def index_images(images_dir: str, strip_suffixes: Iterable[str] = ()) -> dict[str, str]:
    """Map record id -> photo path for every image below ``images_dir``."""
    if not os.path.isdir(images_dir):
        raise click.BadParameter(f"{images_dir}: no such directory", param_hint="--images")
    return {record_id(p, strip_suffixes): p for p in _files_under(images_dir, IMAGE_SUFFIXES)}


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
            paths = _files_under(item, suffixes)
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
    """Parse newline-delimited JSON records; a bad line is an error naming its line number."""
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
        yield rec


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


def require(record: Mapping[str, Any], *keys: str) -> None:
    """Raise a ClickException if ``record`` lacks any of ``keys`` (an upstream stage is missing)."""
    missing = [k for k in keys if not record.get(k)]
    if missing:
        raise SesamInputError(None, f"record '{record.get('id')}' has no {', '.join(repr(k) for k in missing)}; "
                                    "run the stage that makes it first (or give it as an option)")


def progress(iterable: Iterable[Any] | None, desc: str, total: int | None = None, unit: str = "img",
             initial: int = 0) -> tqdm:
    """A progress bar on stderr, silent with -q or when stderr is not a terminal and SESAM_PROGRESS is unset.

    With ``iterable`` None it is a manual bar: call ``update(n)`` on it, and ``close()`` at the end.
    """
    ctx = click.get_current_context(silent=True)
    quiet = bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("quiet"))
    enabled = not quiet and (sys.stderr.isatty() or os.environ.get("SESAM_PROGRESS") == "1")
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, file=sys.stderr,
                unit=unit, initial=initial, dynamic_ncols=True)


@dataclass
class PerImageStage:
    """The loop of a per-image command: shard, skip what is up to date, make, add the key, emit.

    ``make(record, out_path)`` writes the artifact (atomically, through ``stages.artifacts`` or
    ``stages.labels``) and may add more keys to the record. With ``keep_going`` a failing image is
    logged and left out of the stream, and the command exits non-zero at the end. ``companions``
    (record key -> (directory, suffix)) names further artifacts ``make`` writes beside the main one
    (written before it): an image is up to date only if they exist too, and their keys are added
    to every record passed on, made or skipped (``companion_path`` gives their paths).
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
        return os.path.join(self.output_dir, record["id"] + self.suffix)

    def companion_path(self, record: Mapping[str, Any], key: str) -> str:
        directory, suffix = self.companions[key]
        return os.path.join(directory, record["id"] + suffix)

    def owns(self, rec: Mapping[str, Any]) -> bool:
        """Whether ``rec`` belongs to this shard."""
        return self.shard is None or self.shard.owns(rec["id"])

    def up_to_date(self, rec: Mapping[str, Any], out: str) -> bool:
        """Whether the artifact ``out`` (and the companions) of ``rec`` exist and are current."""
        companions = {key: self.companion_path(rec, key) for key in self.companions}
        inputs = {k: v for k, v in rec.items() if k != self.key and k not in companions}
        return (not self.overwrite and all(os.path.exists(p) for p in companions.values())
                and is_current(out, self.stage, self.params, inputs))

    def will_make(self, rec: Mapping[str, Any]) -> bool:
        """Whether ``run`` will call ``make`` for ``rec`` (owned, not up to date; a record whose
        output path cannot even be found counts, so that ``make``'s error is reported)."""
        try:
            return self.owns(rec) and not self.up_to_date(rec, self.output_path(rec))
        except SesamInputError:
            return self.owns(rec)

    def run(self, records: Iterable[Record], make: Callable[[Record, str], None]) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        for rec in progress(records, self.stage):
            if not self.owns(rec):
                continue
            companions = {key: self.companion_path(rec, key) for key in self.companions}
            try:
                out = self.output_path(rec)
                if self.up_to_date(rec, out):
                    self.counts["skipped"] += 1
                else:
                    make(rec, out)
                    self.counts["made"] += 1
            except SesamInputError as exc:
                if not self.keep_going:
                    raise click.ClickException(str(exc)) from exc
                log.error("%s", exc)
                self.counts["failed"] += 1
                continue
            rec[self.key] = out
            rec.update(companions)
            self.sink(rec)
        log.info("%s: %d made, %d up to date, %d failed", self.stage, self.counts["made"],
                 self.counts["skipped"], self.counts["failed"])
        if self.counts["failed"]:
            raise click.ClickException(f"{self.stage}: {self.counts['failed']} image(s) failed (see above)")
