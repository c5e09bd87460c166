"""Choose training defaults on CamVid train: fully supervised runs scored on a fixed held-out part of train.

The held-out part (``camvid_data.heldout_ids``: every fifth block of ten consecutive frames, 20%) is
never trained on; val is never looked at. Each ``--run NAME "OPTIONS"`` is one ``sesam train`` on the
rest of train with the ground truth as its only source (``--lambda-sam 0 --lambda-pl 0``), the
``--common`` options and its own, scored on the held-out part every ``--val-every`` iterations. At
``--scale 0.5`` (240x180 photos) a CPU measures in minutes what a GPU trains at full resolution.
Runs already finished in ``--work`` are not trained again (``--resume``). Prints, per run, the
held-out mIoU curve, the training speed (median images/s over its iterations) and the seconds its
iterations took (validation and start-up not counted).

Usage:
  python benchmarks/tune_train.py --data ../shared/camvid --work /tmp/tune --scale 0.5 \\
      --common "--batch-size 8 --crop-size 161 --iterations 600 --val-every 100" \\
      --run lr0.003 "--lr 0.003" --run lr0.01 "--lr 0.01"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from camvid_data import PRESET, evenly, find_split, heldout_ids, prepare_split  # noqa: E402
from sesam_runner import Runner, read_records, write_records  # noqa: E402


def curve(run_dir: str) -> tuple[list[tuple[int, float]], float, float]:
    """From a run's metrics.jsonl: the held-out mIoU (%) at each validation, the median images/s and the
    seconds spent in training iterations."""
    entries = read_records(os.path.join(run_dir, "metrics.jsonl"))
    points = [(e["iteration"], 100 * e["val_miou"]) for e in entries if "val_miou" in e]
    steps = [e for e in entries if "images_per_second" in e]
    return points, statistics.median(e["images_per_second"] for e in steps), sum(e["seconds"] for e in steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CamVid root (sesam's or the SegNet layout)")
    parser.add_argument("--work", required=True, help="work directory (data copies, runs)")
    parser.add_argument("--scale", type=float, default=1.0, help="downscale the photos by this factor")
    parser.add_argument("--train-limit", type=int, default=None, help="train on this many photos, spread evenly")
    parser.add_argument("--common", default="", help="sesam train options of every run")
    parser.add_argument("--run", nargs=2, action="append", metavar=("NAME", "OPTIONS"), required=True,
                        help="one run: a name and its own sesam train options")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    work = os.path.abspath(args.work)
    samples = find_split(args.data, "train")
    held = heldout_ids([s.id for s in samples])
    data = os.path.join(work, f"data-{args.scale:g}")
    train = prepare_split(evenly([s for s in samples if s.id not in held], args.train_limit), data, args.scale)
    heldout = prepare_split([s for s in samples if s.id in held], data, args.scale)
    train_file = write_records(os.path.join(work, "train.jsonl"), [{**r, "weak": r["gt"]} for r in train])
    heldout_file = write_records(os.path.join(work, "heldout.jsonl"), heldout)
    print(f"CamVid train at scale {args.scale:g}: {len(train)} photos to train on, {len(heldout)} held out",
          file=sys.stderr)
    sesam = Runner()
    results = {}
    for name, options in args.run:
        run_dir = os.path.join(work, "runs", name)
        sesam("train", "--records", train_file, "--val", heldout_file, "--classes", PRESET, "--lambda-sam", "0",
              "--lambda-pl", "0", "--checkpoint-every", "0", "--resume", *shlex.split(args.common),
              *shlex.split(options), "-o", run_dir, stdout=os.devnull)
        points, speed, seconds = curve(run_dir)
        results[name] = {"options": options, "heldout_miou": points, "images_per_second": speed,
                         "train_seconds": seconds}
    print(f"Held-out mIoU (%) on {len(heldout)} CamVid train photos (never trained on), full supervision, "
          f"{len(train)} training photos at scale {args.scale:g}; common options: {args.common}\n")
    iterations = sorted({it for r in results.values() for it, _ in r["heldout_miou"]})
    print("| run | options | " + " | ".join(f"it {it}" for it in iterations) + " | images/s | training s |")
    print("|---|---|" + "---:|" * (len(iterations) + 2))
    for name, result in results.items():
        scores = dict(result["heldout_miou"])
        cells = " | ".join(f"{scores[it]:.1f}" if it in scores else "" for it in iterations)
        print(f"| {name} | `{result['options']}` | {cells} | {result['images_per_second']:.1f} | "
              f"{result['train_seconds']:.0f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
