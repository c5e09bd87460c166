"""The training loop: iterations of SGD/AdamW with a warm-up and poly schedule, an EMA teacher, checkpoints, resume.

``Trainer(config, images, preset, output_dir).run()`` writes into ``output_dir``:

- ``config.json``: the run's settings, class list and a digest of its data (the same for an
  interrupted-and-resumed run as for an uninterrupted one);
- ``metrics.jsonl``: one JSON line per iteration (losses, learning rate, speed) and one per validation;
- ``iter_N.pt`` every ``checkpoint_every`` iterations and ``last.pt`` (always the newest), written
  atomically; also on SIGINT/SIGTERM, after the running iteration.

With ``resume`` it continues from ``last.pt`` exactly: model, teacher, optimizer and scaler come
back, and the learning rate, data order and augmentation depend only on (seed, iteration), so the
resumed run draws the same samples the uninterrupted run would have. A resumed run may be given
another number of iterations: the schedule is then recomputed for the new length. Under ``torchrun``
it trains with DistributedDataParallel; the global batch is split over the processes and only rank 0
writes. Unset settings come from ``recipe`` (some depend on the device type).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..io.atomic import sha256_of_file, write_json, write_text
from ..errors import SesamInputError
from ..evaluate import Scores, confusion_counts
from ..io.images import read_image, read_label
from .predict import predict_label
from ..presets import ClassPreset
from ..records import read_jsonl
from . import ARCHITECTURE_NAMES, DEFAULT_ARCHITECTURE, recipe
from .augment import augment_batch
from .data import SOURCES, ImageStore, IterationSampler, TrainingImage, TrainingSet, collate_padded
from .distributed import Distributed
from .interrupt import StopRequest
from .checkpoint import check_compatible, link_checkpoint, read_checkpoint, save_checkpoint
from .loss import LossWeights, sesam_loss
from .model import build_model, head_parameter_names
from .teacher import EmaTeacher

log = logging.getLogger("sesam")

LAST_CHECKPOINT = "last.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
TORCH_SEED_STREAM = 2


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; None means the default of ``recipe`` (see ``resolved``).

    ``lr`` is the backbone's learning rate; the head (ASPP and classifier, randomly initialised)
    trains at ``lr × head_lr_multiplier``. Both warm up linearly over ``warmup_iterations`` (at most
    a tenth of the run) and decay as ``(1 - iteration / iterations) ** poly_power``. ``batch_size``
    is the global batch, split evenly over DDP processes. ``amp`` takes effect on CUDA only.
    """

    architecture: str = DEFAULT_ARCHITECTURE
    backbone_weights: str = recipe.BACKBONE_WEIGHTS
    init_from: str | None = None
    iterations: int | None = None
    batch_size: int | None = None
    crop_size: int | None = None
    scale_range: tuple[float, float] = recipe.SCALE_RANGE
    optimizer: str = recipe.OPTIMIZER
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = recipe.MOMENTUM
    head_lr_multiplier: float = recipe.HEAD_LR_MULTIPLIER
    poly_power: float = recipe.POLY_POWER
    warmup_iterations: int = recipe.WARMUP_ITERATIONS
    lambda_weak: float = recipe.LOSS_WEIGHT
    lambda_sam: float = recipe.LOSS_WEIGHT
    lambda_pl: float = recipe.LOSS_WEIGHT
    pl_threshold: float = recipe.PL_THRESHOLD
    ema_momentum: float = recipe.EMA_MOMENTUM
    amp: bool = True
    seed: int = 0
    checkpoint_every: int = recipe.CHECKPOINT_EVERY
    val_every: int = recipe.VAL_EVERY

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURE_NAMES:
            raise ValueError(f"unknown architecture '{self.architecture}'; choose from {', '.join(ARCHITECTURE_NAMES)}")
        if self.optimizer not in recipe.OPTIMIZERS:
            raise ValueError(f"unknown optimizer '{self.optimizer}'; choose from {', '.join(recipe.OPTIMIZERS)}")
        if min(self.lambda_weak, self.lambda_sam, self.lambda_pl) < 0:
            raise ValueError("loss weights cannot be negative")
        if self.lambda_weak == 0 and self.lambda_sam == 0:
            raise ValueError("the teacher needs a labelled source: --lambda-weak or --lambda-sam must be above 0")
        if (self.iterations or 1) < 1 or (self.batch_size or 1) < 1 or (self.crop_size or 16) < 16:
            raise ValueError("iterations and batch size must be at least 1, the crop at least 16 pixels")
        if self.warmup_iterations < 0:
            raise ValueError("the warm-up cannot be negative")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale range {self.scale_range} must be 0 < min <= max")

    def resolved(self, device_type: str = "cpu") -> "TrainConfig":
        """The config with every unset setting filled in: the optimizer's and the device type's defaults."""
        device = recipe.device_defaults(device_type)
        return replace(self, lr=self.lr if self.lr is not None else recipe.LEARNING_RATE[self.optimizer],
                       weight_decay=(self.weight_decay if self.weight_decay is not None
                                     else recipe.WEIGHT_DECAY[self.optimizer]),
                       iterations=self.iterations or device.iterations,
                       batch_size=self.batch_size or device.batch_size,
                       crop_size=self.crop_size or device.crop_size,
                       scale_range=tuple(float(s) for s in self.scale_range))

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(self.lambda_weak, self.lambda_sam, self.lambda_pl, self.pl_threshold)

    def learning_rate_factor(self, iteration: int) -> float:
        """The learning rate of (0-based) ``iteration`` as a share of the base rates (a resolved config)."""
        return recipe.learning_rate_factor(iteration, self.iterations,
                                           recipe.warmup_length(self.warmup_iterations, self.iterations),
                                           self.poly_power)


