"""CAM benchmark: pseudo-labels from image-level labels only, on CamVid and the liver CT slices.

Image-level labels ("tags") come from the ground truth (``stages.tags.tags_from_label``, the
``simulate --kind tags`` default: classes with at least 0.02% of the pixels). A multi-label classifier
(``stages.train.classifier``: MobileNetV2 with ImageNet weights, the classifier of ``sesam cam train``)
trains on the tags of one part; the CAMs of the other part are computed with its tags
(``class_activation_maps``, several scales and their mirror images) and scored. Rows, all on the
same images, mIoU with unlabelled (255) pixels counted wrong, as ``sesam evaluate``:

- ``majority class``: every pixel the class with the most pixels in the training part's ground
  truth (a floor that needs no label at all);
- ``cam``: the CAM pseudo-label alone (``sesam cam predict``'s PNG, ``--bg-threshold``);
- ``cam-merge``: Chen et al. 2023, SAM's automatic masks (``sam-predict --grid N``) merged with it
  (``select --strategy cam-merge``);
- ``cam-merge oracle``: the same masks, each given to the ground-truth class holding most of it
  (more than half; CAM pixels no mask claims keep their label): the ceiling of any assignment;
- ``cam-peaks``: WeakSAM's prompts (``decompose --key cam | sample-prompts --strategy cam-peaks``,
  default peak settings) through SAM (4 hypotheses) and ``select --reference`` (the sesam rule,
  the CAM pseudo-label as the dense reference);
- ``cam-peaks oracle``: the same prompt sets and masks, per set the hypothesis with the best IoU
  against the ground truth of its class, merged the same way;
- ``cam-peaks per peak``: ``cam-peaks`` with ``--group point`` (one prompt set per peak, WeakSAM's
  single-point prompts) instead of the default ``component`` (the peaks of one CAM component together).

Datasets (``--datasets``):

- ``camvid``: trained on CamVid train (367 photos), scored on val (``--every`` N-th sorted id);
  preset ``camvid`` (no background class: pixels below the threshold are 255);
- ``camvid-quadrants``: a diagnostic, the same but trained on the four quadrants of each train photo
  (1468 crops of 240x180, tags from each crop's ground truth): a crop holds fewer classes than a whole
  street photo, so its tags say more;
- ``liver``: the CT slices of ``stages.example_data.write_liver_example`` (128x128), trained on the
  93 train-part slices with "liver" / "tumour" presence, scored on the 32 held-out slices;
  classes background, liver, tumour.

``--tune`` instead scores the CAM label of every 4th CamVid *train* photo (sorted ids) at several
``--bg-threshold`` values: the default of ``sesam cam predict`` was chosen so, never on val.

Everything is cached under ``--work`` (classifier runs, CAMs, SAM masks) and SAM embeddings in the
shared cache, so a rerun only scores. Prints one table per dataset and the command line.

Usage: nice .venv/bin/python benchmarks/bench_cam.py --work /tmp/bench-cam [--datasets camvid,liver]
       [--every 2] [--tune]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bench_quality import oracle_kept
from stages import IGNORE_INDEX
from stages.io.artifacts import read_h5, write_h5
from stages.cam import cam_label, cam_peak_prompts, normalise_cams
from stages.io.cams import ClassActivationMaps, read_cams, write_cams
from stages.decompose import decompose
from stages.evaluate import Scores, confusion_counts
from stages.example_data import write_liver_example
from stages.io.images import read_image, read_label, write_label, write_png
from stages.presets import ClassPreset, get_preset, load_classes_file
from stages.sam.auto import automatic_masks
from stages.sam.cache import EmbeddingCache
from stages.sam.models import embeddings_dir
from stages.sam.predict import predict_prompt_sets
from stages.sam.registry import load_backend
from stages.select import (SesamParams, VoteParams, keep_reference, kept_classes, merge_votes, select_cam_merge, select_sesam_reference)
from stages.tags import class_outputs, tag_classes, tags_from_label
from stages.train.classifier import CamTrainConfig, CamTrainer, TaggedImage, class_activation_maps, load_classifier

ROWS = ("majority class", "cam", "cam-merge", "cam-merge oracle", "cam-peaks", "cam-peaks oracle",
        "cam-peaks per peak")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CAMVID = os.environ.get("SESAM_CAMVID") or os.path.normpath(os.path.join(REPO, "..", "shared", "camvid"))
TUNE_EVERY = 4
TUNE_THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)


@dataclass(frozen=True)
class Setting:
    """How one dataset is run: the classifier's training and the CAM inference scales (relative to the photo)."""

    iterations: int
    crop_size: int
    scale_range: tuple[float, float]
    scales: tuple[float, ...]
    grid: int


