"""Records: one dict per image naming its photo and the artifacts made for it so far, by key.

``{"id": "2007_000032", "image": "data/JPEGImages/2007_000032.jpg", "weak": "work/weak/2007_000032.png"}``.
Records are read from JSON lines (stdin, one per line) or built from label files / directories
(paired with photos in an images directory by file stem), and written as JSON lines on stdout, so
that commands chain in pipes; the library's per-image functions read them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import unicodedata
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from .errors import SesamInputError, SesamUsageError
from .io.images import IMAGE_SUFFIXES

log = logging.getLogger("sesam")

Record = dict[str, Any]

KEY_SOURCES = {
    "image": "pass --images DIR (photos paired by file stem)",
    "gt": "start the chain with `sesam records --images DIR --key gt=DIR`",
    "gt_instances": "pass --instances DIR, or `sesam records --key gt_instances=DIR`",
    "weak": "run `sesam simulate` first, or give weak-label files as arguments",
    "components": "run `sesam decompose` first",
    "prompts": "run `sesam sample-prompts` first",
    "masks": "run `sesam sam-predict` first",
    "pseudo": "run `sesam select` first",
    "prediction": "run `sesam refine --predict-only` first",
    "cam": "give each record a CAM pseudo-label PNG under 'cam'",
}
"""How a record gets each key, for the error that names a missing one."""


def require(record: Mapping[str, Any], *keys: str, hint: str | None = None) -> None:
    """Raise SesamInputError if ``record`` lacks any of ``keys``, saying how to get the first missing
    one (``hint``, else ``KEY_SOURCES``)."""
    missing = [k for k in keys if not record.get(k)]
    if missing:
        how = hint or KEY_SOURCES.get(missing[0], "run the stage that makes it first")
        raise SesamInputError(None, f"record '{record.get('id')}' has no {', '.join(repr(k) for k in missing)}; {how}")


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

    @classmethod
    def parse(cls, value: str) -> "Shard":
        """The shard written ``K/N`` (e.g. 0/4); ValueError if it is not one."""
        try:
            index, count = (int(v) for v in value.split("/"))
        except ValueError:
            raise ValueError(f"'{value}' is not K/N (e.g. 0/4)") from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"'{value}': need 0 <= K < N")
        return cls(index, count)


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
        raise SesamUsageError(f"{images_dir}: no such directory", "--images")
    return {record_id(p, strip_suffixes): p for p in files_under(images_dir, IMAGE_SUFFIXES)}


def index_key_files(directory: str, suffix: str, strip_suffixes: tuple[str, ...]) -> dict[str, str]:
    """id -> file for the files below ``directory``: with ``suffix``, only files whose stem ends in it
    (the id is the stem without it); else every file, its id as for photos. Two files with one id
    are an error naming both."""
    index: dict[str, str] = {}
    for path in files_under(directory):
        stem = os.path.splitext(os.path.basename(path))[0]
        if suffix and not stem.endswith(suffix):
            continue
        key = stem[: -len(suffix)] if suffix else record_id(path, strip_suffixes)
        if key in index:
            raise SesamInputError(path, f"has the same id '{key}' as {index[key]}; "
                                        "give NAME=DIR:SUFFIX to pick one kind of file")
        index[key] = path
    return index


def paired_records(images_dir: str, keys: Iterable[tuple[str, str, str]], strip_suffixes: tuple[str, ...] = (),
                   ids: IdList | None = None, allow_missing: bool = False) -> Iterator[Record]:
    """One record per photo under ``images_dir`` (or per id of ``ids``), with key ``name`` = the file of
    ``directory`` with its id for every (name, directory, suffix) of ``keys`` (see ``index_key_files``).

    Photos that lack a key's file are left out unless ``allow_missing`` (then they lack that key); with
    ``ids``, a listed id without a photo or a key's file is a SesamUsageError. Ends with info lines on
    the photos that lack a file and the files that lack a photo.
    """
    photos = index_images(images_dir, strip_suffixes)
    indices = {name: index_key_files(directory, suffix, strip_suffixes) for name, directory, suffix in keys}
    wanted = sorted(photos) if ids is None else sorted(ids.ids)
    lacking = {name: [i for i in wanted if i not in index] for name, index in indices.items()}
    if ids is not None:
        incomplete = [i for i in wanted if i not in photos
                      or (not allow_missing and any(i in missing for missing in lacking.values()))]
        if incomplete:
            shown = ", ".join(incomplete[:5]) + (" ..." if len(incomplete) > 5 else "")
            raise SesamUsageError(f"{ids.path}: {len(incomplete)} listed id(s) lack a photo under {images_dir} "
                                  f"or a --key file: {shown}", "--ids")
    skipped = set() if allow_missing else {i for missing in lacking.values() for i in missing}
    for image_id in wanted:
        if image_id not in skipped:
            record = {"id": image_id, "image": photos[image_id]}
            record.update({name: index[image_id] for name, index in indices.items() if image_id in index})
            yield record
    for name, missing in lacking.items():
        if missing:
            log.info("records: %d photo(s) have no '%s' file%s, e.g. %s", len(missing), name,
                     "" if allow_missing else " and are left out", missing[0])
    for name, index in indices.items():
        unpaired = sum(1 for i in index if i not in photos)
        if unpaired:
            log.info("records: %d '%s' file(s) have no photo under %s", unpaired, name, images_dir)


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
                raise SesamUsageError(f"{item}: no {'/'.join(suffixes)} files in this directory")
        elif os.path.exists(item):
            paths = [item]
        else:
            raise SesamUsageError(f"{item}: no such file or directory")
        for path in paths:
            rec: Record = {"id": record_id(path, strip_suffixes), key: path}
            if ids is not None and rec["id"] not in ids.ids:
                continue
            if images is not None:
                if rec["id"] not in images:
                    raise SesamUsageError(f"{path}: no photo named '{rec['id']}.*' under {images_dir}", "--images")
                rec["image"] = images[rec["id"]]
            records.append(rec)
    problem = ids.missing_message(rec["id"] for rec in records) if ids is not None else None
    if problem:
        raise SesamUsageError(f"{ids.path}: {problem}", "--ids")
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
            raise SesamInputError(None, f"{source} line {number}: not a JSON record ({exc.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
            raise SesamInputError(None, f"{source} line {number}: a record must be a JSON object with a string 'id'")
        problem = id_problem(rec["id"])
        if problem:
            raise SesamInputError(None, f"{source} line {number}: {problem}; an id must be a plain file name")
        count += 1
        yield rec
    if count == 0:
        log.warning("0 records on %s: nothing to do (did the command before this one fail?)", source)


def read_jsonl(path: str) -> list[Record]:
    """The records of a JSON-lines file; SesamUsageError if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return list(records_from_lines(handle, source=path))
    except OSError as exc:
        raise SesamUsageError(f"{path}: {exc.strerror}") from None


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
        raise SesamUsageError("no input: give files or directories, or pipe records on stdin", bad_value=False)
    images = index_images(images_dir, strip_suffixes) if images_dir else None
    records = records_from_lines(stdin)
    if ids is not None:
        records = _listed(records, ids)
    return with_images(records, images, images_dir)


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


def with_images(records: Iterable[Record], images: dict[str, str] | None, images_dir: str | None) -> Iterator[Record]:
    """``records``, each without an 'image' given its photo from ``images`` (id -> path, see
    :func:`index_images` of ``images_dir``; None: left as they are); a record with no photo there is a
    SesamUsageError."""
    for rec in records:
        if images is not None and "image" not in rec:
            if rec["id"] not in images:
                raise SesamUsageError(f"no photo named '{rec['id']}.*' under {images_dir}", "--images")
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


def emit_all(records: Iterable[Mapping[str, Any]], added: Mapping[str, Any] | None = None) -> int:
    """``emit`` every record, with the keys of ``added`` added to each; returns how many there were."""
    count = 0
    for count, record in enumerate(records, 1):
        emit({**record, **(added or {})})
    return count
