"""Scoring label maps against ground truth: confusion counts, IoU, accuracy, precision, recall.

Conventions (mmsegmentation's): counts are summed over the whole dataset before dividing; ground-truth
pixels of value 255 are not scored; a predicted 255 (no label) on a scored pixel counts as wrong. The
confusion matrix is (K, K + 1) int64, rows = ground-truth class, columns = predicted class, and the
last column counts scored pixels whose prediction is 255. A class's IoU is undefined (NaN) when it
occurs neither in the ground truth nor in the prediction; mIoU is the mean over defined classes.

A dataset is scored as (id, prediction, ground truth) path triples (:func:`evaluation_pairs`, from
records) by :func:`score_pairs`, which also gives one CSV row per image (:func:`per_image_csv`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import IGNORE_INDEX
from .errors import SesamInputError
from .io.atomic import atomic_path, write_text
from .io.images import check_same_size, read_label
from .presets import ClassPreset
from .progress import progress
from .records import IdList, Record, records_from_files, require

_CODES = 256


def _bad_values(counts: np.ndarray, num_classes: int) -> list[int]:
    """Values beyond the preset (neither a class nor 255) that occur in a 256-bin histogram."""
    return [int(v) for v in np.flatnonzero(counts[num_classes:IGNORE_INDEX]) + num_classes]


def confusion_counts(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     pred_path: str | os.PathLike | None = None,
                     gt_path: str | os.PathLike | None = None) -> np.ndarray:
    """The (K, K + 1) int64 confusion matrix of one prediction against its ground truth.

    ``pred`` and ``gt`` are (H, W) uint8 label maps (255 = ignore). Rows are ground-truth classes,
    columns predicted classes, column K counts scored pixels predicted 255; ground-truth 255 is not
    counted. A size mismatch, or a value that is neither a class below ``num_classes`` nor 255,
    raises SesamInputError naming the file (``pred_path`` / ``gt_path``).
    """
    gt_name = f" {os.fspath(gt_path)}" if gt_path is not None else ""
    check_same_size(pred_path, pred.shape, gt.shape, "prediction size", f"the ground truth{gt_name}")
    if pred.dtype != np.uint8 or gt.dtype != np.uint8:
        raise TypeError("label maps must be uint8")
    code = gt.astype(np.intp)
    code <<= 8
    code |= pred
    full = np.bincount(code.ravel(), minlength=_CODES * _CODES).reshape(_CODES, _CODES)
    for path, counts, what in ((gt_path, full.sum(axis=1), "ground truth"),
                               (pred_path, full.sum(axis=0), "prediction")):
        bad = _bad_values(counts, num_classes)
        if bad:
            shown = ", ".join(str(v) for v in bad[:10])
            raise SesamInputError(path, f"{what} holds class values {shown} outside the preset "
                                        f"(0..{num_classes - 1}, and 255 = ignore)")
    matrix = np.empty((num_classes, num_classes + 1), np.int64)
    matrix[:, :num_classes] = full[:num_classes, :num_classes]
    matrix[:, num_classes] = full[:num_classes, IGNORE_INDEX]
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


@dataclass(frozen=True)
class Scores:
    """Scores computed from a (K, K + 1) confusion matrix; per-class arrays are (K,) float64, NaN
    where undefined (IoU: class absent from both maps; precision: never predicted; recall: absent
    from the ground truth)."""

    confusion: np.ndarray
    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray

    @classmethod
    def from_confusion(cls, confusion: np.ndarray) -> "Scores":
        num_classes = confusion.shape[0]
        true_positive = np.diag(confusion[:, :num_classes]).astype(np.float64)
        gt_pixels = confusion.sum(axis=1)
        pred_pixels = confusion[:, :num_classes].sum(axis=0)
        return cls(confusion=confusion,
                   iou=_ratio(true_positive, gt_pixels + pred_pixels - true_positive),
                   precision=_ratio(true_positive, pred_pixels),
                   recall=_ratio(true_positive, gt_pixels))

    @property
    def scored_pixels(self) -> int:
        return int(self.confusion.sum())

    @property
    def miou(self) -> float:
        """Mean IoU over the classes that occur in the ground truth or the prediction."""
        defined = self.iou[~np.isnan(self.iou)]
        return float(defined.mean()) if defined.size else float("nan")

    @property
    def pixel_accuracy(self) -> float:
        num_classes = self.confusion.shape[0]
        total = self.scored_pixels
        return float(np.trace(self.confusion[:, :num_classes]) / total) if total else float("nan")

    @property
    def labelled_fraction(self) -> float:
        """The fraction of scored pixels whose prediction is a class (not 255)."""
        total = self.scored_pixels
        return float(1.0 - self.confusion[:, -1].sum() / total) if total else float("nan")


def _number(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6)


def report(scores: Scores, class_names: Sequence[str], images: int) -> dict[str, Any]:
    """A JSON-ready report: summary figures, per-class figures by class name, the confusion matrix."""
    gt_pixels = scores.confusion.sum(axis=1)
    pred_pixels = scores.confusion[:, :-1].sum(axis=0)
    return {
        "images": images,
        "scored_pixels": scores.scored_pixels,
        "miou": _number(scores.miou),
        "pixel_accuracy": _number(scores.pixel_accuracy),
        "labelled_fraction": _number(scores.labelled_fraction),
        "classes": list(class_names),
        "per_class": {
            name: {"iou": _number(scores.iou[k]), "precision": _number(scores.precision[k]),
                   "recall": _number(scores.recall[k]), "gt_pixels": int(gt_pixels[k]),
                   "predicted_pixels": int(pred_pixels[k])}
            for k, name in enumerate(class_names)
        },
        "confusion": {"rows": "ground truth", "columns": list(class_names) + ["255"],
                      "counts": scores.confusion.tolist()},
    }


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read a report written by ``report`` (``sesam evaluate --json``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except OSError as exc:
        raise SesamInputError(path, f"cannot read the report ({exc.strerror})") from None
    except ValueError as exc:
        raise SesamInputError(path, f"not a JSON report: {exc}") from None
    if not isinstance(content, dict) or not isinstance(content.get("per_class"), dict) or "miou" not in content:
        raise SesamInputError(path, "not a sesam evaluate report (no 'miou' / 'per_class')")
    return content


def _percent(value: float | None) -> str:
    return "     -" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{100 * value:6.2f}"


def _delta(a: float | None, b: float | None) -> str:
    return "     -" if a is None or b is None else f"{100 * (b - a):+6.2f}"


def format_report(rep: Mapping[str, Any]) -> str:
    """A readable table of a report: per-class IoU, precision, recall, then the summary figures."""
    width = max([len("class")] + [len(name) for name in rep["per_class"]])
    lines = [f"{'class':<{width}}     IoU  precis  recall  gt pixels"]
    for name, row in rep["per_class"].items():
        lines.append(f"{name:<{width}}  {_percent(row['iou'])}  {_percent(row['precision'])}  "
                     f"{_percent(row['recall'])}  {row['gt_pixels']:9d}")
    lines.append("")
    lines.append(f"mIoU {_percent(rep['miou']).strip()}  pixel accuracy {_percent(rep['pixel_accuracy']).strip()}  "
                 f"labelled {_percent(rep['labelled_fraction']).strip()}%  "
                 f"({rep['images']} images, {rep['scored_pixels']} scored pixels)")
    return "\n".join(lines)


def compare_reports(first: Mapping[str, Any], second: Mapping[str, Any],
                    first_path: str | os.PathLike | None = None,
                    second_path: str | os.PathLike | None = None) -> list[tuple[str, float | None, float | None]]:
    """(name, first, second) rows for every class IoU, then mIoU, pixel accuracy, labelled fraction.

    The two reports must list the same classes; otherwise SesamInputError names the second file.
    """
    if list(first["per_class"]) != list(second["per_class"]):
        raise SesamInputError(second_path, f"lists other classes than {os.fspath(first_path or '')}; "
                                           "compare reports made with the same class preset")
    rows = [(name, first["per_class"][name]["iou"], second["per_class"][name]["iou"])
            for name in first["per_class"]]
    rows += [(key, first[key], second[key]) for key in ("miou", "pixel_accuracy", "labelled_fraction")]
    return rows


def format_comparison(rows: Sequence[tuple[str, float | None, float | None]], first_label: str,
                      second_label: str) -> str:
    """A table of IoU in two reports and the change from the first to the second, in points."""
    width = max(len(name) for name, _a, _b in rows)
    lines = [f"A = {first_label}", f"B = {second_label}", f"{'class':<{width}}       A       B   B - A"]
    for name, a, b in rows:
        if name == "miou":
            lines.append("")
        lines.append(f"{name:<{width}}  {_percent(a)}  {_percent(b)}  {_delta(a, b)}")
    return "\n".join(lines)


def plot_iou(path: str | os.PathLike, class_names: Sequence[str],
             series: Mapping[str, Sequence[float | None]]) -> None:
    """Atomically write a bar chart PNG of per-class IoU (in %), one bar colour per entry of ``series``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(series)
    positions = np.arange(len(class_names))
    bar = 0.8 / count
    figure, axes = plt.subplots(figsize=(max(6.0, 0.35 * len(class_names) + 2), 4.0))
    try:
        for index, (label, values) in enumerate(series.items()):
            heights = [0.0 if v is None or np.isnan(v) else 100 * v for v in values]
            axes.bar(positions + (index - (count - 1) / 2) * bar, heights, bar, label=label)
        axes.set_xticks(positions, class_names, rotation=90, fontsize=8)
        axes.set_ylabel("IoU (%)")
        axes.set_ylim(0, 100)
        axes.legend(fontsize=8)
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(figure)