SETTINGS = {
    # CamVid photos are 480x360: train at 0.25-0.42 (the whole photo in a 160 px crop), infer around that size.
    "camvid": Setting(iterations=150, crop_size=160, scale_range=(0.25, 0.42), scales=(0.33, 0.5, 0.67), grid=16),
    # The same, trained on the quadrants of the train photos (240x180: the same pixel scale at 0.5-0.84).
    "camvid-quadrants": Setting(iterations=150, crop_size=160, scale_range=(0.5, 0.84), scales=(0.33, 0.5, 0.67),
                                grid=16),
    # The CT slices are 128x128: scale them up so the stride-16 features have more than 8x8 cells;
    # an 8 x 8 grid puts a SAM click every 16 px.
    "liver": Setting(iterations=100, crop_size=256, scale_range=(1.5, 2.5), scales=(1.5, 2.0, 2.5), grid=8),
}


@dataclass
class Item:
    id: str
    image: str
    gt: str


def camvid_parts(root: str, every: int) -> tuple[list[Item], list[Item], ClassPreset]:
    """CamVid train (all) and val (every ``every``-th sorted id)."""
    def items(split: str) -> list[Item]:
        names = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(root, split, "labels")))
        folder = os.path.join(root, split)
        return [Item(n, os.path.join(folder, "images", n + ".png"), os.path.join(folder, "labels", n + ".png"))
                for n in names]
    return items("train"), items("val")[::every], get_preset("camvid")


def quadrant_parts(root: str, every: int, work: str) -> tuple[list[Item], list[Item], ClassPreset]:
    """CamVid train cut into its four quadrants (240x180 crops, written under ``work``), scored on val:
    crops contain fewer classes than whole photos, so their tags tell a classifier more."""
    train, evaluated, preset = camvid_parts(root, every)
    crops = []
    for item in train:
        photo, gt = read_image(item.image), read_label(item.gt, preset)
        rows, cols = gt.shape[0] // 2, gt.shape[1] // 2
        for index, (top, left) in enumerate([(0, 0), (0, cols), (rows, 0), (rows, cols)]):
            name = f"{item.id}_q{index}"
            folder = os.path.join(work, "camvid-quadrants-data")
            crop = Item(name, os.path.join(folder, "images", name + ".png"),
                        os.path.join(folder, "labels", name + ".png"))
            if not os.path.exists(crop.gt):
                window = (slice(top, top + rows), slice(left, left + cols))
                write_png(crop.image, Image.fromarray(photo[window]))
                write_label(crop.gt, gt[window], preset)
            crops.append(crop)
    return crops, evaluated, preset


def liver_parts(work: str) -> tuple[list[Item], list[Item], ClassPreset]:
    """The liver slices: train part and held-out part."""
    data = os.path.join(work, "liver-data")
    parts = write_liver_example(data, os.path.join(work, "liver-download"))
    preset = load_classes_file(os.path.join(data, "classes.txt"))
    return ([Item(r["id"], r["image"], r["gt"]) for r in parts["train"]],
            [Item(r["id"], r["image"], r["gt"]) for r in parts["heldout"]], preset)


def tags_of(item: Item, preset: ClassPreset) -> np.ndarray:
    return tags_from_label(read_label(item.gt, preset), preset)


def train_classifier(name: str, train: list[Item], preset: ClassPreset, setting: Setting, work: str) -> str:
    """Train (or resume, or find finished) the classifier of ``name``; returns its checkpoint."""
    images = [TaggedImage(i.id, i.image, tuple(int(t) for t in tags_of(i, preset))) for i in train]
    config = CamTrainConfig(iterations=setting.iterations, crop_size=setting.crop_size,
                            scale_range=setting.scale_range, checkpoint_every=50)
    run = os.path.join(work, f"{name}-classifier")
    started = time.perf_counter()
    trainer = CamTrainer(config, images, preset, run, device="cpu", workers=1)
    result = trainer.run(resume=True)
    if result.stopped_by is not None:
        sys.exit(f"{name}: classifier stopped at iteration {result.iteration}; run again to resume")
    print(f"{name}: classifier {result.iteration} iterations ({time.perf_counter() - started:.0f} s this call) "
          f"-> {result.checkpoint}", file=sys.stderr, flush=True)
    return result.checkpoint


