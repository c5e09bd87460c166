"""Training-data throughput: how many images/s one process prepares for ``sesam train``.

What a loader process does per sample: look up (memory) or decode (disk) the photo and its label
maps and draw the augmentation; then the batch is padded together (collate). The augmentation itself
runs on the training device, on the whole batch (``augment_batch``); this script times it on the CPU
too, where it is the bound if the GPU is not the one running it. CamVid train photos (480x360), crop
321, batch 16, one torch thread, ``--batches`` batches after one untimed.

Usage: python benchmarks/bench_loader.py [--camvid ../shared/camvid] [--batches 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from camvid_data import PRESET, find_split  # noqa: E402
from stages.presets import get_preset  # noqa: E402
from stages.train.augment import augment_batch  # noqa: E402
from stages.train.data import ImageStore, TrainingImage, TrainingSet, collate_padded  # noqa: E402


def images_per_second(step, batches: int, batch_size: int) -> float:
    step(0)
    started = time.perf_counter()
    for index in range(1, batches + 1):
        step(index)
    return batches * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--camvid", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "camvid"))
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-size", type=int, default=321)
    args = parser.parse_args()
    torch.set_num_threads(1)
    samples = find_split(args.camvid, "train")
    images = [TrainingImage(s.id, s.photo, s.label, s.label) for s in samples]
    preset = get_preset(PRESET)
    started = time.perf_counter()
    memory = ImageStore(images, preset, budget_bytes=1 << 40)
    load_seconds = time.perf_counter() - started
    disk = ImageStore(images, preset, budget_bytes=0)
    size = args.batch_size

    def loader(store: ImageStore):
        dataset = TrainingSet(store, args.crop_size, (0.5, 2.0), seed=0)
        return lambda index: collate_padded([dataset[index * size + slot] for slot in range(size)])

    batch = loader(memory)(0)

    def augment(index: int) -> None:
        augment_batch(batch["photos"], batch["labels"], batch["sizes"], batch["augment"], args.crop_size)

    rows = [("loader, photos read from disk", images_per_second(loader(disk), args.batches, size)),
            ("loader, photos decoded into memory", images_per_second(loader(memory), args.batches, size)),
            ("augment_batch on the CPU", images_per_second(augment, args.batches, size))]
    print(f"CamVid train ({len(images)} photos, {memory.decoded_bytes / 2**20:.0f} MiB decoded in {load_seconds:.1f} s), "
          f"crop {args.crop_size}, batch {size}, 1 process, 1 torch thread:\n")
    print("| step | images/s |\n|---|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:.0f} |")


if __name__ == "__main__":
    main()
