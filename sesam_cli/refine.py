"""``sesam refine``: predict with a trained network, and turn the predictions into SAM pseudo-labels."""

from __future__ import annotations

import click

from stages.io.images import IMAGE_SUFFIXES
from stages.per_image import PerImageStream
from stages.records import Record
from stages.refine import UNCLAIMED, ImageRefiner, Networks, RefineParams, refine_rounds, retrainer
from stages.train import WEIGHTS

from .models import backend_from_options, cache_dir_option, sam_model_options
from .options import classes_option, handle_errors, per_image_command
from .training import run_trainer

DEFAULTS = RefineParams()


@click.command(short_help="Predict with a trained network and refine its predictions with SAM.")
@per_image_command
@classes_option
@click.option("--checkpoint", "checkpoint", type=click.Path(dir_okay=False),
              help="The trained network (sesam train's last.pt) [default: each record's 'checkpoint'].")
@click.option("--weights", type=click.Choice(WEIGHTS), default=WEIGHTS[0], show_default=True,
              help="Predict with the EMA teacher or the student of the checkpoint.")
@click.option("--window", type=click.IntRange(min=16), default=None,
              help="Predict in sliding windows of this size (default: the whole image at once).")
@click.option("--stride", type=click.IntRange(min=1), default=None, help="Window stride [default: 2/3 window].")
@click.option("--predict-only", is_flag=True,
              help="Only write predictions and confidences (records need only 'image'); no SAM.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=DEFAULTS.min_confidence, show_default=True,
              help="Prediction pixels less confident than this are not prompted.")
@click.option("--min-area", type=click.FloatRange(0, 1), default=DEFAULTS.min_area, show_default=True,
              help="Prediction components smaller than this fraction of the image are not prompted.")
@click.option("--spacing", type=click.FloatRange(min=1), default=DEFAULTS.spacing, show_default=True,
              help="Skeleton prompt spacing in pixels.")
@click.option("--max-points", type=click.IntRange(min=1), default=DEFAULTS.max_points, show_default=True,
              help="Prompts per component.")
@click.option("--unclaimed", type=click.Choice(UNCLAIMED), default=DEFAULTS.unclaimed, show_default=True,
              help="Pixels no SAM mask decides: 255, or the prediction's class.")
@sam_model_options
@cache_dir_option
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Refine, retrain (with the checkpoint's own training settings) and refine again, N rounds.")
@click.option("--workers", type=click.IntRange(min=0),
              help="--rounds: data-loading processes of the retraining [the device's default, as train].")
@handle_errors
def refine(stream: PerImageStream, preset, checkpoint, weights, window, stride, predict_only, min_confidence,
           min_area, spacing, max_points, unclaimed, backend, model, sam_checkpoint, model_type, device, cache,
           rounds, workers) -> None:
    """Predict with a trained network; refine the predictions with SAM into new pseudo-labels.

    Reads records with 'image' and 'weak' (or 'components') on stdin, or weak-label files with
    --images. For each image it writes, under -o DIR, the prediction (prediction/ID.png, preset
    palette, record key 'prediction'; `sesam evaluate` reads it) and its confidence
    (prediction_confidence/ID.png, uint8 = 255 × probability). Then the prediction is decomposed,
    prompted along skeletons, run through SAM (cached embeddings: no image is encoded twice) and
    selected by coverage of the prediction; the original weak labels keep priority. The refined
    pseudo-label (pseudo/ID.png) and its confidence (confidence/ID.png) replace the record's
    'pseudo' and 'confidence', so `sesam train` can read the records next.

    With --rounds N, one command runs N refinements with a retraining between each two (the
    checkpoint's own settings, in DIR/roundR/train); round R's files go to DIR/roundR/ and only the
    last round's records are written.

    \b
    Example:
      sesam train --records work/pseudo.jsonl -o work/train \\
        | sesam refine -o work/refine1 > work/refined1.jsonl
      sesam refine --checkpoint work/train/last.pt --predict-only -o work/val-pred < work/val.jsonl \\
        | sesam evaluate --key prediction
      sesam refine --checkpoint work/train/last.pt --rounds 3 -o work/rounds < work/pseudo.jsonl
    """
    if rounds > 1 and (predict_only or stream.shard):
        raise click.UsageError("--rounds retrains on all images: it does not combine with --predict-only or --shard")
    key, suffixes = ("image", IMAGE_SUFFIXES) if predict_only else ("weak", (".png", ".json"))
    records = stream.records(key, suffixes)
    networks = Networks(preset, weights, device)
    params = RefineParams(min_confidence, min_area, spacing, max_points, unclaimed=unclaimed)
    sam = None if predict_only else backend_from_options(backend, model, sam_checkpoint, model_type, device)
    refiner = ImageRefiner(networks, params, sam, None if predict_only else cache, window, stride)

    def retrain(records: list[Record], run_dir: str) -> str:
        trainer = retrainer(records, networks, records[0]["checkpoint"], run_dir, device, workers)
        return run_trainer(trainer, resume=True).checkpoint

    refine_rounds(refiner, stream, records, rounds, checkpoint, retrain)