def cams_for(item: Item, preset: ClassPreset, model, setting: Setting, directory: str) -> ClassActivationMaps:
    """The item's CAMs with its ground-truth tags, cached as a ``cam_scores`` artifact."""
    path = os.path.join(directory, item.id + ".h5")
    if os.path.exists(path):
        return read_cams(path)
    outputs = class_outputs(tags_of(item, preset), preset)
    cams, scores, chosen = class_activation_maps(model, read_image(item.image), setting.scales, True, "cpu",
                                                 lambda s: outputs)
    class_scores = np.full(preset.num_classes, np.nan, np.float32)
    class_scores[tag_classes(preset)] = scores
    maps = ClassActivationMaps(normalise_cams(cams), tag_classes(preset)[chosen], class_scores)
    write_cams(path, maps, {"stage": "cam", "params": json.dumps({"scales": setting.scales})})
    return read_cams(path)


def cached_masks(path: str, compute) -> dict[str, np.ndarray]:
    """SAM's masks datasets, computed once and kept in ``path``."""
    if not os.path.exists(path):
        write_h5(path, compute(), {"stage": "bench"})
    return read_h5(path)[0]


def majority_oracle(masks: np.ndarray, gt: np.ndarray, cam: np.ndarray, iou: np.ndarray,
                    votes: VoteParams) -> np.ndarray:
    """Automatic masks each given to the ground-truth class holding more than half of it, merged by
    votes; pixels no mask claims keep the CAM label."""
    hypothesis_class = np.full(masks.shape[:2], -1, np.int32)
    for s, m in zip(*np.nonzero(masks.reshape(masks.shape[0], masks.shape[1], -1).any(axis=2))):
        counts = np.bincount(gt[masks[s, m]], minlength=256)
        counts[IGNORE_INDEX] = 0
        if counts.max() > 0.5 * masks[s, m].sum():
            hypothesis_class[s, m] = int(counts.argmax())
    return keep_reference(*merge_votes(masks, hypothesis_class, iou, votes), cam)[0]


def digest(*arrays: np.ndarray) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()[:16]


def peak_masks(item: Item, prompts, backend, embedding, work: str) -> dict[str, np.ndarray]:
    """SAM's masks (4 hypotheses) for cam-peaks prompt sets, cached by the prompts' content."""
    key = digest(prompts.points, prompts.point_set, prompts.set_component)
    return cached_masks(os.path.join(work, "peak-masks", f"{item.id}-{key}.h5"),
                        lambda: predict_prompt_sets(backend, embedding, prompts, multimask=True))


def row_labels(item: Item, maps: ClassActivationMaps, preset: ClassPreset, backend, embeddings: EmbeddingCache,
               work: str, grid: int, bg_threshold: float, majority: int) -> dict[str, np.ndarray]:
    """Row name -> pseudo-label (H, W) uint8 of one image."""
    background = 0 if preset.has_background else None
    gt = read_label(item.gt, preset)
    cam = cam_label(maps, background, bg_threshold)
    photo = read_image(item.image)
    embedding = embeddings.get_or_compute(backend, photo)
    votes = VoteParams()
    auto = cached_masks(os.path.join(work, f"grid{grid}", item.id + ".h5"),
                        lambda: automatic_masks(backend, embedding, grid))
    components = decompose(cam)
    peaks, single = (peak_masks(item, cam_peak_prompts(maps, components, group=group), backend, embedding, work)
                     for group in ("component", "point"))
    oracle = kept_classes(oracle_kept(peaks["masks"], peaks["set_class"], gt), peaks["set_class"], 4)
    return {
        "majority class": np.full_like(gt, majority),
        "cam": cam,
        "cam-merge": select_cam_merge(auto["masks"], auto["iou_predictions"], cam, background_class=background,
                                      votes=votes).label,
        "cam-merge oracle": majority_oracle(auto["masks"], gt, cam, auto["iou_predictions"], votes),
        "cam-peaks": select_sesam_reference(peaks["masks"], peaks["iou_predictions"], peaks["set_class"],
                                            peaks["set_component"], cam, components.component_map,
                                            SesamParams(), votes=votes).label,
        "cam-peaks oracle": keep_reference(*merge_votes(peaks["masks"], oracle, peaks["iou_predictions"], votes),
                                           cam)[0],
        "cam-peaks per peak": select_sesam_reference(single["masks"], single["iou_predictions"], single["set_class"],
                                                     single["set_component"], cam, components.component_map,
                                                     SesamParams(), votes=votes).label,
    }


def format_scores(title: str, preset: ClassPreset, counts: dict[str, np.ndarray]) -> str:
    lines = [title, f"{'row':<18}{'mIoU':>7}{'labelled':>10}  " + " ".join(f"{c[:6]:>6}" for c in preset.classes)]
    for row, confusion in counts.items():
        scores = Scores.from_confusion(confusion)
        lines.append(f"{row:<18}{100 * scores.miou:7.1f}{100 * scores.labelled_fraction:9.1f}%  "
                     + " ".join(f"{100 * v:6.1f}" if not np.isnan(v) else f"{'-':>6}" for v in scores.iou))
    return "\n".join(lines)


