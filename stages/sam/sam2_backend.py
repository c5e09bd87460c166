"""SAM 2 / 2.1 (the optional ``sam2`` package) behind sesam's interface, on CPU or CUDA.

A model is built by sam2's own builder from a config and a checkpoint: a released config by name
(``sam2.1_hiera_t``, ``sam2_hiera_l``, ... -> ``configs/sam2.1/sam2.1_hiera_t.yaml`` through
``sam2.build_sam.build_sam2``), or a config YAML file (a fine-tuned or smaller variant:
instantiated from the file with hydra, as ``build_sam2`` does). The checkpoint is sam2's
``{"model": state_dict}``, loaded by ``sam2.build_sam._load_checkpoint``.

It follows ``SAM2ImagePredictor``: the image is stretched to 1024x1024 and normalised with ImageNet's
mean/std (SAM2Transforms); points move to that frame (x * 1024 / W, y * 1024 / H); a box's corners
(labels 2, 3) come before the points and every set ends in the padding point (label -1), with or
without a box; the low-res logits are resized straight to the image. Its decoder reads two
high-resolution maps besides the 64x64 embedding; they are cached with it (``Embedding.high_res``).

Hypotheses: SAM 2's decoder has SAM's four mask tokens, and sesam keeps all four in SAM's order:
0 is the single-mask output, 1-3 the three multimask outputs. (``SAM2ImagePredictor`` with
``multimask_output=False`` replaces output 0 by the best multimask output when it is unstable;
sesam returns output 0 as it is and lets selection see all four.)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import SesamInputError
from ..io.embeddings import Embedding
from .base import BOX_LABELS, LOW_RES, PADDING_LABEL, ModelIdentity, PromptBatch
from .sam_backend import TorchSamBackend, exact_float32_on_cuda

SAM2_CONFIGS = ("sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l",
                "sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b+", "sam2_hiera_l")
"""The configs sam2 ships (``configs/sam2.1/`` and ``configs/sam2/``)."""
CHECKPOINT_CONFIGS = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
"""Released checkpoint names (``sam2.1_hiera_tiny.pt``) -> config suffix."""


def config_for(checkpoint: str, config: str | None) -> str:
    """The config of ``checkpoint``: ``config`` (a name of SAM2_CONFIGS or a YAML file) or, for a
    released checkpoint file name, its own."""
    if config:
        return config
    stem = os.path.splitext(os.path.basename(checkpoint))[0]
    for size, suffix in CHECKPOINT_CONFIGS.items():
        if stem.endswith(f"_hiera_{size}") and stem.startswith(("sam2.1_", "sam2_")):
            return stem[: -len(size)] + suffix
    raise SesamInputError(checkpoint, f"cannot tell the SAM 2 config of this checkpoint; pass --model-type "
                                      f"({'|'.join(SAM2_CONFIGS)}) or a config YAML file")


def build_sam2_model(checkpoint: str, config: str, device: str):
    """SAM2Base from ``config`` with the weights of ``checkpoint``, on ``device``, in eval mode."""
    import torch
    from sam2.build_sam import _load_checkpoint, build_sam2

    if not os.path.isfile(checkpoint):
        raise SesamInputError(checkpoint, "no such checkpoint file")
    try:
        if os.path.isfile(config):
            from hydra.utils import instantiate
            from omegaconf import OmegaConf

            settings = OmegaConf.load(config)
            OmegaConf.resolve(settings)
            model = instantiate(settings.model, _recursive_=True)
            _load_checkpoint(model, checkpoint)
            model = model.to(device).eval()
        elif config in SAM2_CONFIGS:
            family = "sam2.1" if config.startswith("sam2.1") else "sam2"
            model = build_sam2(f"configs/{family}/{config}.yaml", checkpoint, device=device)
        else:
            raise SesamInputError(None, f"unknown SAM 2 config '{config}' (known: {', '.join(SAM2_CONFIGS)}, "
                                        "or a config YAML file)")
    except (RuntimeError, KeyError, EOFError, torch.serialization.pickle.UnpicklingError) as exc:
        raise SesamInputError(checkpoint, f"is not a SAM 2 checkpoint for config {config} "
                                          f"({type(exc).__name__})") from None
    return model


class Sam2Backend(TorchSamBackend):
    """A ``sam2.modeling.sam2_base.SAM2Base`` on a torch device, decoding batches of prompt sets."""

    def __init__(self, model, identity: ModelIdentity, device: str, decode_batch_size: int | None = None):
        from sam2.utils.transforms import SAM2Transforms

        from .sam_backend import DECODE_BATCH

        self.model = model
        self.identity = identity
        self.device = device
        self.long_side = model.image_size
        side = model.sam_image_embedding_size
        self._features_shape = (1, model.sam_prompt_embed_dim, side, side)
        decoder = model.sam_mask_decoder
        self._high_res_shapes = ((1, decoder.conv_s0.out_channels, 4 * side, 4 * side),
                                 (1, decoder.conv_s1.out_channels, 2 * side, 2 * side))
        self.decode_batch_size = decode_batch_size or DECODE_BATCH["cuda" if device.startswith("cuda") else "cpu"]
        self._transforms = SAM2Transforms(resolution=model.image_size, mask_threshold=0.0)
        self._image_pe = None
        self._on_device: tuple[Any, Any] = (None, None)
        if device.startswith("cuda"):
            exact_float32_on_cuda()

    @property
    def high_res_shapes(self) -> tuple[tuple[int, ...], ...]:
        return self._high_res_shapes

    def _preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
        return self._transforms(image)[None].numpy(), (self.long_side, self.long_side)

    def _upscale_geometry(self, embedding: Embedding) -> tuple[tuple[int, int], int]:
        return (LOW_RES, LOW_RES), LOW_RES

    @staticmethod
    def prompt_tokens(points: np.ndarray, labels: np.ndarray, box: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """SAM2ImagePredictor's tokens: the box corners (2, 3), the points, the padding point (-1)."""
        corners = np.zeros((0, 2), np.float32) if box is None else box.reshape(2, 2)
        corner_labels = [] if box is None else list(BOX_LABELS)
        coords = np.concatenate([corners, points, np.zeros((1, 2), np.float32)])
        return coords, np.concatenate([np.array(corner_labels, np.float32), labels, [PADDING_LABEL]]).astype(np.float32)

    def _encode(self, tensor: np.ndarray) -> tuple[np.ndarray, ...]:
        import torch

        model = self.model
        with torch.inference_mode():
            backbone = model.forward_image(self._tensor(tensor))
            _, vision_feats, _, _ = model._prepare_backbone_features(backbone)
            if model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
            shapes = (*self._high_res_shapes, self._features_shape)
            maps = [feat.permute(1, 2, 0).reshape(len(tensor), -1, *shape[2:]) for feat, shape in zip(vision_feats, shapes)]
            high_res, features = maps[:-1], maps[-1]
            return tuple(array.float().cpu().numpy() for array in (features, *high_res))

    def _decode_batch(self, embedding: Embedding, batch: PromptBatch, mask_input: Any | None) -> tuple[Any, Any]:
        import torch

        model = self.model
        prompt_encoder = model.sam_prompt_encoder
        with torch.inference_mode():
            if self._image_pe is None:
                self._image_pe = prompt_encoder.get_dense_pe()
            sparse = prompt_encoder._embed_points(self._tensor(batch.coords), self._tensor(batch.labels), pad=False)
            if mask_input is None:
                dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                    len(batch), -1, *self._features_shape[2:])
            else:
                masks = mask_input if isinstance(mask_input, torch.Tensor) else self._tensor(mask_input)
                dense = prompt_encoder.mask_downscaling(masks[:, None])
            features, *high_res = self._features(embedding)
            low_res, iou, _, _ = model.sam_mask_decoder.predict_masks(
                image_embeddings=features, image_pe=self._image_pe, sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, repeat_image=True, high_res_features=high_res)
        return low_res.float(), iou.float()
