"""``sesam evaluate``: score label maps against ground truth over a whole dataset."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from typing import Any, Iterable, Mapping

import click

from stages.io.atomic import write_text
from stages.errors import SesamInputError
from stages.evaluate import (Scores, compare_reports, confusion_counts, format_comparison, format_report,
                             load_report, plot_iou, report)
from stages.io.images import read_label
from stages.presets import ClassPreset
from stages.progress import format_duration, progress
from stages.records import IdList, Record, read_records, records_from_files, require

from .options import (classes_option, handle_errors, ids_option, inputs_argument, map_colours_option,
                      reduce_zero_label_option, strip_suffix_option)

log = logging.getLogger("sesam")

CSV_COLUMNS = ("id", "prediction", "ground_truth", "scored_pixels", "miou", "pixel_accuracy",
               "labelled_fraction")


def _index_by_id(records: Iterable[Record], key: str) -> dict[str, str]:
    """id -> path; two files with one id is an error naming both."""
    index: dict[str, str] = {}
    for rec in records:
        if rec["id"] in index:
            raise SesamInputError(rec[key], f"has the same id '{rec['id']}' as {index[rec['id']]}")
        index[rec["id"]] = rec[key]
    return index


def _pairs(records: Iterable[Record], pred_key: str, gt_key: str, gt_dir: str | None,
           strip_suffixes: tuple[str, ...], ids: IdList | None, allow_missing: bool) -> list[tuple[str, str, str]]:
    """(id, prediction path, ground-truth path) for every record, checked for mismatched ids."""
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
        raise click.ClickException("no label maps to evaluate (the input stream is empty)")
    if ground_truth is not None and not allow_missing:
        missing = sorted(set(ground_truth) - set(seen))
        if missing:
            shown = ", ".join(ground_truth[i] for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise SesamInputError(
                gt_dir, f"{len(missing)} ground-truth file(s) have no prediction: {shown} "
                        "(pass --allow-missing to score only the images that have one)")
    return pairs


def _csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _evaluate_pairs(pairs: list[tuple[str, str, str]], preset: ClassPreset, map_colours: bool,
                    reduce_zero_label: bool) -> tuple[Scores, list[dict[str, Any]]]:
    """Dataset scores (counts summed over images) and one CSV row per image."""
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


@click.command()
@inputs_argument
@click.option("--key", "pred_key", default="pseudo", show_default=True, metavar="KEY",
              help="Record key of the label maps to score (pseudo, weak, prediction, ...), for records on stdin.")
@click.option("--gt", "gt_dir", type=click.Path(file_okay=False),
              help="Directory of ground-truth PNGs, paired with the predictions by file stem. "
                   "Without it, each record's --gt-key names its ground truth.")
@click.option("--gt-key", default="gt", show_default=True, metavar="KEY", help="Record key of the ground truth.")
@strip_suffix_option
@ids_option
@classes_option
@map_colours_option
@reduce_zero_label_option
@click.option("--allow-missing", is_flag=True,
              help="Score only the images that have a prediction, instead of failing on ground-truth "
                   "files under --gt that have none.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the report as JSON ('-': on stdout, instead of the table).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write per-image mIoU, pixel accuracy and labelled fraction as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="Write a bar chart of per-class IoU.")
@click.option("--compare", nargs=2, type=click.Path(dir_okay=False), metavar="A.json B.json",
              help="Instead of scoring, compare two --json reports: per-class IoU and B - A.")
@handle_errors
def evaluate(inputs: tuple[str, ...], pred_key: str, gt_dir: str | None, gt_key: str,
             strip_suffixes: tuple[str, ...], ids: IdList | None, preset: ClassPreset, map_colours: bool,
             reduce_zero_label: bool, allow_missing: bool,
             json_path: str | None, csv_path: str | None, plot_path: str | None,
             compare: tuple[str, str] | None) -> None:
    """Score label maps (pseudo-labels, weak labels, predictions) against ground truth.

    Reports mIoU, per-class IoU, precision and recall, pixel accuracy, the fraction of pixels that
    carry a label, and the confusion matrix. Counts are summed over the dataset before dividing
    (mmsegmentation's convention); ground-truth 255 is not scored, a predicted 255 counts as wrong.
    The label maps come from files or directories (INPUTS) or from records on stdin (--key); their
    ground truth from --gt DIR (paired by file stem) or from each record's --gt-key; --ids FILE
    restricts both to a split. A sink: the table goes to stdout, records are not passed on.

    \b
    Example:
      sesam evaluate work/pseudo --gt data/SegmentationClass --json work/pseudo.json --plot work/pseudo.png
      sesam evaluate work/prediction --gt data/SegmentationClass --ids data/ImageSets/Segmentation/val.txt
      sesam select -o work/pseudo < work/masks.jsonl | sesam evaluate --key pseudo --gt-key gt
      sesam evaluate --compare work/baseline.json work/pseudo.json
    """
    if compare:
        if inputs:
            raise click.UsageError("--compare reads two reports; give no label maps with it")
        first, second = (load_report(path) for path in compare)
        rows = compare_reports(first, second, *compare)
        click.echo(format_comparison(rows, *compare))
        if plot_path:
            plot_iou(plot_path, first["classes"],
                     {os.path.basename(path): [rep["per_class"][name]["iou"] for name in rep["classes"]]
                      for path, rep in zip(compare, (first, second))})
        return
    start = time.monotonic()
    records = read_records(inputs, pred_key, strip_suffixes=strip_suffixes, suffixes=(".png",), ids=ids)
    pairs = _pairs(records, pred_key, gt_key, gt_dir, tuple(strip_suffixes), ids, allow_missing)
    scores, rows = _evaluate_pairs(pairs, preset, map_colours, reduce_zero_label)
    rep = report(scores, preset.classes, len(pairs))
    if json_path == "-":
        click.echo(json.dumps(rep, indent=1))
    else:
        click.echo(format_report(rep))
        if json_path:
            write_text(json_path, json.dumps(rep, indent=1) + "\n")
    if csv_path:
        write_text(csv_path, _csv_text(rows))
    if plot_path:
        plot_iou(plot_path, preset.classes, {"IoU": scores.iou.tolist()})
    log.info("evaluate: %d image(s), mIoU %.1f%%, %.1f%% of the pixels labelled, in %s", len(pairs),
             100 * scores.miou, 100 * scores.labelled_fraction, format_duration(time.monotonic() - start))