def classifier_report(model, items: list[Item], preset: ClassPreset, setting: Setting) -> str:
    """Per class on ``items``: how many photos are tagged with it, and the classifier's accuracy at 0.5."""
    truth, predicted = [], []
    for item in items:
        _, scores, _ = class_activation_maps(model, read_image(item.image), setting.scales[:1], False, "cpu",
                                             lambda s: np.zeros(0, np.int64))
        truth.append(np.isin(tag_classes(preset), tags_of(item, preset)))
        predicted.append(scores >= 0.5)
    truth_array, predicted_array = np.array(truth), np.array(predicted)
    return "  ".join(f"{preset.classes[c]} {int(truth_array[:, j].sum())}/{len(items)} acc "
                     f"{100 * (truth_array[:, j] == predicted_array[:, j]).mean():.0f}%"
                     for j, c in enumerate(tag_classes(preset)))


def run_dataset(name: str, args, backend, embeddings: EmbeddingCache) -> None:
    train, evaluated, preset = {
        "camvid": lambda: camvid_parts(args.camvid, args.every),
        "camvid-quadrants": lambda: quadrant_parts(args.camvid, args.every, args.work),
        "liver": lambda: liver_parts(args.work),
    }[name]()
    setting = SETTINGS[name]
    checkpoint = train_classifier(name, train, preset, setting, args.work)
    model, _ = load_classifier(checkpoint, preset)
    if args.tune:
        tuned = train[::TUNE_EVERY]
        counts = {f"bg {t:g}": 0 for t in TUNE_THRESHOLDS}
        for item in tuned:
            maps = cams_for(item, preset, model, setting, os.path.join(args.work, f"{name}-cams-train"))
            gt = read_label(item.gt, preset)
            for t in TUNE_THRESHOLDS:
                counts[f"bg {t:g}"] = counts[f"bg {t:g}"] + confusion_counts(
                    cam_label(maps, 0 if preset.has_background else None, t), gt, preset.num_classes)
        print(format_scores(f"\n{name} train, every {TUNE_EVERY}th photo ({len(tuned)}): CAM label by --bg-threshold",
                            preset, counts), flush=True)
        return
    print(f"\n{name}: tags on the scored part: " + classifier_report(model, evaluated, preset, setting), flush=True)
    counts = {row: 0 for row in ROWS}
    pixels = sum(np.bincount(read_label(item.gt, preset).ravel(), minlength=256) for item in train)
    majority = int(np.argmax(pixels[:preset.num_classes]))
    started = time.perf_counter()
    for index, item in enumerate(evaluated, 1):
        maps = cams_for(item, preset, model, setting, os.path.join(args.work, f"{name}-cams"))
        labels = row_labels(item, maps, preset, backend, embeddings, os.path.join(args.work, name), setting.grid,
                            args.bg_threshold, majority)
        gt = read_label(item.gt, preset)
        for row, label in labels.items():
            counts[row] = counts[row] + confusion_counts(label, gt, preset.num_classes)
        print(f"{name}: {index}/{len(evaluated)} {item.id} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)
    scored = f"{len(evaluated)} {'val' if name == 'camvid' else 'held-out'} images"
    print(format_scores(f"\n{name}, {scored}, --bg-threshold {args.bg_threshold:g}, --grid {setting.grid}: "
                        "pseudo-label IoU (%)", preset, counts), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", required=True, help="work directory (classifier runs, CAMs, masks)")
    parser.add_argument("--datasets", default="camvid,liver")
    parser.add_argument("--camvid", default=DEFAULT_CAMVID, help="CamVid root (train/, val/)")
    parser.add_argument("--every", type=int, default=1, help="score every N-th CamVid val photo")
    parser.add_argument("--bg-threshold", type=float, default=None,
                        help="CAM label threshold (default: sesam cam predict's)")
    parser.add_argument("--tune", action="store_true", help="score CAM thresholds on CamVid train instead")
    parser.add_argument("--cache", default=None, help="embedding cache directory")
    args = parser.parse_args()
    if args.bg_threshold is None:
        from stages.cam import DEFAULT_BG_THRESHOLD
        args.bg_threshold = DEFAULT_BG_THRESHOLD
    started = time.perf_counter()
    backend = load_backend("onnx", device="cpu")
    embeddings = EmbeddingCache(args.cache or embeddings_dir())
    for name in args.datasets.split(","):
        run_dataset(name, args, backend, embeddings)
    command = " ".join([os.path.basename(sys.executable)] + sys.argv)
    print(f"\n{time.perf_counter() - started:.0f} s; command: {command}")


if __name__ == "__main__":
    main()
