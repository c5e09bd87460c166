"""Training data: records to augmented, normalised tensors, in an order that depends only on the seed.

Sample ``g`` (the g-th sample drawn since iteration 0, ``g = iteration * batch_size + slot``) is
image ``permutation(seed, epoch)[g % N]`` with ``epoch = g // N``, augmented with a generator seeded
by ``(seed, g)``. Nothing depends on earlier draws, so a resumed run sees exactly the samples the
uninterrupted one would have, whatever the number of data-loader workers or DDP processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from .. import IGNORE_INDEX
from ..errors import SesamInputError
from ..labels import image_size, read_image, read_label
from ..presets import ClassPreset
from .augment import random_scale_crop_flip, strong_photometric

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
ORDER_STREAM, AUGMENT_STREAM = 0, 1


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB to a (3, H, W) float32 tensor normalised with the ImageNet mean and std."""
    scaled = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


@dataclass(frozen=True)
class TrainingImage:
    """One training image: the photo and the label maps the enabled losses read (None = unused)."""

    id: str
    image: str
    weak: str | None
    pseudo: str | None


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
            if image_size(record[key]) != size:
                raise SesamInputError(record[key], f"size does not match its photo {record['image']}")
        images.append(TrainingImage(record["id"], record["image"], record.get("weak") if use_weak else None,
                                    record.get("pseudo") if use_pseudo else None))
    return images


class TrainingSet(torch.utils.data.Dataset):
    """Indexed by global sample number ``g``; returns the augmented views and labels of that sample.

    Item: ``student`` and ``teacher`` (3, C, C) float32 (strong and weak view), ``weak`` and
    ``pseudo`` (C, C) int64 (255 = ignore; all 255 when unused), ``valid`` (C, C) bool (False on padding).
    """

    def __init__(self, images: Sequence[TrainingImage], preset: ClassPreset, crop_size: int,
                 scale_range: tuple[float, float], seed: int):
        self.images = list(images)
        self.preset = preset
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.seed = seed
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def image_index(self, sample: int) -> int:
        """The image drawn as global sample ``sample``: a fresh permutation of the images per epoch."""
        epoch, position = divmod(sample, len(self.images))
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            order = np.random.default_rng([self.seed, ORDER_STREAM, epoch]).permutation(len(self.images))
            self._epoch_order = (epoch, order)
        return int(self._epoch_order[1][position])

    def _label(self, path: str | None, shape: tuple[int, int]) -> np.ndarray:
        if path is None:
            return np.full(shape, IGNORE_INDEX, np.uint8)
        return read_label(path, self.preset, expected_size=shape)

    def __getitem__(self, sample: int) -> dict[str, torch.Tensor]:
        item = self.images[self.image_index(sample)]
        rng = np.random.default_rng([self.seed, AUGMENT_STREAM, sample])
        photo = read_image(item.image)
        labels = [self._label(item.weak, photo.shape[:2]), self._label(item.pseudo, photo.shape[:2])]
        photo, (weak, pseudo), valid = random_scale_crop_flip(photo, labels, self.crop_size, self.scale_range, rng)
        return {
            "teacher": image_to_tensor(photo),
            "student": image_to_tensor(strong_photometric(photo, rng)),
            "weak": torch.from_numpy(weak.astype(np.int64)),
            "pseudo": torch.from_numpy(pseudo.astype(np.int64)),
            "valid": torch.from_numpy(valid),
        }


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
