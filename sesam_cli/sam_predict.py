"""``sesam sam-predict``: prompt sets (or a grid of points) -> SAM mask hypotheses, one HDF5 per image."""

from __future__ import annotations

import click

from stages.io.masks import STAGE
from stages.per_image import PerImageStream
from stages.sam.auto import NMS_THRESH, PRED_IOU_THRESH, STABILITY_THRESH

from .models import backend_from_options, cache_dir_option, sam_backend_options
from .options import handle_errors, per_image_command


@click.command("sam-predict")
@per_image_command
@sam_backend_options
@cache_dir_option
@click.option("--no-cache", is_flag=True, help="Encode every image afresh and store nothing in the embedding cache.")
@click.option("--multimask/--single", default=True, show_default=True,
              help="Keep all 4 hypotheses (0: single-mask output, 1-3: small to large), or hypothesis 0 only.")
@click.option("--iterative", is_flag=True,
              help="Decode twice, feeding the best low-res mask of the first pass back with the prompts.")
@click.option("--grid", type=click.IntRange(min=1), default=None, metavar="N",
              help="Automatic mode: prompt an N x N grid of points instead of prompt sets (records need only 'image').")
@click.option("--pred-iou-thresh", type=float, default=PRED_IOU_THRESH, show_default=True,
              help="--grid: keep masks whose predicted IoU exceeds this.")
@click.option("--stability-thresh", type=float, default=STABILITY_THRESH, show_default=True,
              help="--grid: keep masks whose stability score reaches this.")
@click.option("--nms-thresh", type=float, default=NMS_THRESH, show_default=True,
              help="--grid: box IoU above which the lower-scored of two masks is dropped.")
@click.option("--batch-images", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Encode up to N uncached images per encoder call (e.g. 8 on a GPU); the next N images are "
                   "read in a background thread meanwhile.")
@handle_errors
def sam_predict(stream: PerImageStream, cache, no_cache, multimask, iterative, grid, pred_iou_thresh,
                stability_thresh, nms_thresh, batch_images, **backend_options) -> None:
    """Run SAM on each image's prompt sets: mask hypotheses with predicted IoU and stability.

    Reads records with 'prompts' (from `sesam sample-prompts`) and 'image' on stdin, or prompts
    HDF5 files as arguments with --images. Writes one HDF5 per image (key 'masks'): for each prompt
    set its mask hypotheses at image size. Each image is encoded once per model and cached (see
    `sesam embed`); prompts are (x, y) pixels. With --grid N, no prompts are needed: an N x N grid
    of clicks yields every confident, stable mask after box NMS (SAM's automatic mask generator),
    one per set, with component and class -1; inputs are then records with 'image' or image files.

    The default backend (auto) is the default model in PyTorch on a CUDA device, decoding all
    prompt sets of one length in one call, and onnxruntime on CPU.

    \b
    Example:
      sesam sample-prompts -o work/prompts work/components | sesam sam-predict -o work/masks > work/masks.jsonl
      sesam sam-predict --single --iterative --images data/JPEGImages -o work/masks work/prompts
      sesam sam-predict --grid 32 -o work/auto data/JPEGImages
      sesam sam-predict --device cuda --batch-images 8 -o work/masks < work/prompts.jsonl > work/masks.jsonl
    """
    from stages.sam.mask_predictor import MaskPredictor

    if grid and iterative:
        raise click.UsageError("--iterative refines prompt sets; it does not apply to --grid")
    predictor = MaskPredictor(backend_from_options(**backend_options), None if no_cache else cache,
                              multimask, iterative, grid, pred_iou_thresh, stability_thresh, nms_thresh)
    records = stream.records(*predictor.inputs())
    predictor.run(stream.stage(STAGE, "masks", ".h5", predictor.settings()), records, batch_images)
