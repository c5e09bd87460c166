"""Speed benchmark of ``sesam evaluate``: megapixels per second on one core.

1. ``stages.evaluate.confusion_counts`` (one np.bincount over gt * 256 + pred) over synthetic
   Cityscapes-sized label maps (1024x2048, 19 classes, blocky regions, 5% ignore), next to a plain
   per-class loop (per class: boolean masks of ground truth and prediction, intersection and union
   counts) on the same maps in the same run. Target: >= 100 Mpx/s.
2. The whole command, ``sesam evaluate DIR --gt DIR`` on the same maps written as PNGs (decoding
   and value checks included), for scale.

Times are CPU time of this process (``time.process_time``), so that other work on a shared
machine does not count.

Usage: .venv/bin/python benchmarks/bench_evaluate.py [--images 8] [--repeat 3]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from sesam_cli.main import cli  # noqa: E402
from stages.evaluate import Scores, confusion_counts  # noqa: E402
from stages.io.images import write_label  # noqa: E402
from stages.presets import get_preset  # noqa: E402

HEIGHT, WIDTH, CLASSES = 1024, 2048, 19


def blocky_map(rng: np.random.Generator) -> np.ndarray:
    """uint8 (1024, 2048): 32x32-pixel blocks of random classes."""
    blocks = rng.integers(0, CLASSES, (HEIGHT // 32, WIDTH // 32), dtype=np.uint8)
    return np.kron(blocks, np.ones((32, 32), np.uint8))


def synthetic_pairs(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(prediction, ground truth) pairs: the prediction agrees on about 70% of blocks."""
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(count):
        gt = blocky_map(rng)
        pred = np.where(rng.random(gt.shape) < 0.7, gt, blocky_map(rng)).astype(np.uint8)
        gt[rng.random(gt.shape) < 0.05] = 255
        pairs.append((pred, gt))
    return pairs


def per_class_loop(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """IoU per class by the plain loop: boolean masks per class, summed intersections and unions."""
    intersection = np.zeros(CLASSES)
    union = np.zeros(CLASSES)
    for pred, gt in pairs:
        valid = gt != 255
        for c in range(CLASSES):
            in_gt = (gt == c) & valid
            in_pred = (pred == c) & valid
            intersection[c] += np.count_nonzero(in_gt & in_pred)
            union[c] += np.count_nonzero(in_gt | in_pred)
    return intersection / np.maximum(union, 1)


def bincount_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    total = sum(confusion_counts(pred, gt, CLASSES) for pred, gt in pairs)
    return Scores.from_confusion(total).iou


def best_time(function, pairs, repeat: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeat):
        start = time.process_time()
        result = function(pairs)
        times.append(time.process_time() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pairs = synthetic_pairs(args.images)
    megapixels = args.images * HEIGHT * WIDTH / 1e6

    fast, fast_iou = best_time(bincount_scores, pairs, args.repeat)
    slow, slow_iou = best_time(per_class_loop, pairs, args.repeat)
    np.testing.assert_allclose(fast_iou, slow_iou)
    print(f"{args.images} label maps of {WIDTH}x{HEIGHT}, {CLASSES} classes ({megapixels:.1f} Mpx), "
          f"one core, CPU time, best of {args.repeat}:")
    print(f"  confusion_counts (bincount): {megapixels / fast:8.1f} Mpx/s")
    print(f"  plain per-class loop:        {megapixels / slow:8.1f} Mpx/s  ({slow / fast:.1f}x slower)")

    with tempfile.TemporaryDirectory() as root:
        preset = get_preset("cityscapes")
        for index, (pred, gt) in enumerate(pairs):
            write_label(os.path.join(root, "pred", f"{index}.png"), pred, preset)
            write_label(os.path.join(root, "gt", f"{index}.png"), gt, preset)
        start = time.process_time()
        arguments = ["-q", "evaluate", os.path.join(root, "pred"), "--gt", os.path.join(root, "gt"),
                     "--classes", "cityscapes"]
        result = CliRunner().invoke(cli, arguments)
        elapsed = time.process_time() - start
        assert result.exit_code == 0, result.output
    print(f"  sesam evaluate on PNGs (decode included): {megapixels / elapsed:.1f} Mpx/s")


if __name__ == "__main__":
    main()
