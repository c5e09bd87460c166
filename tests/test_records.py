"""sesam records: photos and label directories paired by id, the first link of a chain."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from stages.io.images import read_instances, read_label
from stages.presets import get_preset
from stages.records import emit_all
from stages.simulate import label_regions

from layouts import example_scenes, write_cityscapes, write_voc


@pytest.fixture
def voc_layout(example_root, tmp_path) -> str:
    return write_voc(str(tmp_path / "VOC2012"), example_scenes(example_root))


@pytest.fixture
def cityscapes_layout(example_root, tmp_path) -> str:
    return write_cityscapes(str(tmp_path / "cityscapes"), example_scenes(example_root))


def test_records_pair_photos_with_every_key_and_leave_out_photos_without_labels(sesam, voc_layout, caplog):
    """VOC has photos without segmentation: they are left out, the rest carry image, gt and gt_instances."""
    photos = sorted(os.listdir(os.path.join(voc_layout, "JPEGImages")))
    labelled = sorted(os.listdir(os.path.join(voc_layout, "SegmentationClass")))
    result = sesam("records", "--images", f"{voc_layout}/JPEGImages", "--key", f"gt={voc_layout}/SegmentationClass",
                   "--key", f"gt_instances={voc_layout}/SegmentationObject")
    records = sesam.records(result)
    assert len(photos) > len(labelled) == len(records)
    for record in records:
        assert set(record) == {"id", "image", "gt", "gt_instances"}
        assert all(os.path.splitext(os.path.basename(record[key]))[0] == record["id"]
                   for key in ("image", "gt", "gt_instances"))
    assert "left out" in caplog.text and f"records: {len(records)} record(s)" in caplog.text


def test_records_keep_photos_without_labels_when_asked(sesam, voc_layout):
    result = sesam("records", "--images", f"{voc_layout}/JPEGImages", "--key", f"gt={voc_layout}/SegmentationClass",
                   "--allow-missing")
    records = sesam.records(result)
    assert len(records) == len(os.listdir(os.path.join(voc_layout, "JPEGImages")))
    assert any("gt" not in record for record in records)


def test_records_restricted_to_a_split_and_a_listed_id_without_labels_is_an_error(sesam, voc_layout, tmp_path):
    split = os.path.join(voc_layout, "ImageSets", "Segmentation", "val.txt")
    wanted = open(split).read().split()
    records = sesam.records(sesam("records", "--images", f"{voc_layout}/JPEGImages", "--ids", split,
                                  "--key", f"gt={voc_layout}/SegmentationClass"))
    assert [record["id"] for record in records] == sorted(wanted)
    unlabelled = sorted(set(os.path.splitext(f)[0] for f in os.listdir(os.path.join(voc_layout, "JPEGImages")))
                        - set(os.path.splitext(f)[0] for f in os.listdir(os.path.join(voc_layout, "SegmentationClass"))))
    listed = tmp_path / "ids.txt"
    listed.write_text(f"{unlabelled[0]}\n")
    result = sesam("records", "--images", f"{voc_layout}/JPEGImages", "--ids", listed,
                   "--key", f"gt={voc_layout}/SegmentationClass", expect=2)
    assert unlabelled[0] in result.stderr and "lack a photo" in result.stderr


@pytest.mark.parametrize("spec, problem", [
    ("gt", "is not NAME=DIR"), ("Bad Name=x", "is not NAME=DIR"), ("image={dir}", "reserved"),
    ("gt=/no/such/dir", "no such directory"),
])
def test_records_refuse_bad_key_specifications(sesam, voc_layout, spec, problem):
    result = sesam("records", "--images", f"{voc_layout}/JPEGImages", "--key",
                   spec.format(dir=f"{voc_layout}/SegmentationClass"), expect=2)
    assert problem in result.stderr


def test_cityscapes_records_pick_files_by_suffix_and_read_16_bit_instance_ids(sesam, cityscapes_layout):
    """gtFine holds four files per image; SUFFIX picks the train ids and the 16-bit instance ids, and
    each car of the 16-bit map becomes its own region."""
    root = cityscapes_layout
    records = sesam.records(sesam(
        "records", "--images", f"{root}/leftImg8bit/train", "--strip-suffix", "_leftImg8bit",
        "--key", f"gt={root}/gtFine/train:_gtFine_labelTrainIds",
        "--key", f"gt_instances={root}/gtFine/train:_gtFine_instanceIds"))
    assert len(records) == 2
    for record in records:
        assert record["gt"].endswith("_gtFine_labelTrainIds.png")
        assert record["gt_instances"].endswith("_gtFine_instanceIds.png")
        gt = read_label(record["gt"], get_preset("cityscapes"))
        instances = read_instances(record["gt_instances"], gt.shape)
        raw = np.asarray(Image.open(record["gt_instances"]))
        objects = np.unique(raw[raw >= 1000])
        assert set(np.unique(instances[instances > 0])) == set(objects)
        regions = label_regions(gt, instances)
        assert len(regions) >= len(objects)


def test_records_without_keys_lists_every_photo(sesam, voc_layout):
    records = sesam.records(sesam("records", "--images", f"{voc_layout}/JPEGImages"))
    assert {r["id"] for r in records} == {os.path.splitext(f)[0] for f in os.listdir(f"{voc_layout}/JPEGImages")}


def test_emit_all_writes_every_record_with_the_added_keys_and_counts_them(capsys):
    records = [{"id": "a"}, {"id": "b", "image": "b.png"}]
    assert emit_all(records, {"checkpoint": "last.pt"}) == 2
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert written == [{"id": "a", "checkpoint": "last.pt"}, {"id": "b", "image": "b.png", "checkpoint": "last.pt"}]
    assert records[0] == {"id": "a"}, "the records given are left as they were"
    assert emit_all([]) == 0 and capsys.readouterr().out == ""
