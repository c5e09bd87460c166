"""``sesam embed``: fill the embedding cache for a dataset, so later SAM stages never run the encoder."""

from __future__ import annotations

import click

from stages.io.images import IMAGE_SUFFIXES
from stages.records import read_records
from stages.sam.cache import EmbedStage

from .models import backend_from_options, cache_dir_option, sam_backend_options
from .options import (compose, global_flag, handle_errors, images_option, inputs_argument, keep_going_option,
                      shard_option, strip_suffix_option)


@click.command()
@compose(inputs_argument, images_option, strip_suffix_option, shard_option, keep_going_option)
@sam_backend_options
@cache_dir_option
@click.option("--recompute", is_flag=True, help="Encode every image again, even when its cached embedding is valid.")
@handle_errors
def embed(inputs, images_dir, strip_suffixes, shard, keep_going, cache, recompute, **backend_options) -> None:
    """Precompute SAM image embeddings into the cache.

    Reads records (each needs 'image') on stdin, or image files and directories as arguments. Each
    image is encoded once per model: a valid cached embedding (same model, same pixels) is reused,
    a stale or corrupt one is recomputed. Records pass through with the key 'embedding' (the cache
    file). Later `sesam sam-predict` and `sesam refine` runs with the same model and --cache-dir
    then never run the image encoder.

    \b
    Example:
      sesam embed data/JPEGImages > work/embedded.jsonl
      sesam embed --backend sam --sam-checkpoint sam_vit_h_4b8939.pth --device cuda data/JPEGImages
    """
    backend = backend_from_options(**backend_options)
    records = read_records(inputs, "image", images_dir, strip_suffixes, suffixes=IMAGE_SUFFIXES)
    stage = EmbedStage(cache, backend, params={}, overwrite=True, shard=shard, keep_going=keep_going,
                       verbose=global_flag("verbose"))
    stage.embed_all(records, recompute)