@dataclass(frozen=True)
class ValidationImage:
    """A held-out photo and its ground-truth label map."""

    id: str
    image: str
    gt: str


def validation_images(path: str | None) -> list[ValidationImage]:
    """The held-out images of a JSON-lines file of records with 'image' and 'gt' ([] for None)."""
    images = []
    for rec in read_jsonl(path) if path else []:
        if not rec.get("image") or not rec.get("gt"):
            raise SesamInputError(path, f"record '{rec['id']}' needs 'image' and 'gt'")
        images.append(ValidationImage(rec["id"], rec["image"], rec["gt"]))
    return images


@dataclass
class TrainResult:
    """How a run ended: iterations done (``start`` of them before this call), the newest checkpoint,
    the signal that stopped it (if any), the seconds this call trained, and the last iteration's and
    the last validation's metrics entries (None if there were none)."""

    iteration: int
    checkpoint: str
    start: int = 0
    stopped_by: int | None = None
    seconds: float = 0.0
    last: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None


LABEL_FIELDS = ("weak", "pseudo")
"""The fields of a training image (``TrainingImage``) that name label files."""


def data_digest(images: Sequence[Any]) -> str:
    """A SHA-256 over the training images' fields (ids, file paths; a classifier's tags) and their
    label files' contents: the identity of a run's data (pseudo-labels redone in place since a run
    started make another digest)."""
    described = []
    for image in images:
        fields = asdict(image)
        described.append({**fields, "labels": [sha256_of_file(fields[key]) for key in LABEL_FIELDS if fields.get(key)]})
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode("utf-8")).hexdigest()


def run_description(config: TrainConfig, preset: ClassPreset, images: Sequence[TrainingImage]) -> dict[str, Any]:
    """The content of ``config.json``: the resolved config, the class list, the data's size and digest."""
    return json.loads(json.dumps({
        "sesam_version": __version__,
        "config": asdict(config),
        "classes": {"preset": preset.name, "names": list(preset.classes)},
        "data": {"images": len(images), "digest": data_digest(images)},
    }))


def _differences(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, str]:
    """key -> 'key: stored -> current' for every setting that differs (ignoring the version)."""
    found = {}
    for section in ("config", "classes", "data"):
        for key in sorted(set(stored.get(section, {})) | set(current[section])):
            old, new = stored.get(section, {}).get(key), current[section].get(key)
            if old != new:
                found[key] = ("the training images or their label files changed since the run started"
                              if key == "digest" else f"{key}: {old} -> {new}")
    return found


def resolve_device(device: str, distributed: Distributed) -> torch.device:
    """``auto`` is CUDA (this process's GPU under torchrun) when available, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", distributed.local_rank)
    return resolved


def _iteration_seed(seed: int, iteration: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, TORCH_SEED_STREAM, iteration, rank]).generate_state(1)[0])


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov-free, with momentum) or AdamW; the head's group at ``lr × head_lr_multiplier``.

    Each group keeps its base rate as ``base_lr``; ``set_learning_rate`` scales it per iteration.
    """
    head = head_parameter_names(model)
    groups = [
        {"params": [p for n, p in model.named_parameters() if n not in head], "base_lr": config.lr},
        {"params": [p for n, p in model.named_parameters() if n in head],
         "base_lr": config.lr * config.head_lr_multiplier},
    ]
    for group in groups:
        group["lr"] = group["base_lr"]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group's learning rate = its ``base_lr`` × ``factor`` (the schedule is a function of the iteration)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


