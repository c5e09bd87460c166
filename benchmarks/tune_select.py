"""The measurements that chose the defaults of ``select --strategy sesam``, on CamVid train only.

On the tuning subset of benchmarks/bench_quality.py (``--split train``: every 8th CamVid train photo,
46 photos), with the same weak labels, prompts and SAM masks (the ``--masks-cache`` of
bench_quality.py makes a rerun take minutes), each row changes one setting of the defaults and
prints the pseudo-label mIoU (unlabelled pixels wrong) per weak-label kind, next to Jiang & Yang's
recipe for scale; the ``boxes:`` rows take the defaults' choice apart on boxes (whether masks vote
only inside their box, and how the boxes' undecided pixels are filled); the last rows change the
prompts: the negatives of skeleton points and boxes, and the boxes' iterative input. ``--box-jitter F``
scores the same rows on boxes that are not pixel-tight (each side moved by up to F of the box's
size, ``simulate --box-jitter``): the ``box_margin`` rows are for them. ``--click-depth F`` places
clicks as ``simulate --click-depth`` does (0: anywhere in a region, near its edges too).
``--background-proxy`` scores the ``--unclaimed`` rules and the overlap penalties on a stand-in for
presets with a background class: CamVid's stuff classes (sky, building, road, sidewalk, tree, fence)
merged into one background class, its things (pole, sign, car, pedestrian, bicyclist) kept; the same
weak labels and masks, classes mapped.

Usage: .venv/bin/python benchmarks/tune_select.py --masks-cache DIR [--limit N] [--kinds K,...] [--box-jitter F]
       [--click-depth F] [--background-proxy]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np

from bench_quality import (DEFAULT_CAMVID, KINDS, RECIPES, MaskCache, Recipe, add_simulate_options, camvid_examples,
                           contexts, simulate_options, weak_alone)
from stages.evaluate import Scores, confusion_counts
from stages.sam.cache import EmbeddingCache
from stages.sam.models import embeddings_dir
from stages.sam.registry import load_backend
from stages.select import (SesamParams, VoteParams, choose_sesam, fill_in_boxes, merge_kept, select_fixed,
                           select_sesam, set_boxes)

DEFAULTS, VOTES = SesamParams(), VoteParams()
VARIANTS = {
    "defaults": (DEFAULTS, VOTES, "auto"),
    "other_tolerance 0.1": (replace(DEFAULTS, other_tolerance=0.1), VOTES, "auto"),
    "other_tolerance 0.3": (replace(DEFAULTS, other_tolerance=0.3), VOTES, "auto"),
    "other_limit 0.4 (drop a click's set over one other click)": (replace(DEFAULTS, other_limit=0.4), VOTES, "auto"),
    "other_limit 1 (always keep the least mixed)": (replace(DEFAULTS, other_limit=1.0), VOTES, "auto"),
    "tie_margin 0.02": (replace(DEFAULTS, tie_margin=0.02), VOTES, "auto"),
    "tie_margin 0.1": (replace(DEFAULTS, tie_margin=0.1), VOTES, "auto"),
    "overlap_penalty 3": (replace(DEFAULTS, overlap_penalty=3.0), VOTES, "auto"),
    "overlap_penalty 10 (the earlier default)": (replace(DEFAULTS, overlap_penalty=10.0), VOTES, "auto"),
    "no joint settling (highest predicted IoU)": (replace(DEFAULTS, settle_passes=0), VOTES, "auto"),
    "size_exponent 0 (votes by predicted IoU only)": (DEFAULTS, replace(VOTES, size_exponent=0.0), "auto"),
    "size_exponent 0.5": (DEFAULTS, replace(VOTES, size_exponent=0.5), "auto"),
    "min_vote_share 0.4": (DEFAULTS, replace(VOTES, min_vote_share=0.4), "auto"),
    "min_vote_share 0.6": (DEFAULTS, replace(VOTES, min_vote_share=0.6), "auto"),
    "unclaimed nearest": (DEFAULTS, VOTES, "nearest"),
    "box_margin 0.05": (replace(DEFAULTS, box_margin=0.05), VOTES, "auto"),
    "box_margin 0.1 (loose boxes)": (replace(DEFAULTS, box_margin=0.1), VOTES, "auto"),
}
BOX_MERGES = ("boxes: votes not clipped to the box, undecided 255", "boxes: clipped, undecided 255",
              "boxes: clipped, the nearest boxed class (no other hypotheses' votes)",
              "boxes: clipped, the smallest box's class (as the weak label alone)")
"""Rows that merge the defaults' choice on boxes otherwise (other kinds: as the defaults)."""
PROMPTING = {
    "skeleton negatives 0 (sample-prompts --negatives 0)": Recipe("skeleton", negatives=0),
    "skeleton negatives 2": Recipe("skeleton", negatives=2),
    "skeleton negatives 5": Recipe("skeleton", negatives=5),
    "box negatives 5 (the 5 nearest other-class box centres)": Recipe("skeleton", box_negatives=5),
    "boxes iterative (sam-predict --iterative)": Recipe("skeleton", box_iterative=True),
}
"""Rows that change how SAM is prompted (new SAM outputs, selection defaults); a row for the
skeleton's negatives leaves boxes as they are, and the other way round."""
PROXY_UNCLAIMED = ("ignore", "background", "nearest")
PROXY_VARIANTS = ("overlap_penalty 3", "overlap_penalty 10 (the earlier default)")
"""The VARIANTS rows the background proxy scores too (select's default ``--unclaimed``)."""
STUFF = ("sky", "building", "road", "sidewalk", "tree", "fence")


