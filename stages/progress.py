"""Progress on stderr for long work: a bar on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Iterable, Iterator

from tqdm import tqdm

log = logging.getLogger("sesam")

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


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log lines 'sesam: LEVEL: message' on stderr: errors only when ``quiet`` (which also silences
    ``progress``), debug from ``verbose`` 2 on, else info."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr, format="sesam: %(levelname)s: %(message)s")
    log.setLevel(level)


def progress(iterable: Iterable[Any] | None, desc: str, total: int | None = None, unit: str = "img",
             initial: int = 0) -> tqdm | LogProgress:
    """Progress on stderr: a bar on a terminal, a log line every PROGRESS_INTERVAL seconds otherwise;
    nothing when the "sesam" logger is set above INFO (``sesam -q``) or with SESAM_PROGRESS=0
    (SESAM_PROGRESS=1 forces the bar).

    With ``iterable`` None it is a manual bar: call ``update(n)`` on it, and ``close()`` at the end.
    """
    quiet = log.level > logging.INFO
    setting = os.environ.get("SESAM_PROGRESS")
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not quiet and setting != "1" and setting != "0" and not sys.stderr.isatty():
        interval = float(os.environ.get("SESAM_PROGRESS_INTERVAL") or PROGRESS_INTERVAL)
        return LogProgress(iterable, desc, total, unit, initial, interval)
    enabled = not quiet and setting != "0"
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, file=sys.stderr,
                unit=unit, initial=initial, dynamic_ncols=True)
