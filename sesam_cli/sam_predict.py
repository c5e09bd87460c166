"""``sesam sam-predict``: prompt sets (or a grid of points) -> SAM mask hypotheses, one HDF5 per image."""

from __future__ import annotations

import logging

import click

from stages.artifacts import provenance, write_h5
from stages.labels import IMAGE_SUFFIXES, read_image

from .models import backend_from_options, cache_dir_option, embedding_cache, sam_backend_options
from .options import handle_errors, per_image_options
from .stream import PerImageStage, read_records, require

log = logging.getLogger("sesam")


@click.command("sam-predict")
@per_image_options
@sam_backend_options
@cache_dir_option
@click.option("--no-cache", is_flag=True, help="Encode every image afresh and store nothing in the embedding cache.")
@click.option("--multimask/--single", default=True, show_default=True,
              help="Keep all 4 hypotheses (0: single-mask output, 1-3: small to large), or hypothesis 0 only.")
@click.option("--iterative", is_flag=True,
              help="Decode twice, feeding the best low-res mask of the first pass back with the prompts.")
@click.option("--grid", type=click.IntRange(min=1), default=None, metavar="N",
              help="Automatic mode: prompt an N x N grid of points instead of prompt sets (records need only 'image').")
@click.option("--pred-iou-thresh", type=float, default=0.88, show_default=True,
              help="--grid: keep masks whose predicted IoU exceeds this.")
@click.option("--stability-thresh", type=float, default=0.95, show_default=True,
              help="--grid: keep masks whose stability score reaches this.")
@click.option("--nms-thresh", type=float, default=0.7, show_default=True,
              help="--grid: box IoU above which the lower-scored of two masks is dropped.")
@handle_errors
def sam_predict(inputs, images_dir, strip_suffixes, output_dir, overwrite, shard, keep_going, cache_dir, no_cache,
                multimask, iterative, grid, pred_iou_thresh, stability_thresh, nms_thresh, **backend_options) -> None:
    """Run SAM on each image's prompt sets: mask hypotheses with predicted IoU and stability.

    Reads records with 'prompts' (from `sesam sample-prompts`) and 'image' on stdin, or prompts
    HDF5 files as arguments with --images. Writes one HDF5 per image (key 'masks'): for each prompt
    set its mask hypotheses at image size. Each image is encoded once per model and cached (see
    `sesam embed`); prompts are (x, y) pixels. With --grid N, no prompts are needed: an N x N grid
    of clicks yields every confident, stable mask after box NMS (SAM's automatic mask generator),
    one per set, with component and class -1; inputs are then records with 'image' or image files.

    \b
    Example:
      sesam sample-prompts -o work/prompts work/components | sesam sam-predict -o work/masks > work/masks.jsonl
      sesam sam-predict --single --iterative --images data/JPEGImages -o work/masks work/prompts
      sesam sam-predict --grid 32 -o work/auto data/JPEGImages
    """
    from stages.sam import automatic_masks, predict_prompt_sets, read_prompt_sets

    if grid and iterative:
        raise click.UsageError("--iterative refines prompt sets; it does not apply to --grid")
    backend = backend_from_options(**backend_options)
    cache = None if no_cache else embedding_cache(cache_dir)
    params = {"model": backend.identity.as_dict(), "multimask": multimask}
    if grid:
        params.update(grid=grid, pred_iou_thresh=pred_iou_thresh, stability_thresh=stability_thresh,
                      nms_thresh=nms_thresh)
        records = read_records(inputs, "image", images_dir, strip_suffixes, suffixes=IMAGE_SUFFIXES)
        needed = ("image",)
    else:
        params.update(iterative=iterative)
        records = read_records(inputs, "prompts", images_dir, strip_suffixes, suffixes=(".h5",))
        needed = ("image", "prompts")

    def make(record: dict, out: str) -> None:
        require(record, *needed)
        image = read_image(record["image"])
        embedding = backend.embed(image) if cache is None else cache.get_or_compute(backend, image)
        if grid:
            arrays = automatic_masks(backend, embedding, grid, multimask, pred_iou_thresh, stability_thresh, nms_thresh)
        else:
            prompts = read_prompt_sets(record["prompts"], image.shape[:2])
            arrays = predict_prompt_sets(backend, embedding, prompts, multimask, iterative, record["prompts"])
        attrs = provenance("sam-predict", params, record, backend.identity.as_dict())
        attrs.update(mode="auto" if grid else "prompts", multimask=multimask)
        write_h5(out, arrays, attrs)

    stage = PerImageStage("sam-predict", "masks", output_dir, ".h5", params, overwrite, shard, keep_going)
    stage.run(records, make)
    if cache is not None:
        log.info("sam-predict: %d images encoded, %d embeddings reused from the cache", cache.computed, cache.reused)