def plot_comparison(path: str | os.PathLike, reports: Mapping[str, Mapping[str, Any]]) -> None:
    """``plot_iou`` of the per-class IoU of reports (same classes) by their file path, labelled by file name."""
    first = next(iter(reports.values()))
    plot_iou(path, first["classes"], {os.path.basename(name): [rep["per_class"][c]["iou"] for c in rep["classes"]]
                                      for name, rep in reports.items()})


CSV_COLUMNS = ("id", "prediction", "ground_truth", "scored_pixels", "miou", "pixel_accuracy",
               "labelled_fraction")
"""The columns of ``sesam evaluate --csv``: one row per image."""


def _index_by_id(records: Iterable[Record], key: str) -> dict[str, str]:
    """id -> path; two files with one id is an error naming both."""
    index: dict[str, str] = {}
    for rec in records:
        if rec["id"] in index:
            raise SesamInputError(rec[key], f"has the same id '{rec['id']}' as {index[rec['id']]}")
        index[rec["id"]] = rec[key]
    return index


def evaluation_pairs(records: Iterable[Record], pred_key: str, gt_key: str = "gt", gt_dir: str | None = None,
                     strip_suffixes: tuple[str, ...] = (), ids: IdList | None = None,
                     allow_missing: bool = False) -> list[tuple[str, str, str]]:
    """(id, prediction path, ground-truth path) for every record, checked for mismatched ids.

    The prediction is the record's ``pred_key``; the ground truth the PNG with its id under
    ``gt_dir`` (every one of which needs a prediction unless ``allow_missing``), else its ``gt_key``.
    """
    ground_truth = (_index_by_id(records_from_files([gt_dir], "gt", None, strip_suffixes, (".png",), ids), "gt")
                    if gt_dir else None)
    pairs: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    for rec in records:
        require(rec, pred_key)
        pred = rec[pred_key]
        if rec["id"] in seen:
            raise SesamInputError(pred, f"has the same id '{rec['id']}' as {seen[rec['id']]}")
        seen[rec["id"]] = pred
        if ground_truth is None:
            require(rec, gt_key, hint="pass --gt DIR (ground truth paired by file stem) or --gt-key KEY")
            gt = rec[gt_key]
        elif rec["id"] in ground_truth:
            gt = ground_truth[rec["id"]]
        else:
            raise SesamInputError(pred, f"has no ground truth: no '{rec['id']}.png' under {gt_dir}")
        pairs.append((rec["id"], pred, gt))
    if not pairs:
        raise SesamInputError(None, "no label maps to evaluate (the input stream is empty)")
    if ground_truth is not None and not allow_missing:
        missing = sorted(set(ground_truth) - set(seen))
        if missing:
            shown = ", ".join(ground_truth[i] for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise SesamInputError(
                gt_dir, f"{len(missing)} ground-truth file(s) have no prediction: {shown} "
                        "(pass --allow-missing to score only the images that have one)")
    return pairs


def score_pairs(pairs: Sequence[tuple[str, str, str]], preset: ClassPreset, map_colours: bool = False,
                reduce_zero_label: bool = False) -> tuple[Scores, list[dict[str, Any]]]:
    """Dataset scores of (id, prediction, ground truth) path triples (counts summed over images) and
    one CSV row per image (``CSV_COLUMNS``), with progress on stderr."""
    total = None
    rows = []
    for image_id, pred_path, gt_path in progress(pairs, "evaluate"):
        pred = read_label(pred_path, preset, map_colours)
        gt = read_label(gt_path, preset, map_colours, reduce_zero_label=reduce_zero_label)
        counts = confusion_counts(pred, gt, preset.num_classes, pred_path, gt_path)
        total = counts if total is None else total + counts
        scores = Scores.from_confusion(counts)
        rows.append({"id": image_id, "prediction": pred_path, "ground_truth": gt_path,
                     "scored_pixels": scores.scored_pixels, "miou": f"{scores.miou:.6f}",
                     "pixel_accuracy": f"{scores.pixel_accuracy:.6f}",
                     "labelled_fraction": f"{scores.labelled_fraction:.6f}"})
    return Scores.from_confusion(total), rows


def per_image_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """The text of a CSV file with a header of ``CSV_COLUMNS`` and ``rows``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass
class Evaluation:
    """A dataset scored: its ``scores`` (counts summed over images), one CSV row per image (``CSV_COLUMNS``),
    and its ``report`` (see ``report``) over the classes ``class_names``."""

    scores: Scores
    rows: list[dict[str, Any]]
    report: dict[str, Any]
    class_names: Sequence[str]

    @classmethod
    def of_pairs(cls, pairs: Sequence[tuple[str, str, str]], preset: ClassPreset, map_colours: bool = False,
                 reduce_zero_label: bool = False) -> Evaluation:
        """Score (id, prediction, ground truth) path triples (see ``score_pairs``)."""
        scores, rows = score_pairs(pairs, preset, map_colours, reduce_zero_label)
        return cls(scores, rows, report(scores, preset.classes, len(pairs)), preset.classes)

    def write(self, json_path: str | None = None, csv_path: str | None = None, plot_path: str | None = None) -> None:
        """Write the report as JSON to ``json_path`` (unless it is '-', stdout, which is the caller's), the
        per-image rows as CSV to ``csv_path`` and a bar chart of per-class IoU to ``plot_path``, those given."""
        if json_path and json_path != "-":
            write_text(json_path, json.dumps(self.report, indent=1) + "\n")
        if csv_path:
            write_text(csv_path, per_image_csv(self.rows))
        if plot_path:
            plot_iou(plot_path, self.class_names, {"IoU": self.scores.iou.tolist()})

    def summary(self) -> str:
        """'N image(s), mIoU x%, y% of the pixels labelled'."""
        return (f"{len(self.rows)} image(s), mIoU {100 * self.scores.miou:.1f}%, "
                f"{100 * self.scores.labelled_fraction:.1f}% of the pixels labelled")
