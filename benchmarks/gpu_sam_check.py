"""The Python steps of benchmarks/gpu_sam_check.sh (see there).

    photos CARRY WORK VARIANTS       write WORK/{images,labels}: each carried photo and label in VARIANTS
                                     variants (flips, brightness shifts: distinct pixels, same geometry)
    count PROMPTS_DIR                print how many prompt sets the photos have
    parity IMAGES PROMPTS DEVICE N K torch on DEVICE vs torch on CPU vs onnxruntime, on K photos (every N-th)
    rate LABEL N ONE MANY CACHED     print images/s from the seconds for 1 image and for N, cold and cached
"""

from __future__ import annotations

import os
import sys

import numpy as np


def photos(carry: str, work: str, variants: int) -> None:
    from PIL import Image

    flips = [lambda a: a, np.fliplr, np.flipud, lambda a: np.flipud(np.fliplr(a))]
    for kind in ("images", "labels"):
        os.makedirs(os.path.join(work, kind), exist_ok=True)
    for name in sorted(os.listdir(os.path.join(carry, "images"))):
        image = np.asarray(Image.open(os.path.join(carry, "images", name)).convert("RGB"))
        label = Image.open(os.path.join(carry, "labels", name))
        for variant in range(variants):
            flip, shift = flips[variant % 4], 12 * (variant // 4)
            stem = f"{os.path.splitext(name)[0]}_v{variant}"
            pixels = np.clip(flip(image).astype(np.int16) + shift, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(work, "images", stem + ".png"))
            flipped = Image.fromarray(np.ascontiguousarray(flip(np.asarray(label))))
            if label.mode == "P":
                flipped.putpalette(label.getpalette())
            flipped.save(os.path.join(work, "labels", stem + ".png"))


def count(prompts_dir: str) -> None:
    from stages.io.prompts import read_prompts

    counts = [read_prompts(os.path.join(prompts_dir, name)).count for name in sorted(os.listdir(prompts_dir))]
    print(f"prompt sets per photo: median {int(np.median(counts))}, min {min(counts)}, max {max(counts)}, "
          f"total {sum(counts)}")


def decode(backend, embedding, prompts) -> tuple[np.ndarray, np.ndarray]:
    from stages.sam.predict import decode_in_chunks, prompt_batch

    batch = prompt_batch(backend, prompts, embedding)
    masks = np.zeros((len(batch), 4, *embedding.original_size), bool)
    iou = np.zeros((len(batch), 4), np.float32)
    for chunk, chunk_masks, chunk_iou, _ in decode_in_chunks(backend, embedding, batch, slice(None)):
        masks[chunk], iou[chunk] = chunk_masks, chunk_iou
    return masks, iou


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    union = (a | b).sum((-2, -1))
    return np.where(union > 0, (a & b).sum((-2, -1)) / np.maximum(union, 1), 1.0)


def parity(images: str, prompts_dir: str, device: str, step: int, photos: int) -> None:
    from stages.io.images import read_image
    from stages.io.prompts import read_prompts
    from stages.sam import load_backend

    backends = {device: load_backend("torch", device=device), "cpu": load_backend("torch", device="cpu"),
                "onnx": load_backend("onnx", device="cpu")}
    for name in sorted(os.listdir(images))[: photos * step: step]:
        image = read_image(os.path.join(images, name))
        prompts = read_prompts(os.path.join(prompts_dir, os.path.splitext(name)[0] + ".h5"))
        embeddings = {key: backend.embed(image) for key, backend in backends.items()}
        results = {key: decode(backend, embeddings[key], prompts) for key, backend in backends.items()}
        for other in ("cpu", "onnx"):
            if other == device:
                continue
            print(f"{name}: {device} vs {other:4s} embedding max|diff| "
                  f"{np.abs(embeddings[device].features - embeddings[other].features).max():.2e}, mask IoU min "
                  f"{mask_iou(results[device][0], results[other][0]).min():.4f}, predicted IoU max|diff| "
                  f"{np.abs(results[device][1] - results[other][1]).max():.2e} ({prompts.count} sets)")


def rate(label: str, images: str, one: str, many: str, cached: str) -> None:
    count, one_s, many_s, cached_s = int(images), float(one), float(many), float(cached)
    print(f"{label:48s} cold {(count - 1) / (many_s - one_s):6.2f} images/s, cached "
          f"{(count - 1) / (cached_s - one_s):6.2f} images/s ({count} images; start-up and one image {one_s:.1f} s)")


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == "photos":
        photos(arguments[0], arguments[1], int(arguments[2]))
    elif command == "count":
        count(arguments[0])
    elif command == "parity":
        parity(arguments[0], arguments[1], arguments[2], int(arguments[3]), int(arguments[4]))
    elif command == "rate":
        rate(*arguments)
    else:
        sys.exit(__doc__)
