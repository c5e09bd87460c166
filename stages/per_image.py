"""The loop of every per-image stage: shard, skip what is up to date, make the artifact, pass the record on."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from .errors import SesamInputError, StageFailed, StageInterrupted
from .io.artifacts import is_current
from .io.atomic import remove_stale_temporaries
from .progress import format_duration, progress
from .records import IdList, Record, Shard, checked_id, emit, read_records

log = logging.getLogger("sesam")


def failure_message(exc: Exception) -> str:
    """One line for an error: a SesamInputError as it is (it names its file), anything unexpected as
    its type and the first line of its message, with a pointer to the traceback."""
    if isinstance(exc, SesamInputError):
        return str(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    what = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return f"{what} (unexpected; `sesam -v` shows the traceback)"


@dataclass
class PerImageStage:
    """The loop of a per-image command: shard, skip what is up to date, make, add the key, emit.

    ``make(record, out_path)`` writes the artifact (atomically, through ``stages.io``) and may add
    more keys to the record. Any error while making one image ends the stage with StageFailed, one
    line naming the image (the traceback logged first when ``verbose``); with ``keep_going`` the image
    is logged and left out of the stream instead, and StageFailed comes at the end.
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
    verbose: bool = False
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
        hand with StageInterrupted and says how much was done (a rerun resumes)."""
        os.makedirs(self.output_dir, exist_ok=True)
        self.remove_stale_temporaries()
        start = time.monotonic()
        try:
            self._loop(records, make)
        except KeyboardInterrupt:
            log.error("%s: interrupted after %s; run the same command again to resume",
                      self.stage, self._counted(start))
            raise StageInterrupted(self.stage) from None
        log.info("%s: %s", self.stage, self._counted(start))
        if self.counts["failed"]:
            raise StageFailed(f"{self.stage}: {self.counts['failed']} image(s) failed (see above)")

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
            except Exception as exc:  # any failure on one image: see the class docstring
                message = f"image '{rec['id']}': {failure_message(exc)}"
                if self.verbose:
                    log.exception("%s: %s", self.stage, message)
                if not self.keep_going:
                    raise StageFailed(f"{self.stage}: {message}") from exc
                log.error("%s: %s", self.stage, message)
                self.counts["failed"] += 1
                continue
            rec[self.key] = out
            rec.update(companions)
            self.sink(rec)


@dataclass(frozen=True)
class PerImageStream:
    """What every per-image command is given: where its records come from (``inputs``, ``images_dir``,
    ``strip_suffixes``) and how its per-image loop runs (``output_dir``, ``overwrite``, ``shard``,
    ``keep_going``, ``verbose``)."""

    inputs: tuple[str, ...]
    images_dir: str | None
    strip_suffixes: tuple[str, ...]
    output_dir: str
    overwrite: bool = False
    shard: Shard | None = None
    keep_going: bool = False
    verbose: bool = False

    def records(self, key: str, suffixes: tuple[str, ...] = (".png", ".json"),
                ids: IdList | None = None) -> Iterable[Record]:
        """The records: stdin, or the inputs as records with ``key`` (see ``stages.records.read_records``)."""
        return read_records(self.inputs, key, self.images_dir, self.strip_suffixes, suffixes, ids)

    def stage(self, stage: str, key: str, suffix: str, params: dict[str, Any], output_dir: str | None = None,
              overwrite: bool = False, **extra: Any) -> PerImageStage:
        """The per-image loop writing record key ``key`` as ``output_dir/ID{suffix}`` (default: this stream's);
        ``overwrite`` redoes every image even without the stream's; ``extra``: PerImageStage's companions, sink."""
        return PerImageStage(stage, key, output_dir or self.output_dir, suffix, params, self.overwrite or overwrite,
                             self.shard, self.keep_going, self.verbose, **extra)
