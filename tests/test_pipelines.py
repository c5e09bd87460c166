"""The benchmark Makefiles (pipelines/) on tiny datasets in each benchmark's real layout, and the
options of the dataset encodings (``simulate --ids``, ``simulate --reduce-zero-label``, ``--void``).

The slow tests run every rule of every Makefile with the default SAM model and check each rule's
files: the per-image rules (weak labels, SAM pseudo-labels and their scores) for every kind, which
read the dataset's layout, and the training, refinement and validation rules, the same template
for every kind, with one kind per Makefile (VOC: boxes, whose training differs; Cityscapes: coarse,
its own kind; ADE20K: scribbles; CamVid: points), which keeps the file within a few minutes on two
cores. CamVid's files mark void as 11: every rule must read it as ignore. The fast
tests check that the training records of VOC and Cityscapes carry their instance maps (one weak
annotation per object), the commands the Makefiles print for GPUs, shards, a SAM checkpoint and a
SLURM array task, and their errors on a wrong layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from stages import IGNORE_INDEX
from stages.io.boxes import read_boxes
from stages.io.images import read_instances, read_label
from stages.presets import get_preset

from layouts import (ADE_IMAGES, CAMVID_IMAGES, CITYSCAPES_IMAGES, VOC_IDS, Scene, ade20k_annotation, camvid_truth,
                     cityscapes_train_ids, example_scenes, write_ade20k, write_camvid, write_cityscapes, write_voc)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIPELINES = os.path.join(REPO, "pipelines")
SESAM = os.path.join(os.path.dirname(sys.executable), "sesam")
PER_IMAGE_RULES = ("weak", "pseudo", "eval-pseudo")
NETWORK_RULES = ("train", "refine", "eval")


def reduced_ade20k(scene: Scene) -> np.ndarray:
    annotation = ade20k_annotation(scene).astype(np.int64)
    return np.where(annotation == 0, IGNORE_INDEX, annotation - 1).astype(np.uint8)


@dataclass(frozen=True)
class Benchmark:
    """A Makefile (named like its class preset), the writer of its dataset's layout, and what the
    pipeline must find in that dataset."""

    name: str
    write: Callable[[str, list[Scene]], str]
    kinds: tuple[str, ...]
    trained_kind: str
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    truth: Callable[[Scene], np.ndarray]
    shards: int

    @property
    def preset(self):
        return get_preset(self.name)


BENCHMARKS = [
    Benchmark("voc", write_voc, ("points", "scribbles", "boxes"), "boxes", tuple(VOC_IDS["train"]),
              tuple(VOC_IDS["val"]), lambda scene: scene.classes, shards=2),
    Benchmark("cityscapes", write_cityscapes, ("coarse", "scribbles", "points"), "coarse",
              tuple(CITYSCAPES_IMAGES["train"]), tuple(CITYSCAPES_IMAGES["val"]), cityscapes_train_ids, shards=1),
    Benchmark("ade20k", write_ade20k, ("scribbles", "points"), "scribbles", tuple(ADE_IMAGES["training"]),
              tuple(ADE_IMAGES["validation"]), reduced_ade20k, shards=1),
    Benchmark("camvid", write_camvid, ("points", "scribbles", "coarse", "boxes"), "points",
              tuple(CAMVID_IMAGES["train"]), tuple(CAMVID_IMAGES["val"]), camvid_truth, shards=1),
]
BY_NAME = {b.name: b for b in BENCHMARKS}


@pytest.fixture(scope="module")
def scenes(example_root) -> list[Scene]:
    """Two training scenes and one validation scene, in this order."""
    return example_scenes(example_root)


def make(benchmark: str, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(["make", "--no-print-directory", "-C", os.path.join(PIPELINES, benchmark), *args],
                            capture_output=True, text=True)
    if expect is not None:
        assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def check_weak_labels(benchmark: Benchmark, records: list[dict], truths: dict[str, np.ndarray], kind: str) -> None:
    """Every weak label carries the ground truth's class, in the preset's encoding, where it labels."""
    for record in records:
        truth = truths[record["id"]]
        if kind == "boxes":
            _boxes, classes, size = read_boxes(record["weak"], benchmark.preset)
            assert size == truth.shape and set(classes) <= set(np.unique(truth).tolist())
            continue
        weak = read_label(record["weak"], benchmark.preset)
        labelled = weak != IGNORE_INDEX
        assert labelled.any() and (weak[labelled] == truth[labelled]).all()


def check_per_image_rules(benchmark: Benchmark, folder, truths: dict[str, np.ndarray], kind: str) -> None:
    weak = read_jsonl(folder / "weak.jsonl")
    assert sorted(r["id"] for r in weak) == sorted(benchmark.train_ids)
    check_weak_labels(benchmark, weak, truths, kind)
    pseudo = read_jsonl(folder / "pseudo.jsonl")
    assert sorted(r["id"] for r in pseudo) == sorted(benchmark.train_ids)
    for record in pseudo:
        label = read_label(record["pseudo"], benchmark.preset)
        assert label.shape == truths[record["id"]].shape and (label != IGNORE_INDEX).any()
    assert json.loads((folder / "pseudo-eval.json").read_text())["miou"] > 0.1


def check_network_rules(benchmark: Benchmark, folder, truths: dict[str, np.ndarray]) -> None:
    for round_number in (0, 1):
        checkpoint = folder / f"train-{round_number}" / "last.pt"
        assert {r["checkpoint"] for r in read_jsonl(folder / f"train-{round_number}.jsonl")} == {str(checkpoint)}
    refined = read_jsonl(folder / "refined-1.jsonl")
    assert sorted(r["id"] for r in refined) == sorted(benchmark.train_ids)
    assert all(r["pseudo"].startswith(str(folder / "refined-1")) and os.path.exists(r["prediction"]) for r in refined)
    predictions = read_jsonl(folder / "predictions.jsonl")
    assert [r["id"] for r in predictions] == list(benchmark.val_ids)
    assert read_label(predictions[0]["prediction"], benchmark.preset).shape == truths[benchmark.val_ids[0]].shape
    assert json.loads((folder / "val-eval.json").read_text())["images"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", BENCHMARKS, ids=lambda b: b.name)
def test_every_rule_runs_on_the_real_layout(benchmark, scenes, sam_home, tmp_path):
    data = benchmark.write(str(tmp_path / "data"), scenes)
    work = tmp_path / "work"
    variables = [f"DATA={data}", f"WORK={work}", f"SESAM={SESAM}", "SMALL=1", f"SHARDS={benchmark.shards}"]
    trained = f"KINDS={benchmark.trained_kind}"
    make(benchmark.name, "-j2", "eval-pseudo", "val", "model", *variables)
    make(benchmark.name, "-j2", "all", trained, *variables)

    truths = dict(zip(benchmark.train_ids + benchmark.val_ids, map(benchmark.truth, scenes)))
    assert [r["id"] for r in read_jsonl(work / "val.jsonl")] == list(benchmark.val_ids)
    for kind in benchmark.kinds:
        check_per_image_rules(benchmark, work / kind, truths, kind)
        for rule in PER_IMAGE_RULES:
            make(benchmark.name, "-q", f"{rule}-{kind}", *variables)
    check_network_rules(benchmark, work / benchmark.trained_kind, truths)
    for rule in NETWORK_RULES:
        make(benchmark.name, "-q", f"{rule}-{benchmark.trained_kind}", *variables)
    make(benchmark.name, "-q", "eval-pseudo", "val", "model", *variables)
    make(benchmark.name, "-q", "all", trained, *variables)


@pytest.mark.parametrize("benchmark", [BY_NAME["voc"], BY_NAME["cityscapes"]], ids=lambda b: b.name)
def test_training_records_carry_the_instance_maps_so_weak_labels_are_per_object(benchmark, scenes, tmp_path):
    """sesam records pairs the training photos with the instance maps (VOC's SegmentationObject,
    Cityscapes' 16-bit _gtFine_instanceIds.png): every object, down to one pixel (--min-area 0),
    gets one click, although void borders and occluders cut the objects into more pieces."""
    data = benchmark.write(str(tmp_path / "data"), scenes)
    work = tmp_path / "work"
    make(benchmark.name, "weak-points", "val", f"DATA={data}", f"WORK={work}", f"SESAM={SESAM}",
         "SIMULATE_FLAGS=--min-area 0")
    assert [sorted(r) for r in read_jsonl(work / "val.jsonl")] == [["gt", "id", "image"]]
    assert not (work / "val-points").exists()
    weak = read_jsonl(work / "points" / "weak.jsonl")
    truths = dict(zip(benchmark.train_ids, map(benchmark.truth, scenes)))
    assert sorted(r["id"] for r in weak) == sorted(benchmark.train_ids)
    check_weak_labels(benchmark, weak, truths, "points")
    for record in weak:
        instances, truth = read_instances(record["gt_instances"]), truths[record["id"]]
        clicked = read_label(record["weak"], benchmark.preset) != IGNORE_INDEX
        objects = np.unique(instances[(instances != 0) & (instances != IGNORE_INDEX)])
        assert [int(clicked[instances == i].sum()) for i in objects] == [1] * len(objects)
        on_objects = np.isin(instances, objects)
        object_classes = np.unique(truth[on_objects & (truth != IGNORE_INDEX)])
        pieces = sum(ndimage.label(truth == c, structure=np.ones((3, 3)))[1] for c in object_classes)
        assert int(clicked[np.isin(truth, object_classes)].sum()) == len(objects) < pieces


def dry_run(benchmark: str, *args: str) -> str:
    return make(benchmark, "-n", *args).stdout


def test_gpus_shards_and_a_checkpoint_change_the_commands(tmp_path):
    checkpoint = tmp_path / "sam_vit_h_4b8939.pth"
    checkpoint.write_bytes(b"")
    commands = dry_run("voc", "all", "DATA=/data/VOC2012", f"WORK={tmp_path / 'w'}", f"SESAM={SESAM}", "SHARDS=3",
                       "GPUS=2", f"CHECKPOINT={checkpoint}", "KINDS=scribbles", "ROUNDS=2")
    for shard in range(3):
        assert f"CUDA_VISIBLE_DEVICES=$(( {shard} % 2 )) {SESAM} sam-predict --backend sam --sam-checkpoint {checkpoint} " \
               "--model-type vit_h" in commands
        assert f"decompose --shard {shard}/3" in commands
        assert f"refine --shard {shard}/3 --classes voc --backend sam --sam-checkpoint {checkpoint}" in commands
    torchrun = os.path.join(os.path.dirname(SESAM), "torchrun")
    assert commands.count(f"{torchrun} --standalone --nproc_per_node 2 --no-python {SESAM} train --device cuda "
                          "--classes voc --arch deeplabv3_resnet101 --iterations 20000 --crop-size 321 "
                          "--batch-size 16") == 3
    assert "train-2/last.pt" in commands and "models fetch" not in commands


def test_default_commands_train_on_the_cpu_with_the_default_model(tmp_path):
    commands = dry_run("cityscapes", "eval-points", "DATA=/data/cityscapes", f"WORK={tmp_path / 'w'}", "SMALL=1")
    assert "sesam models fetch" in commands and "sam-predict --backend onnx" in commands
    assert "sesam train --device cpu --classes cityscapes --arch deeplabv3_mobilenet_v2 --iterations 2" in commands
    assert ("records --images /data/cityscapes/leftImg8bit/val --strip-suffix _leftImg8bit "
            "--key gt=/data/cityscapes/gtFine/val:_gtFine_labelTrainIds |") in commands
    assert "refine --predict-only" in commands and "--window 1024" in commands
    assert "torchrun" not in commands and "CUDA_VISIBLE_DEVICES" not in commands


def test_slurm_array_task_runs_its_shard(tmp_path):
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8",
           "SESAM_PIPELINES": PIPELINES}
    result = subprocess.run(["bash", os.path.join(PIPELINES, "slurm", "sesam_array.sh"), "ade20k", "/data/ADE",
                             "refine-shard", f"WORK={tmp_path / 'w'}", "KINDS=points", "ROUND=2", "ROUNDS=2", "-n"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert os.path.exists(tmp_path / "w" / ".prepare.lock")
    assert "sesam refine --shard 5/8 --classes ade20k" in result.stdout
    assert f"-o {tmp_path / 'w'}/points/refined-2 < {tmp_path / 'w'}/points/train-1.jsonl" in result.stdout
    alone = subprocess.run(["bash", os.path.join(PIPELINES, "slurm", "sesam_array.sh"), "voc"],
                           capture_output=True, text=True)
    assert alone.returncode == 2 and "sbatch --array=0-15" in alone.stderr


@pytest.mark.parametrize("benchmark", BENCHMARKS, ids=lambda b: b.name)
def test_help_states_the_cost_and_the_papers_results(benchmark):
    text = make(benchmark.name, "help").stdout
    assert "Cost of a full run" in text and "2604.11170" in text and "DATA" in text
    assert "make -C pipelines/" in text


def test_data_is_required():
    result = make("voc", "all", expect=2)
    assert "DATA is not set" in result.stderr


def test_a_cityscapes_root_without_train_id_labels_fails_saying_what_is_missing(scenes, tmp_path):
    data = write_cityscapes(str(tmp_path / "cityscapes"), scenes)
    for name in CITYSCAPES_IMAGES["train"]:
        city = name.split("_")[0]
        os.remove(os.path.join(data, "gtFine", "train", city, f"{name}_gtFine_labelTrainIds.png"))
    result = make("cityscapes", "weak-points", f"DATA={data}", f"WORK={tmp_path / 'w'}", f"SESAM={SESAM}", expect=2)
    assert "records: 2 photo(s) have no 'gt' file and are left out" in result.stderr
    assert f"sesam records made no TRAIN records from DATA={data}" in result.stderr
    assert not (tmp_path / "w" / "points" / "weak.jsonl").exists()


def test_a_voc_root_without_the_split_list_fails_naming_it(scenes, tmp_path):
    data = write_voc(str(tmp_path / "voc"), scenes)
    os.remove(os.path.join(data, "ImageSets", "Segmentation", "train.txt"))
    result = make("voc", "weak-points", f"DATA={data}", f"WORK={tmp_path / 'w'}", f"SESAM={SESAM}", expect=2)
    assert os.path.join(data, "ImageSets", "Segmentation", "train.txt") in result.stderr
    assert not (tmp_path / "w" / "points" / "weak.jsonl").exists()


def test_camvid_commands_read_void_as_ignore_and_val_split_picks_the_folder(tmp_path):
    commands = dry_run("camvid", "all", "DATA=/data/CamVid", f"WORK={tmp_path / 'w'}", "KINDS=coarse", "VAL_SPLIT=test")
    for command in ("records --images /data/CamVid/train --key gt=/data/CamVid/trainannot |",
                    "records --images /data/CamVid/test --key gt=/data/CamVid/testannot |",
                    "simulate --classes camvid --void 11 --seed 0 --kind coarse",
                    "select --classes camvid --void 11", "evaluate --key pseudo --classes camvid --void 11",
                    "train --device cpu --classes camvid --void 11", "evaluate --key prediction --classes camvid --void 11"):
        assert command in commands, command


def test_a_camvid_root_without_annotations_fails_naming_where_it_looked(scenes, tmp_path):
    data = write_camvid(str(tmp_path / "camvid"), scenes)
    os.rename(os.path.join(data, "trainannot"), os.path.join(data, "labels"))
    result = make("camvid", "weak-points", f"DATA={data}", f"WORK={tmp_path / 'w'}", f"SESAM={SESAM}", expect=2)
    assert os.path.join(data, "trainannot") in result.stderr
    assert not (tmp_path / "w" / "points" / "weak.jsonl").exists()


def test_void_reads_camvid_files_alike_in_simulate_and_evaluate(sesam, scenes, tmp_path):
    data = write_camvid(str(tmp_path / "camvid"), scenes)
    annotations = os.path.join(data, "trainannot")
    camvid = get_preset("camvid")
    result = sesam("simulate", "--kind", "coarse", "--classes", "camvid", "--void", "11", "--images",
                   os.path.join(data, "train"), "-o", tmp_path / "weak", annotations)
    for record, scene in zip(sorted(sesam.records(result), key=lambda r: r["id"]), scenes):
        weak, truth = read_label(record["weak"], camvid), camvid_truth(scene)
        assert (truth == IGNORE_INDEX).any() and ((weak == truth) | (weak == IGNORE_INDEX)).all()
    report = sesam("evaluate", "--classes", "camvid", "--void", "11", "--json", "-", "--gt", annotations, annotations)
    assert json.loads(report.stdout)["miou"] == 1.0
    plain = sesam("evaluate", "--classes", "camvid", "--gt", annotations, annotations, expect=1)
    assert "class values 11 are outside the 'camvid' preset" in plain.stderr and annotations in plain.stderr
    inside = sesam("evaluate", "--classes", "camvid", "--void", "3", "--gt", annotations, annotations, expect=2)
    assert "--void" in inside.stderr and "void value 3 is not outside the 'camvid' classes" in inside.stderr


# --- simulate --ids: the split lists -----------------------------------------------------------------

@pytest.fixture
def voc_layout(scenes, tmp_path) -> str:
    return write_voc(str(tmp_path / "voc"), scenes)


def simulate_ids(sesam, data: str, out, ids_file: str, *inputs: str, expect: int = 0, input: str | None = None):
    return sesam("simulate", "--kind", "points", "--ids", ids_file, "--images", os.path.join(data, "JPEGImages"),
                 "-o", out, *inputs, expect=expect, input=input)


def test_ids_restrict_the_inputs_to_a_split(sesam, voc_layout, tmp_path):
    split = os.path.join(voc_layout, "ImageSets", "Segmentation")
    result = simulate_ids(sesam, voc_layout, tmp_path / "w", os.path.join(split, "train.txt"),
                          os.path.join(voc_layout, "SegmentationClass"))
    assert sorted(r["id"] for r in sesam.records(result)) == VOC_IDS["train"]
    assert sorted(os.listdir(tmp_path / "w")) == [f"{i}.png" for i in VOC_IDS["train"]]


def test_ids_filter_records_on_stdin_and_warn_about_absent_ones(sesam, voc_layout, tmp_path, caplog):
    records = [{"id": i, "gt": os.path.join(voc_layout, "SegmentationClass", f"{i}.png")}
               for i in VOC_IDS["train"][:1] + VOC_IDS["val"]]
    ids_file = os.path.join(voc_layout, "ImageSets", "Segmentation", "train.txt")
    result = simulate_ids(sesam, voc_layout, tmp_path / "w", ids_file, input=sesam.lines(records))
    assert [r["id"] for r in sesam.records(result)] == VOC_IDS["train"][:1]
    assert f"{ids_file}: 1 of its 2 ids have no input: {VOC_IDS['train'][1]}" in caplog.text


def test_listed_ids_without_a_label_file_fail_naming_the_list(sesam, voc_layout, tmp_path):
    ids_file = tmp_path / "more.txt"
    ids_file.write_text("\n".join(VOC_IDS["val"] + ["2012_004331", ""]) + "\n")
    result = simulate_ids(sesam, voc_layout, tmp_path / "w", str(ids_file),
                          os.path.join(voc_layout, "SegmentationClass"), expect=2)
    assert f"{ids_file}: 1 of its 2 ids have no input: 2012_004331" in result.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("content, problem", [(b"\n  \n", "lists no id"), (b"\xff\xfe\x00", "cannot read the id list")])
def test_an_empty_or_unreadable_id_list_is_refused_naming_it(sesam, voc_layout, tmp_path, content, problem):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(content)
    result = simulate_ids(sesam, voc_layout, tmp_path / "w", str(ids_file),
                          os.path.join(voc_layout, "SegmentationClass"), expect=2)
    assert str(ids_file) in result.stderr and problem in result.stderr


# --- ADE20K's zero label ------------------------------------------------------------------------------

@pytest.fixture
def ade_layout(scenes, tmp_path) -> str:
    return write_ade20k(str(tmp_path / "ade"), scenes)


def reduce_zero_label(source: str, dest: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(PIPELINES, "ade20k", "reduce_zero_label.py"), source, dest],
                          capture_output=True, text=True)


def test_reduce_zero_label_script_and_simulate_read_ade20k_alike(sesam, ade_layout, scenes, tmp_path):
    annotations = os.path.join(ade_layout, "annotations", "training")
    converted = reduce_zero_label(annotations, str(tmp_path / "gt"))
    assert converted.returncode == 0 and "2 annotation(s) converted" in converted.stderr
    ade = get_preset("ade20k")
    for name, scene in zip(ADE_IMAGES["training"], scenes):
        truth = reduced_ade20k(scene)
        assert 149 in truth and (read_label(tmp_path / "gt" / f"{name}.png", ade) == truth).all()
    assert "0 annotation(s) converted" in reduce_zero_label(annotations, str(tmp_path / "gt")).stderr

    images = os.path.join(ade_layout, "images", "training")
    result = sesam("simulate", "--kind", "coarse", "--classes", "ade20k", "--reduce-zero-label", "--images", images,
                   "-o", tmp_path / "weak", annotations)
    for record, scene in zip(sesam.records(result), scenes):
        weak, truth = read_label(record["weak"], ade), reduced_ade20k(scene)
        assert ((weak == truth) | (weak == IGNORE_INDEX)).all() and (weak == 149).any()
    plain = sesam("simulate", "--kind", "coarse", "--classes", "ade20k", "--images", images, "-o", tmp_path / "raw",
                  annotations, expect=1)
    assert "class values 150 are outside the 'ade20k' preset" in plain.stderr and annotations in plain.stderr


def test_reduce_zero_label_script_names_a_bad_annotation(tmp_path):
    (tmp_path / "in").mkdir()
    bad = tmp_path / "in" / "ADE_train_00000003.png"
    Image.fromarray(np.full((4, 4), 200, np.uint8), mode="L").save(bad)
    result = reduce_zero_label(str(tmp_path / "in"), str(tmp_path / "out"))
    assert result.returncode == 1 and f"{bad}: class values 199" in result.stderr
    assert not (tmp_path / "out" / bad.name).exists()