def proxy_lookup(classes: tuple[str, ...]) -> np.ndarray:
    """256-entry table: CamVid class -> 0 (background: stuff) or 1.. (things, in order); 255 stays."""
    things = [name for name in classes if name not in STUFF]
    table = np.full(256, 255, np.uint8)
    for index, name in enumerate(classes):
        table[index] = 0 if name in STUFF else 1 + things.index(name)
    return table


def box_merges(data: dict[str, np.ndarray], ctx) -> dict[str, np.ndarray]:
    """BOX_MERGES row -> the pseudo-label of the defaults' choice merged as the row says (no background);
    without boxes, every row is the defaults' merge with undecided pixels left 255."""
    kept = choose_sesam(data["masks"], data["iou_predictions"], data["set_class"], data["set_component"], ctx.weak,
                        ctx.components.component_map, DEFAULTS, ctx.boxes)
    boxes = None if ctx.boxes is None else set_boxes(ctx.boxes, data["set_component"], ctx.weak.shape)

    def merged(set_box: np.ndarray | None) -> np.ndarray:
        return merge_kept(data["masks"], data["iou_predictions"], data["set_class"], kept, ctx.weak, VOTES, "ignore",
                          set_box=set_box).label

    clipped = merged(boxes)
    if boxes is None:
        return dict.fromkeys(BOX_MERGES, clipped)
    smallest_box = np.where(clipped == 255, weak_alone(ctx.components, ctx.weak), clipped).astype(np.uint8)
    return dict(zip(BOX_MERGES, (merged(None), clipped, fill_in_boxes(clipped, boxes, data["set_class"]),
                                 smallest_box)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--camvid", default=DEFAULT_CAMVID, help="CamVid root (train/, val/)")
    parser.add_argument("--masks-cache", default=None, help="bench_quality.py's SAM output cache")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated weak-label kinds")
    parser.add_argument("--limit", type=int, default=None, help="at most N photos (quick runs)")
    add_simulate_options(parser)
    parser.add_argument("--background-proxy", action="store_true",
                        help="score the --unclaimed rules and the overlap penalties with CamVid's stuff merged into "
                             "a background class")
    args = parser.parse_args()
    start = time.perf_counter()
    kinds = tuple(args.kinds.split(","))
    backend = load_backend("onnx", device="cpu")
    cache = MaskCache(args.masks_cache, backend.identity.sha256)
    embeddings = EmbeddingCache(embeddings_dir())
    examples = camvid_examples(args.camvid, "train")[:args.limit]
    if args.background_proxy:
        rows = [(row, unclaimed) for row in ("naive", "jiang", "sesam") for unclaimed in PROXY_UNCLAIMED]
        rows += [(row, "auto") for row in PROXY_VARIANTS]
    else:
        rows = [(row, "auto") for row in ["jiang", *VARIANTS, *BOX_MERGES, *PROMPTING]]
    recipes = RECIPES if args.background_proxy else {**RECIPES, **PROMPTING}
    counts: dict = {}
    for index, example in enumerate(examples, start=1):
        for kind, ctx in contexts(example, kinds, backend, embeddings, cache, "ignore", recipes,
                                  simulate_options(args)):
            gt, weak, sam, background, num_classes = ctx.gt, ctx.weak, ctx.sam, None, example.preset.num_classes
            if args.background_proxy:
                table = proxy_lookup(example.preset.classes)
                gt, weak, background = table[gt], table[weak], 0
                num_classes = 1 + len(example.preset.classes) - len(STUFF)
                sam = {row: {**data, "set_class": table[data["set_class"]].astype(np.int32)}
                       for row, data in sam.items()}
            merges = {} if args.background_proxy else box_merges(sam["sesam"], ctx)
            for row, unclaimed in rows:
                fill = {"unclaimed": unclaimed, "background_class": background}
                if row in merges:
                    label = merges[row]
                elif row in ("naive", "jiang"):
                    data = sam[row]
                    label = select_fixed(data["masks"], data["iou_predictions"], data["set_class"], weak,
                                         0 if row == "naive" else 3, **fill).label
                else:
                    params, votes, fill["unclaimed"] = (VARIANTS[row] if row in VARIANTS
                                                        else (DEFAULTS, VOTES, unclaimed))
                    data = sam[row if row in PROMPTING else "sesam"]
                    label = select_sesam(data["masks"], data["iou_predictions"], data["set_class"],
                                         data["set_component"], weak, ctx.components.component_map, params,
                                         ctx.boxes, votes=votes, **fill).label
                key = (kind, row, unclaimed)
                counts[key] = counts.get(key, 0) + confusion_counts(label, gt, num_classes)
        print(f"{index}/{len(examples)} {example.name} ({time.perf_counter() - start:.0f} s)", file=sys.stderr,
              flush=True)
    title = "background proxy: --unclaimed, overlap penalties" if args.background_proxy else "one setting changed"
    print(f"\nCamVid train, tuning subset ({len(examples)} photos), {title}: mIoU %\n")
    print("| row | " + " | ".join(kinds) + " |\n|---|" + "---:|" * len(kinds))
    for row, unclaimed in rows:
        name = f"{row}, {unclaimed}" if args.background_proxy and row in ("naive", "jiang", "sesam") else row
        cells = " | ".join(f"{100 * Scores.from_confusion(counts[(k, row, unclaimed)]).miou:.1f}" for k in kinds)
        print(f"| {name} | {cells} |")
    print(f"\n{time.perf_counter() - start:.0f} s; command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")


if __name__ == "__main__":
    main()