@torch.no_grad()
def validation_scores(model: nn.Module, images: Sequence[ValidationImage], preset: ClassPreset,
                      device: torch.device, distributed: Distributed = Distributed(),
                      window: int | None = None) -> Scores:
    """Scores of ``model`` (eval mode) on held-out images; DDP processes share the images and sum counts."""
    confusion = torch.zeros((preset.num_classes, preset.num_classes + 1), dtype=torch.int64)
    for item in images[distributed.rank::distributed.world_size]:
        photo = read_image(item.image)
        gt = read_label(item.gt, preset, expected_size=photo.shape[:2])
        label, _confidence = predict_label(model, photo, device, window)
        confusion += torch.from_numpy(confusion_counts(label, gt, preset.num_classes, gt_path=item.gt))
    if distributed.enabled:
        confusion = distributed.sum(confusion.to(device)).cpu()
    return Scores.from_confusion(confusion.numpy())


class MetricsLog:
    """``metrics.jsonl``: appended line by line; on resume, lines past the checkpoint are dropped."""

    def __init__(self, path: str, keep_until: int | None):
        self.path = path
        kept = []
        if keep_until is not None and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                kept = [line for line in handle if line.strip() and json.loads(line)["iteration"] <= keep_until]
        write_text(path, "".join(kept))
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, entry: dict[str, Any]) -> None:
        self.handle.write(json.dumps(entry) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class Trainer:
    """One training run in ``output_dir``; see the module docstring. Call :meth:`run`.

    ``workers`` (None: the device type's default) loader processes feed it; the training photos and
    labels are decoded into memory once when they take at most ``cache_bytes`` (None:
    ``recipe.cache_budget_bytes()``; 0: always read from disk).
    """

    def __init__(self, config: TrainConfig, images: Sequence[TrainingImage], preset: ClassPreset,
                 output_dir: str, validation: Sequence[ValidationImage] = (), device: str = "auto",
                 workers: int | None = None, distributed: Distributed | None = None, cache_bytes: int | None = None):
        self.distributed = distributed or Distributed.from_environment()
        self.device = resolve_device(device, self.distributed)
        self.config = config.resolved(self.device.type)
        self.images = list(images)
        self.preset = preset
        self.output_dir = output_dir
        self.validation = list(validation)
        self.workers = recipe.device_defaults(self.device.type).workers if workers is None else workers
        self.cache_bytes = recipe.cache_budget_bytes() if cache_bytes is None else cache_bytes
        if self.config.batch_size % self.distributed.world_size or self.config.batch_size < 2 * self.distributed.world_size:
            raise ValueError(f"batch size {self.config.batch_size} does not split over {self.distributed.world_size} "
                             "process(es) in equal parts of at least 2 (batch normalisation needs 2 per process)")
        self.description = run_description(self.config, preset, self.images)
        self.amp = self.config.amp and self.device.type == "cuda"

    @property
    def last_checkpoint(self) -> str:
        return os.path.join(self.output_dir, LAST_CHECKPOINT)

    def _checkpoint_to_resume(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        """The checkpoint to continue from (None: a fresh run). Refuses to clobber or mismatch a run;
        another number of iterations is allowed, with a warning that the schedule is recomputed."""
        path = self.last_checkpoint
        if not os.path.exists(path):
            if resume:
                log.info("nothing to resume in %s: starting a new run", self.output_dir)
            return None
        if not resume:
            if overwrite:
                return None
            raise SesamInputError(path, "exists: this directory holds a training run; pass --resume to "
                                        "continue it or --overwrite to start again")
        checkpoint = read_checkpoint(path)
        check_compatible(checkpoint, path, self.config.architecture, self.preset)
        differences = _differences(checkpoint["run"], self.description)
        length = differences.pop("iterations", None)
        if differences:
            raise SesamInputError(path, "was made with other settings than this run's; resume with the same "
                                        "options (--iterations may differ), or start a new output directory: "
                                        + "; ".join(differences.values()))
        if length:
            log.warning("%s: resuming a run of %d iterations as one of %d: the learning-rate schedule is "
                        "recomputed for the new length", path, checkpoint["run"]["config"]["iterations"],
                        self.config.iterations)
        if checkpoint["world_size"] != self.distributed.world_size:
            log.warning("resuming a run of %d processes with %d: per-process batch statistics change",
                        checkpoint["world_size"], self.distributed.world_size)
        log.info("resuming %s at iteration %d of %d", path, checkpoint["iteration"], self.config.iterations)
        return checkpoint

    def _initial_weights(self) -> dict[str, Any] | None:
        """The ``init_from`` checkpoint, checked against this run's architecture and classes."""
        if not self.config.init_from:
            return None
        checkpoint = read_checkpoint(self.config.init_from)
        check_compatible(checkpoint, self.config.init_from, self.config.architecture, self.preset)
        return checkpoint

    def _build(self, resume: bool, overwrite: bool) -> int:
        """Model, teacher, optimizer and scaler, restored when resuming; returns the start iteration."""
        resumed = self._checkpoint_to_resume(resume, overwrite)
        initial = None if resumed else self._initial_weights()
        torch.manual_seed(self.config.seed)
        pretrained = resumed is None and initial is None
        self.model = build_model(self.config.architecture, self.preset.num_classes,
                                 self.config.backbone_weights if pretrained else "none")
        if initial is not None:
            self.model.load_state_dict(initial["model"])
        self.model.to(self.device)
        self.teacher = EmaTeacher(self.model, self.config.ema_momentum)
        self.optimizer = build_optimizer(self.model, self.config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        if resumed is None:
            return 0
        self.model.load_state_dict(resumed["model"])
        self.teacher.model.load_state_dict(resumed["teacher"])
        self.optimizer.load_state_dict(resumed["optimizer"])
        self.scaler.load_state_dict(resumed["scaler"])
        return int(resumed["iteration"])

    def _checkpoint_state(self, iteration: int) -> dict[str, Any]:
        return {
            "architecture": self.config.architecture,
            "num_classes": self.preset.num_classes,
            "preset": self.preset.name,
            "classes": list(self.preset.classes),
            "iteration": iteration,
            "config": asdict(self.config),
            "run": self.description,
            "world_size": self.distributed.world_size,
            "model": self.model.state_dict(),
            "teacher": self.teacher.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def _save(self, iteration: int, periodic: bool) -> None:
        if not self.distributed.is_main:
            return
        state = self._checkpoint_state(iteration)
        if periodic:
            numbered = os.path.join(self.output_dir, f"iter_{iteration}.pt")
            save_checkpoint(numbered, state)
            link_checkpoint(numbered, self.last_checkpoint)
        else:
            save_checkpoint(self.last_checkpoint, state)

    def _store(self) -> ImageStore:
        """The training images, decoded; refuses a run whose enabled sources label no pixel at all."""
        started = time.perf_counter()
        store = ImageStore(self.images, self.preset, self.cache_bytes, threads=min(8, os.cpu_count() or 1))
        mib = store.decoded_bytes / 2 ** 20
        if store.cached:
            log.info("training data: %d images decoded into memory (%.0f MiB) in %.1f s", len(store), mib,
                     time.perf_counter() - started)
        else:
            log.info("training data: %d images read from disk at each use (%.0f MiB decoded is over the "
                     "%.0f MiB memory bound)", len(store), mib, self.cache_bytes / 2 ** 20)
        weights = {"weak": self.config.lambda_weak, "pseudo": self.config.lambda_sam}
        options = {"weak": "--lambda-weak", "pseudo": "--lambda-sam"}
        enabled = [source for source in SOURCES if weights[source] > 0]
        for source in enabled:
            if store.labelled[source] == 0:
                log.warning("the '%s' label maps of all %d training records are empty (all 255): their loss "
                            "term (%s) learns nothing", source, len(store), options[source])
        if not any(store.labelled[source] for source in enabled):
            raise SesamInputError(None, f"no training record has a labelled pixel in its "
                                        f"{' or '.join(repr(s) for s in enabled)} label maps (all 255): "
                                        "there is nothing to learn from")
        return store

    def _loader(self, store: ImageStore, start: int) -> torch.utils.data.DataLoader:
        dataset = TrainingSet(store, self.config.crop_size, self.config.scale_range, self.config.seed)
        sampler = IterationSampler(start, self.config.iterations, self.config.batch_size,
                                   self.distributed.rank, self.distributed.world_size)
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.config.batch_size // self.distributed.world_size, sampler=sampler,
            num_workers=self.workers, collate_fn=collate_padded, pin_memory=self.device.type == "cuda",
            persistent_workers=False, prefetch_factor=4 if self.workers else None)

    def _step(self, network: nn.Module, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the (local) loss terms and the backbone's learning rate as 0-d tensors."""
        weights = self.config.loss_weights
        torch.manual_seed(_iteration_seed(self.config.seed, iteration, self.distributed.rank))
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        views = augment_batch(batch["photos"], batch["labels"], batch["sizes"], batch["augment"], self.config.crop_size)
        weak, pseudo = views["labels"].unbind(1)
        autocast = torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)
        teacher_logits = None
        if weights.uses_teacher:
            with torch.no_grad(), autocast:
                teacher_logits = self.teacher.model(views["teacher"])["out"]
        network.train()
        with autocast:
            student_logits = network(views["student"])["out"]
        loss, parts = sesam_loss(student_logits, weak, pseudo, views["valid"], teacher_logits, weights)
        set_learning_rate(self.optimizer, self.config.learning_rate_factor(iteration))
        learning_rate = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.teacher.update(self.model, iteration)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()},
                "lr": torch.tensor(learning_rate)}

    def _validate(self, iteration: int) -> dict[str, Any]:
        scores = validation_scores(self.teacher.model, self.validation, self.preset, self.device, self.distributed)
        return {"iteration": iteration, "val_miou": scores.miou,
                "val_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(self.preset.classes, scores.iou)}}

    def run(self, resume: bool = False, overwrite: bool = False,
            on_iteration: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
        """Train until ``config.iterations`` or a stop signal; ``on_iteration`` gets every metrics entry."""
        self.distributed.start(self.device)
        metrics = None
        try:
            start = self._build(resume, overwrite)
            if start >= self.config.iterations:
                if start > self.config.iterations:
                    log.warning("%s has %d iterations done, more than the %d asked for: nothing to train",
                                self.last_checkpoint, start, self.config.iterations)
                return TrainResult(start, self.last_checkpoint, start)
            store = self._store()
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = True
            if self.distributed.is_main:
                self._start_files(start)
                metrics = MetricsLog(os.path.join(self.output_dir, METRICS_FILE), start)
            network: nn.Module = self.model
            if self.distributed.enabled:
                network = nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            with StopRequest() as stop:
                return self._loop(network, store, start, stop, metrics, on_iteration)
        finally:
            if metrics is not None:
                metrics.close()
            self.distributed.stop()

    def _start_files(self, start: int) -> None:
        """Write config.json; a fresh run first removes the checkpoints of the run it replaces."""
        os.makedirs(self.output_dir, exist_ok=True)
        if start == 0:
            for name in os.listdir(self.output_dir):
                if name == LAST_CHECKPOINT or (name.startswith("iter_") and name.endswith(".pt")):
                    os.unlink(os.path.join(self.output_dir, name))
        write_json(os.path.join(self.output_dir, CONFIG_FILE), self.description, indent=2)

    def _loop(self, network: nn.Module, store: ImageStore, start: int, stop: StopRequest,
              metrics: MetricsLog | None, on_iteration: Callable[[dict[str, Any]], None] | None) -> TrainResult:
        config = self.config
        result = TrainResult(start, self.last_checkpoint, start)
        began = tick = time.perf_counter()
        batches = iter(self._loader(store, start))
        for iteration in range(start, config.iterations):
            parts = self._step(network, next(batches), iteration)
            names = sorted(parts)
            values = self.distributed.sum(torch.stack([parts[k].float().to(self.device) for k in names]))
            values = (values / self.distributed.world_size).tolist()
            done = iteration + 1
            seconds, tick = time.perf_counter() - tick, time.perf_counter()
            result.last = {"iteration": done, **dict(zip(names, values)),
                           "seconds": seconds, "images_per_second": config.batch_size / seconds}
            entries = [result.last]
            if self.validation and (done == config.iterations or (config.val_every and done % config.val_every == 0)):
                result.validation = self._validate(done)
                entries.append(result.validation)
                tick = time.perf_counter()
            for item in entries:
                if metrics is not None:
                    metrics.write(item)
                if on_iteration is not None and self.distributed.is_main:
                    on_iteration(item)
            stopping = self.distributed.any(stop.requested, self.device)
            periodic = bool(config.checkpoint_every) and done % config.checkpoint_every == 0
            if periodic or stopping or done == config.iterations:
                self._save(done, periodic)
            result.iteration = done
            if stopping:
                result.stopped_by = stop.signal_number or signal.SIGTERM
                break
        self.distributed.barrier()
        result.seconds = time.perf_counter() - began
        return result
