"""Errors raised by the stages for bad input; the CLI turns them into one-line messages."""

from __future__ import annotations

import os


class SesamInputError(Exception):
    """A problem with one input file: names the file and says what is wrong with it."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class SesamUsageError(SesamInputError):
    """Inputs given the wrong way (no input at all, a missing directory, a listed id without a file): the
    CLI reports it as a usage error (exit status 2), as a bad value of ``option`` when ``bad_value``."""

    def __init__(self, problem: str, option: str | None = None, bad_value: bool = True):
        super().__init__(None, problem)
        self.option = option
        self.bad_value = bad_value


class StageFailed(Exception):
    """A per-image stage ended because images failed; the message is the one line to show (the
    failures are logged already)."""


class StageInterrupted(Exception):
    """A per-image stage stopped by Ctrl-C after the image in hand (logged, with how much was done)."""
