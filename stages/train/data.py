"""Training data: records to photos, label maps and drawn augmentations, in an order that depends only on the seed.

Sample ``g`` (the g-th sample drawn since iteration 0, ``g = iteration * batch_size + slot``) is
image ``permutation(seed, epoch)[g % N]`` with ``epoch = g // N``, augmented with parameters drawn
from a generator seeded by ``(seed, g)`` (and applied to the batch on the training device by
``augment.augment_batch``). Nothing depends on earlier draws, so a resumed run sees exactly the
samples the uninterrupted one would have, whatever the number of data-loader workers or DDP processes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .. import IGNORE_INDEX
from ..errors import SesamInputError, SesamUsageError
from ..io.images import check_same_size, image_size, read_image, read_label
from ..presets import ClassPreset
from ..records import Record, read_jsonl, read_records, records_from_files
from .augment import IMAGENET_MEAN, IMAGENET_STD, draw_augmentation

ORDER_STREAM, AUGMENT_STREAM = 0, 1
SOURCES = ("weak", "pseudo")


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB to a (3, H, W) float32 tensor normalised with the ImageNet mean and std."""
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    scaled = (image.astype(np.float32) / 255.0 - mean) / std
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


@dataclass(frozen=True)
class TrainingImage:
    """One training image: the photo and the label maps the enabled losses read (None = unused)."""

    id: str
    image: str
    weak: str | None
    pseudo: str | None


def _records_from_directories(images_dir: str | None, weak_dir: str | None, pseudo_dir: str | None,
                              strip_suffixes: Iterable[str]) -> list[Record]:
    """Records pairing photos, weak labels and pseudo-labels by file stem."""
    if not images_dir:
        raise SesamUsageError("--weak/--pseudo directories need --images DIR to find the photos", bad_value=False)
    keyed = [(key, path) for key, path in (("weak", weak_dir), ("pseudo", pseudo_dir)) if path]
    first_key, first_dir = keyed[0]
    records = records_from_files([first_dir], first_key, images_dir, strip_suffixes, (".png",))
    for key, directory in keyed[1:]:
        paths = {rec["id"]: rec[key] for rec in records_from_files([directory], key, None, strip_suffixes, (".png",))}
        for rec in records:
            if rec["id"] not in paths:
                raise SesamUsageError(f"{directory}: no label named '{rec['id']}.png'", f"--{key}")
            rec[key] = paths[rec["id"]]
    return records


def training_records(records_file: str | None, images_dir: str | None, weak_dir: str | None,
                     pseudo_dir: str | None, strip_suffixes: Iterable[str]) -> list[Record]:
    """The records a training run learns from: from ``records_file`` (JSON lines), from label directories
    (``weak_dir``, ``pseudo_dir``) paired with photos in ``images_dir`` by file stem, or from stdin."""
    if weak_dir or pseudo_dir:
        if records_file:
            raise SesamUsageError("give records (--records or stdin) or label directories (--weak/--pseudo), "
                                  "not both", bad_value=False)
        return _records_from_directories(images_dir, weak_dir, pseudo_dir, strip_suffixes)
    if records_file:
        return read_jsonl(records_file)
    return list(read_records([], "weak", images_dir, strip_suffixes))


def training_images(records: Sequence[Mapping[str, Any]], use_weak: bool, use_pseudo: bool) -> list[TrainingImage]:
    """Check the records a training run needs and return them as TrainingImage.

    Every record needs ``image``; ``weak`` (an index PNG) when the weak-label loss is on, ``pseudo``
    when the SAM pseudo-label loss is on. Files must exist and match their photo's size.
    """
    if not records:
        raise SesamInputError(None, "no training records")
    images = []
    for record in records:
        needed = ["image"] + ["weak"] * use_weak + ["pseudo"] * use_pseudo
        missing = [key for key in needed if not record.get(key)]
        if missing:
            raise SesamInputError(None, f"record '{record.get('id')}' has no {', '.join(map(repr, missing))}; "
                                        "training needs it (or switch that loss off)")
        size = image_size(record["image"])
        for key in needed[1:]:
            if str(record[key]).endswith(".json"):
                raise SesamInputError(record[key], f"is a boxes file; the {key} loss needs a label map "
                                                   "(switch that loss off, or pass a PNG)")
            check_same_size(record[key], image_size(record[key]), size, of=f"its photo {record['image']}")
        images.append(TrainingImage(record["id"], record["image"], record.get("weak") if use_weak else None,
                                    record.get("pseudo") if use_pseudo else None))
    return images


def _labelled_pixels(maps: Sequence[np.ndarray | None]) -> tuple[int, ...]:
    """The number of labelled (not 255) pixels of each label map (0 for an unused one)."""
    return tuple(0 if label is None else int((label != IGNORE_INDEX).sum()) for label in maps)


