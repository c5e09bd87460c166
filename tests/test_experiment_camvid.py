"""benchmarks/experiment_camvid.py --tiny end to end (the CPU smoke test of the GPU experiment), on a few
CamVid photos copied into the public SegNet layout (train/ trainannot/ val/ valannot/, void = 11)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = os.path.join(ROOT, "benchmarks", "experiment_camvid.py")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_torch_thread")]


def segnet_copy(camvid_root: str, dest: str, counts: dict[str, int]) -> str:
    """The first ``counts[split]`` photos of each split in the SegNet layout, void written as 11."""
    for split, count in counts.items():
        names = sorted(os.listdir(os.path.join(camvid_root, split, "images")))[:count]
        os.makedirs(os.path.join(dest, split))
        os.makedirs(os.path.join(dest, f"{split}annot"))
        for name in names:
            shutil.copy(os.path.join(camvid_root, split, "images", name), os.path.join(dest, split, name))
            label = np.asarray(Image.open(os.path.join(camvid_root, split, "labels", name)))
            Image.fromarray(np.where(label == 255, 11, label).astype(np.uint8), mode="L").save(
                os.path.join(dest, f"{split}annot", name))
    return dest


def test_the_tiny_experiment_prints_every_row_and_writes_its_json(camvid_root, sam_home, tmp_path):
    data = segnet_copy(camvid_root, str(tmp_path / "CamVid"), {"train": 6, "val": 4})
    report = tmp_path / "results.json"
    result = subprocess.run([sys.executable, EXPERIMENT, "--data", data, "--work", str(tmp_path / "work"), "--tiny",
                             "--seeds", "0", "--json", str(report)],
                            capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| (")]
    assert [line.split(" | ")[0] for line in table] == [
        "| (full) ground truth", "| (a) weak labels alone", "| (b) weak + SAM pseudo-labels",
        "| (c) weak + SAM + teacher (all three)", "| (d) (c) retrained after one refine round"]
    assert all(line.count("|") == 3 + 11 + 1 for line in table), "mIoU, ratio and the 11 classes per row"
    assert "6 train photos at scale 0.25" in result.stdout and "(full) >= 60 mIoU" in result.stdout

    summary = json.loads(report.read_text())
    rows = summary["kinds"]["scribbles"]["rows"]
    assert sorted(rows) == ["a", "b", "c", "d", "full"]
    assert all(len(row["miou"]) == 1 and 0 <= row["miou"][0] <= 100 for row in rows.values())
    labels = summary["kinds"]["scribbles"]["labels"]
    assert 0 < labels["weak"]["miou"] < labels["pseudo"]["miou"], "SAM labels more than the scribbles"
    assert any(line.startswith("sesam sam-predict") for line in summary["commands"])
    assert any(line.startswith("sesam refine") for line in summary["commands"])
