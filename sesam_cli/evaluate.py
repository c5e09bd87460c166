"""``sesam evaluate``: score label maps against ground truth over a whole dataset."""

from __future__ import annotations

import json
import logging
import time

import click

from stages.evaluate import (Evaluation, compare_reports, evaluation_pairs, format_comparison, format_report,
                             load_report, plot_comparison)
from stages.presets import ClassPreset
from stages.progress import format_duration
from stages.records import IdList, read_records

from .options import (classes_option, handle_errors, ids_option, inputs_argument, map_colours_option,
                      reduce_zero_label_option, strip_suffix_option)

log = logging.getLogger("sesam")


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
            plot_comparison(plot_path, dict(zip(compare, (first, second))))
        return
    start = time.monotonic()
    records = read_records(inputs, pred_key, strip_suffixes=strip_suffixes, suffixes=(".png",), ids=ids)
    pairs = evaluation_pairs(records, pred_key, gt_key, gt_dir, tuple(strip_suffixes), ids, allow_missing)
    evaluation = Evaluation.of_pairs(pairs, preset, map_colours, reduce_zero_label)
    click.echo(json.dumps(evaluation.report, indent=1) if json_path == "-" else format_report(evaluation.report))
    evaluation.write(json_path, csv_path, plot_path)
    log.info("evaluate: %s, in %s", evaluation.summary(), format_duration(time.monotonic() - start))
