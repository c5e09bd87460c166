"""Training checkpoints: one ``torch.save`` dict, written atomically, refused when it does not fit.

A checkpoint holds ``format``, ``sesam_version``, ``architecture``, ``num_classes``, ``preset``
(name), ``classes`` (names), ``iteration`` (iterations done), ``config`` (the run's settings),
``model`` (student weights), ``teacher`` (EMA weights), ``optimizer`` and ``scaler`` states. The
learning rate is a function of the iteration, and every random draw is seeded from (seed, iteration,
sample), so the iteration count is the whole schedule and random state of a run.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..io.atomic import atomic_path
from ..errors import SesamInputError
from ..presets import ClassPreset
from . import WEIGHTS
from .model import build_model

CHECKPOINT_FORMAT = "sesam-train-checkpoint/1"
CAM_CHECKPOINT_FORMAT = "sesam-cam-checkpoint/1"
FORMAT_COMMANDS = {CHECKPOINT_FORMAT: "sesam train", CAM_CHECKPOINT_FORMAT: "sesam cam train"}
"""The command that writes each checkpoint format, for messages."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], format: str = CHECKPOINT_FORMAT) -> None:
    """Atomically write ``state`` (plus ``format`` and version) to ``path``."""
    with atomic_path(path) as tmp:
        torch.save({"format": format, "sesam_version": __version__, **state}, tmp)


def link_checkpoint(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Atomically make ``path`` the same checkpoint as ``source`` (a hard link, or a copy where links fail)."""
    with atomic_path(path) as tmp:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def read_checkpoint(path: str | os.PathLike, format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """Load a sesam checkpoint of ``format`` (default: a ``sesam train`` one) onto the CPU, or raise
    SesamInputError saying why not."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SesamInputError(path, "no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise SesamInputError(path, f"not a readable checkpoint (truncated or corrupt?): "
                                    f"{exc.__class__.__name__}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != format:
        made_by = FORMAT_COMMANDS.get(checkpoint.get("format") if isinstance(checkpoint, dict) else None)
        raise SesamInputError(path, f"not a checkpoint of `{FORMAT_COMMANDS.get(format, format)}`"
                                    + (f" (it is one of `{made_by}`)" if made_by else ""))
    return checkpoint


def describe(checkpoint: dict[str, Any]) -> str:
    """``architecture, K classes (preset)`` of a checkpoint, for messages."""
    return f"{checkpoint['architecture']} with {checkpoint['num_classes']} classes ('{checkpoint['preset']}')"


def check_compatible(checkpoint: dict[str, Any], path: str | os.PathLike, architecture: str | None,
                     preset: ClassPreset) -> None:
    """Refuse a checkpoint of another architecture (None: any) or another class list than ``preset``."""
    wanted_architecture = architecture or checkpoint["architecture"]
    if (checkpoint["architecture"] != wanted_architecture or checkpoint["num_classes"] != preset.num_classes
            or tuple(checkpoint["classes"]) != preset.classes):
        raise SesamInputError(
            path, f"is a checkpoint of {describe(checkpoint)}, but this run needs {wanted_architecture} "
                  f"with {preset.num_classes} classes ('{preset.name}'); pass the matching --arch/--classes "
                  "or another checkpoint")


def load_network(path: str | os.PathLike, preset: ClassPreset, weights: str = "teacher",
                 ) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a checkpoint (``weights``: the EMA ``teacher`` or the ``student``), in eval mode.

    Returns the model on the CPU and the checkpoint dict. The checkpoint must match ``preset``.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, not '{weights}'")
    checkpoint = read_checkpoint(path)
    check_compatible(checkpoint, path, None, preset)
    model = build_model(checkpoint["architecture"], checkpoint["num_classes"], backbone_weights="none")
    model.load_state_dict(checkpoint["model" if weights == "student" else "teacher"])
    return model.eval(), checkpoint
