"""``sesam cam predict``: each image's class activation maps and CAM pseudo-label (a per-image stage)."""

from __future__ import annotations

import click

from stages.cam_predict import PRESENT, CamPredictor, TagSource, with_checkpoint
from stages.io.images import IMAGE_SUFFIXES
from stages.per_image import PerImageStream
from stages.presets import ClassPreset

from .options import classes_option, default_of, device_option, handle_errors, per_image_command


def _parse_scales(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of numbers") from None
    if not scales or min(scales) <= 0:
        raise click.BadParameter(f"'{value}': scales must be positive")
    return scales


tags_csv_option = click.option(
    "--tags-csv", type=click.Path(dir_okay=False), metavar="FILE",
    help="Image-level labels as CSV lines 'id,class,class,...' (names or indices) instead of the records' 'tags'.")


@click.command("predict", short_help="Class activation maps and CAM pseudo-labels, one per image.")
@per_image_command
@classes_option
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="A `sesam cam train` checkpoint [default: each record's 'cam_checkpoint'].")
@tags_csv_option
@click.option("--present", type=click.Choice(PRESENT), default=default_of(CamPredictor, "present"), show_default=True,
              help="The classes an image contains: its tags (records' 'tags' or --tags-csv), or those the "
                   "classifier predicts (probability >= --score-threshold).")
@click.option("--score-threshold", default=default_of(CamPredictor, "score_threshold"), show_default=True,
              type=click.FloatRange(0, 1),
              help="--present predicted: a class is present from this probability on.")
@click.option("--scales", default=",".join(str(s) for s in default_of(CamPredictor, "scales")), show_default=True,
              callback=_parse_scales,
              help="Comma-separated rescaling factors of the photo; the CAMs of all scales are summed.")
@click.option("--flip/--no-flip", default=default_of(CamPredictor, "flip"), show_default=True,
              help="Also add each scale's mirrored CAMs.")
@click.option("--bg-threshold", default=default_of(CamPredictor, "bg_threshold"), show_default=True,
              type=click.FloatRange(0, 1),
              help="Pixels whose highest CAM (each normalised to a maximum of 1) is below this are background "
                   "(presets with a background class) or 255.")
@device_option
@handle_errors
def predict_command(stream: PerImageStream, preset: ClassPreset, checkpoint: str | None, tags_csv: str | None,
                    present: str, score_threshold: float, scales: tuple[float, ...], flip: bool,
                    bg_threshold: float, device: str) -> None:
    """Compute each image's class activation maps (CAM) and its CAM pseudo-label.

    Reads records with 'image' (and 'tags' unless --present predicted or --tags-csv), or photos as
    INPUTS. For each class the image contains, the classifier's CAM (its 1x1 convolution's ReLU
    output) is summed over --scales and their mirror images, resized to the photo, and divided by
    its maximum. Writes per image, in OUTPUT:

    \b
      ID.h5   record key 'cam_scores': 'cams' float16 (C, H, W), 'cam_class' (C,),
              'class_scores' (K,) classifier probabilities, provenance (docs/FORMATS.md);
      ID.png  record key 'cam': the CAM pseudo-label, the present class of the highest CAM,
              background (or 255) where it is below --bg-threshold.

    An image whose artifacts are up to date (same options and --checkpoint, newer than the photo,
    the tags and the checkpoint) is skipped; after a change of --bg-threshold alone only the
    pseudo-labels are redone, from the stored CAMs.

    \b
    Example:
      sesam cam predict --checkpoint work/cam-train/last.pt --classes camvid -o work/cam < work/val-tags.jsonl \\
        | sesam decompose --key cam --classes camvid -o work/cam-components \\
        | sesam sample-prompts --strategy cam-peaks -o work/peaks \\
        | sesam sam-predict -o work/peak-masks \\
        | sesam select --reference --classes camvid -o work/pseudo > work/pseudo.jsonl
      sesam evaluate --key cam --classes camvid < work/pseudo.jsonl
    """
    predictor = CamPredictor(preset, TagSource(preset, tags_csv), device, present, score_threshold, scales, flip,
                             bg_threshold, checkpoint)
    predictor.run(stream, with_checkpoint(stream.records("image", IMAGE_SUFFIXES), checkpoint))
