"""Benchmark `sesam decompose` + `sesam sample-prompts` (skeleton strategy).

1. Per-image time of the library calls ``decompose`` + ``sample_prompts(strategy="skeleton")`` on a
   synthetic 1024x2048 weak label with about 100 components (blobs, rings, C shapes, thin strokes,
   several classes), on one core (OMP/MKL/OpenBLAS threads = 1). Target: < 0.2 s.
2. The CLI pipeline ``sesam decompose | sesam sample-prompts`` run as subprocesses over a stream of
   10 records and of ``--images`` records (default 1,000; all point to the same weak PNG under
   distinct ids): wall time per image and the peak RSS of each process (from ``os.wait4``).
   Target: the same peak memory for both streams.

Usage: .venv/bin/python benchmarks/bench_decompose_prompts.py [--images 1000] [--repeat 5] [--workdir DIR]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from skimage import draw  # noqa: E402

from stages.decompose import decompose  # noqa: E402
from stages.io.images import write_label  # noqa: E402
from stages.presets import get_preset  # noqa: E402
from stages.prompts import sample_prompts  # noqa: E402

HEIGHT, WIDTH = 1024, 2048
GRID_ROWS, GRID_COLS = 8, 13
SHAPES = ("blob", "ring", "stroke", "c_shape")
SESAM = [sys.executable, "-c", "from sesam_cli.main import cli; cli(prog_name='sesam')"]


def _stroke(label: np.ndarray, rows: np.ndarray, cols: np.ndarray, value: int, width: int) -> None:
    """Draw a polyline through (rows, cols), ``width`` px thick."""
    for r0, c0, r1, c1 in zip(rows[:-1], cols[:-1], rows[1:], cols[1:]):
        rr, cc = draw.line(int(r0), int(c0), int(r1), int(c1))
        for dr in range(-(width // 2), width - width // 2):
            label[np.clip(rr + dr, 0, HEIGHT - 1), cc] = value


def synthetic_weak_label(seed: int = 0) -> np.ndarray:
    """uint8 (1024, 2048): ~100 components in a grid of cells, one shape per cell, classes 0..6."""
    rng = np.random.default_rng(seed)
    label = np.full((HEIGHT, WIDTH), 255, np.uint8)
    cell_h, cell_w = HEIGHT // GRID_ROWS, WIDTH // GRID_COLS
    for cell in range(GRID_ROWS * GRID_COLS):
        top, left = (cell // GRID_COLS) * cell_h, (cell % GRID_COLS) * cell_w
        centre_r, centre_c = top + cell_h // 2, left + cell_w // 2
        value = int(rng.integers(0, 7))
        shape = SHAPES[cell % len(SHAPES)]
        radius_r, radius_c = rng.uniform(0.25, 0.45) * cell_h, rng.uniform(0.25, 0.45) * cell_w
        if shape == "blob":
            rr, cc = draw.ellipse(centre_r, centre_c, radius_r, radius_c, shape=label.shape,
                                  rotation=rng.uniform(0, np.pi))
            label[rr, cc] = value
        elif shape in ("ring", "c_shape"):
            rr, cc = draw.ellipse(centre_r, centre_c, radius_r, radius_c, shape=label.shape)
            inner = ((rr - centre_r) / (radius_r * 0.7)) ** 2 + ((cc - centre_c) / (radius_c * 0.7)) ** 2 > 1
            if shape == "c_shape":
                inner &= cc < centre_c + radius_c * 0.3
            label[rr[inner], cc[inner]] = value
        else:
            cols = np.linspace(left + 5, left + cell_w - 5, 12)
            rows = centre_r + radius_r * np.sin(np.linspace(0, rng.uniform(2, 6), 12))
            _stroke(label, rows, cols, value, width=3)
    return label


def time_library(label: np.ndarray, repeat: int) -> None:
    decompose_times, prompt_times = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        components = decompose(label)
        middle = time.perf_counter()
        prompts = sample_prompts(components, "skeleton")
        decompose_times.append(middle - start)
        prompt_times.append(time.perf_counter() - middle)
    totals = np.add(decompose_times, prompt_times)
    print(f"synthetic weak label {WIDTH}x{HEIGHT}: {components.count} components, "
          f"{len(prompts.points)} skeleton points")
    print(f"library, 1 thread, over {repeat} runs: decompose median {np.median(decompose_times):.3f} s, "
          f"sample-prompts (skeleton) median {np.median(prompt_times):.3f} s; together median "
          f"{np.median(totals):.3f} s, min {totals.min():.3f} s per image (target < 0.2 s)")


def run_pipeline(workdir: str, weak_png: str, images: int) -> tuple[float, int, int]:
    """Run ``sesam decompose | sesam sample-prompts`` on ``images`` records; returns
    (wall seconds, peak RSS KiB of decompose, peak RSS KiB of sample-prompts)."""
    run_dir = os.path.join(workdir, f"run{images}")
    records = os.path.join(run_dir, "records.jsonl")
    os.makedirs(run_dir, exist_ok=True)
    with open(records, "w", encoding="utf-8") as handle:
        for index in range(images):
            handle.write(json.dumps({"id": f"bench_{index:05d}", "weak": weak_png}) + "\n")
    start = time.perf_counter()
    with open(records, encoding="utf-8") as stdin, open(os.devnull, "w") as devnull:
        first = subprocess.Popen(SESAM + ["-q", "decompose", "-o", os.path.join(run_dir, "components")],
                                 stdin=stdin, stdout=subprocess.PIPE)
        second = subprocess.Popen(SESAM + ["-q", "sample-prompts", "-o", os.path.join(run_dir, "prompts")],
                                  stdin=first.stdout, stdout=devnull)
        first.stdout.close()
        peaks = []
        for process in (first, second):
            _pid, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode:
                raise SystemExit(f"pipeline failed: exit {process.returncode}")
            peaks.append(usage.ru_maxrss)
    return time.perf_counter() - start, peaks[0], peaks[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="records in the long stream (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="library timing repeats (default 5)")
    parser.add_argument("--workdir", help="where to write artifacts (default: a temporary directory)")
    args = parser.parse_args()

    print("load average (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
          + f" on {os.cpu_count()} cores")
    label = synthetic_weak_label()
    time_library(label, args.repeat)

    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        weak_png = os.path.join(workdir, "weak.png")
        write_label(weak_png, label, get_preset("voc"))
        print("CLI pipeline 'sesam decompose | sesam sample-prompts' (1 thread per process):")
        for images in sorted({10, args.images}):
            wall, rss_decompose, rss_prompts = run_pipeline(workdir, weak_png, images)
            print(f"  {images:5d} records: {wall / images:.3f} s per image ({wall:.1f} s in all); peak RSS "
                  f"decompose {rss_decompose / 1024:.0f} MiB, sample-prompts {rss_prompts / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
