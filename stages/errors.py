"""Errors raised by the stages for bad input; the CLI turns them into one-line messages."""

from __future__ import annotations

import os


class SesamInputError(Exception):
    """A problem with one input file: names the file and says what is wrong with it."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