class ImageStore:
    """The training images' photos and label maps, decoded once into memory when they fit, else read on use.

    All photos and the label maps of the enabled sources are decoded (in ``threads`` threads) and
    kept when their decoded size is at most ``budget_bytes`` (loader processes forked later share
    them); otherwise each access reads the files again. Either way ``labelled`` counts each
    source's labelled pixels (not 255) over all images, so a run on empty labels can be refused.
    """

    def __init__(self, images: Sequence[TrainingImage], preset: ClassPreset, budget_bytes: int, threads: int = 1):
        self.images = list(images)
        self.preset = preset
        self.sizes = [image_size(item.image) for item in self.images]
        planes = 3 + sum(path is not None for path in (self.images[0].weak, self.images[0].pseudo))
        self.decoded_bytes = sum(height * width * planes for height, width in self.sizes)
        self.cached = self.decoded_bytes <= budget_bytes
        self._photos: list[np.ndarray] | None = None
        self._labels: list[tuple[np.ndarray | None, ...]] | None = None
        with ThreadPoolExecutor(max(1, threads)) as pool:
            if self.cached:
                self._labels = list(pool.map(self._read_labels, range(len(self.images))))
                self._photos = list(pool.map(self._read_photo, range(len(self.images))))
                counts = [_labelled_pixels(maps) for maps in self._labels]
            else:
                counts = list(pool.map(lambda index: _labelled_pixels(self._read_labels(index)),
                                       range(len(self.images))))
        self.labelled = dict(zip(SOURCES, (sum(column) for column in zip(*counts))))

    def __len__(self) -> int:
        return len(self.images)

    def _read_photo(self, index: int) -> np.ndarray:
        return np.require(read_image(self.images[index].image), requirements="W")

    def _read_labels(self, index: int) -> tuple[np.ndarray | None, ...]:
        item = self.images[index]
        return tuple(None if path is None else read_label(path, self.preset, expected_size=self.sizes[index])
                     for path in (item.weak, item.pseudo))

    def photo(self, index: int) -> np.ndarray:
        """Image ``index``'s photo, (H, W, 3) uint8 RGB (the cached array itself: do not change it)."""
        return self._photos[index] if self._photos is not None else self._read_photo(index)

    def labels(self, index: int) -> np.ndarray:
        """Image ``index``'s weak and pseudo label maps as (2, H, W) uint8 (all 255 for an unused source)."""
        maps = self._labels[index] if self._labels is not None else self._read_labels(index)
        empty = np.full(self.sizes[index], IGNORE_INDEX, np.uint8)
        return np.stack([empty if label is None else label for label in maps])


class TrainingSet(torch.utils.data.Dataset):
    """Indexed by global sample number ``g``; returns the photo, labels and augmentation of that sample.

    Item: ``photo`` (H, W, 3) uint8, ``labels`` (2, H, W) uint8 (weak, pseudo; 255 = ignore),
    ``size`` (2,) int64 = (H, W), ``augment`` the drawn parameters (see ``augment.draw_augmentation``);
    ``collate_padded`` batches them and ``augment.augment_batch`` applies them on the device.
    """

    def __init__(self, store: ImageStore, crop_size: int, scale_range: tuple[float, float], seed: int):
        self.store = store
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.seed = seed
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.store)

    def image_index(self, sample: int) -> int:
        """The image drawn as global sample ``sample``: a fresh permutation of the images per epoch."""
        epoch, position = divmod(sample, len(self.store))
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            order = np.random.default_rng([self.seed, ORDER_STREAM, epoch]).permutation(len(self.store))
            self._epoch_order = (epoch, order)
        return int(self._epoch_order[1][position])

    def __getitem__(self, sample: int) -> dict[str, torch.Tensor]:
        index = self.image_index(sample)
        rng = np.random.default_rng([self.seed, AUGMENT_STREAM, sample])
        size = self.store.sizes[index]
        return {
            "photo": torch.from_numpy(self.store.photo(index)),
            "labels": torch.from_numpy(self.store.labels(index)),
            "size": torch.tensor(size),
            "augment": torch.from_numpy(draw_augmentation(rng, size, self.crop_size, self.scale_range)),
        }


def collate_padded(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch TrainingSet items: photos and labels of different sizes padded bottom/right to the largest
    (any number of label planes, the same in every item)."""
    sizes = torch.stack([item["size"] for item in items])
    height, width = (int(v) for v in sizes.max(0).values)
    photos = torch.zeros((len(items), height, width, 3), dtype=torch.uint8)
    labels = torch.full((len(items), items[0]["labels"].shape[0], height, width), IGNORE_INDEX, dtype=torch.uint8)
    for slot, item in enumerate(items):
        rows, cols = item["photo"].shape[:2]
        photos[slot, :rows, :cols] = item["photo"]
        labels[slot, :, :rows, :cols] = item["labels"]
    return {"photos": photos, "labels": labels, "sizes": sizes,
            "augment": torch.stack([item["augment"] for item in items])}


class IterationSampler(torch.utils.data.Sampler[int]):
    """Global sample numbers for iterations ``start .. iterations-1``, this process's share of each batch.

    With ``world_size`` processes, process ``rank`` takes slots ``rank, rank + world_size, ...`` of
    every global batch of ``batch_size``; a DataLoader with ``batch_size // world_size`` regroups them.
    """

    def __init__(self, start: int, iterations: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start, self.iterations, self.batch_size = start, iterations, batch_size
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        for iteration in range(self.start, self.iterations):
            for slot in range(self.rank, self.batch_size, self.world_size):
                yield iteration * self.batch_size + slot

    def __len__(self) -> int:
        return (self.iterations - self.start) * (self.batch_size // self.world_size)
