"""When does the EMA teacher become confident in a short run? Teacher and student side by side.

Trains the demo's CT network (``examples/run_demo.sh``: its records with weak labels and SAM
pseudo-labels, 200 iterations of batch 8, crop 128, all three sources) once per setting of learning
rate and EMA momentum, and every ``--every`` iterations measures, on a fixed batch of 8 weakly
augmented crops, the share of pixels where the teacher (the EMA, what the third loss term uses) and
the student (eval mode) are at least τ = 0.95 confident. Prints one table per setting.

Usage (after ``make demo``; one torch thread):
  python benchmarks/bench_teacher.py --records demo/ct/pseudo.jsonl --classes demo/data/liver/classes.txt \\
      --setting 0.001,0.99 --setting 0.01,0.99 --setting 0.001,0.9
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from stages.presets import get_preset
from stages.train.augment import augment_batch
from stages.train.data import ImageStore, TrainingSet, collate_padded, training_images
from stages.train.loop import TrainConfig, Trainer

PROBE_SEED = 99
"""The fixed probe batch is drawn with this seed, apart from the training runs' own draws."""


def confident_share(model: torch.nn.Module, views: dict[str, torch.Tensor], threshold: float) -> float:
    """The share of real pixels of the probe batch where ``model`` (eval mode) is at least ``threshold`` sure."""
    training = model.training
    model.eval()
    with torch.no_grad():
        confidence = model(views["teacher"])["out"].softmax(1).max(1).values
    model.train(training)
    return float(((confidence >= threshold) & views["valid"]).sum() / views["valid"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", required=True, help="training records with image, weak and pseudo")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--setting", action="append", required=True, metavar="LR,EMA",
                        help="a backbone learning rate and EMA momentum, e.g. 0.01,0.99 (repeatable)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = get_preset(args.classes)
    with open(args.records) as handle:
        images = training_images([json.loads(line) for line in handle if line.strip()], True, True)
    probe = TrainingSet(ImageStore(images, preset, 1 << 30), 128, (0.5, 2.0), PROBE_SEED)
    batch = collate_padded([probe[sample] for sample in range(8)])
    views = augment_batch(batch["photos"], batch["labels"], batch["sizes"], batch["augment"], 128)
    for setting in args.setting:
        lr, momentum = (float(v) for v in setting.split(","))
        config = TrainConfig(iterations=args.iterations, batch_size=8, crop_size=128, lr=lr, ema_momentum=momentum,
                             checkpoint_every=0)
        rows = []
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(config, images, preset, run_dir, device="cpu", workers=0)

            def probe_models(entry: dict) -> None:
                if "loss" in entry and entry["iteration"] % args.every == 0:
                    rows.append((entry["iteration"], entry["confident_fraction"],
                                 confident_share(trainer.teacher.model, views, config.pl_threshold),
                                 confident_share(trainer.model, views, config.pl_threshold)))

            trainer.run(on_iteration=probe_models)
        print(f"\nlr {lr:g}, EMA momentum {momentum:g}: share of pixels at least {config.pl_threshold} confident (%)\n")
        print("| iteration | teacher, training batch | teacher, probe | student, probe |\n|---:|---:|---:|---:|")
        for iteration, training, teacher, student in rows:
            print(f"| {iteration} | {100 * training:.1f} | {100 * teacher:.1f} | {100 * student:.1f} |")


if __name__ == "__main__":
    main()
