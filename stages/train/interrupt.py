"""Graceful interruption: SIGINT / SIGTERM ask the training loop to stop after the current iteration."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

log = logging.getLogger("sesam")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context manager: while inside, the first SIGINT/SIGTERM sets ``signal_number`` (checked by
    the loop, which saves a checkpoint and stops); the previous handlers come back at once, so a second
    signal ends the process the usual way. Outside the main thread it installs nothing. Processes
    forked inside (data-loader workers, which get Ctrl-C from the terminal too) ignore the signal:
    the process that installed the handler stops them."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}
        self._owner = os.getpid()

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:
            return
        self.signal_number = signal_number
        self._restore()
        log.warning("%s: stopping after this iteration and saving a checkpoint (send it again to abort)",
                    signal.Signals(signal_number).name)

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
            for number in STOP_SIGNALS:
                signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()
