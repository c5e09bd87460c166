"""SAM in PyTorch, on CPU or CUDA: the official segment-anything models (ViT-H/L/B) and any other
``segment_anything.modeling.Sam`` (the default model's port, see ``stages.sam.torch_port``).

Checkpoints are plain state dicts, loaded with ``map_location`` so a CUDA-saved file loads on a
machine without CUDA. Models are built by a registry of builders, like segment-anything's
``sam_model_registry``: ``vit_h``, ``vit_l`` and ``vit_b`` are its real builders; other builders
(e.g. a tiny SAM for tests) can be added with ``register_sam_builder``.

:class:`TorchSamBackend` decodes a whole batch of prompt sets in one call of SAM's mask decoder and
keeps the chunk on its device until the thresholded masks are done: on CUDA the low-res logits are
upscaled with the same bilinear taps as ``transforms.upscale_logits``, thresholded and scored there,
and only the bool masks and the scores come back (one transfer per chunk). On CUDA it turns TF32 off, so
that embeddings are the float32 values the cache holds for every device.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..devices import is_cuda
from ..errors import SesamInputError
from ..io.embeddings import Embedding
from .base import ModelIdentity, PromptBatch, SamBackend
from .transforms import upscale_taps

ENCODER_WIDTHS = {1280: "vit_h", 1024: "vit_l", 768: "vit_b"}
"""Image-encoder embedding width -> official model type (read from ``patch_embed.proj.weight``)."""

_EXTRA_BUILDERS: dict[str, Callable[[], object]] = {}


def register_sam_builder(model_type: str, builder: Callable[[], object]) -> None:
    """Make ``model_type`` loadable: ``builder()`` returns an untrained ``segment_anything.modeling.Sam``."""
    _EXTRA_BUILDERS[model_type] = builder


def sam_builders() -> dict[str, Callable[[], object]]:
    """Model type -> builder: segment-anything's vit_h/vit_l/vit_b plus any registered ones."""
    from segment_anything import sam_model_registry

    return {**{t: sam_model_registry[t] for t in ENCODER_WIDTHS.values()}, **_EXTRA_BUILDERS}


DECODE_BATCH = {"cpu": 8, "cuda": 64}
"""Prompt sets per decoder call by device type (see ``SamBackend.decode_chunk_size`` for the memory cap)."""


def torch_device(device: str) -> str:
    """``auto`` -> cuda if available else cpu; ``cuda`` / ``cuda:N`` without a GPU is an error."""
    import torch

    if is_cuda(device) and not torch.cuda.is_available():
        raise SesamInputError(None, f"--device {device}: no CUDA device is available to PyTorch here")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def exact_float32_on_cuda() -> None:
    """Make CUDA matmuls and convolutions run in IEEE float32, not TF32 (a process-wide setting):
    an embedding computed on a GPU must be the one the CPU computes, to within float32 rounding."""
    import torch

    try:
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    except AttributeError:  # torch before 2.9 spells it allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def read_checkpoint(path: str) -> dict:
    """A SAM state dict from ``path`` (tensors mapped to the CPU), or SesamInputError saying why not."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise SesamInputError(path, f"not a PyTorch checkpoint ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    if not isinstance(state, dict) or "image_encoder.patch_embed.proj.weight" not in state:
        raise SesamInputError(path, "not a segment-anything checkpoint (no image_encoder weights in it)")
    return state


def checkpoint_model_type(state: dict) -> str | None:
    """The official model type whose encoder width matches ``state``, or None for another size."""
    return ENCODER_WIDTHS.get(int(state["image_encoder.patch_embed.proj.weight"].shape[0]))


def build_sam(path: str, model_type: str | None, device: str):
    """Build the ``model_type`` SAM (inferred from the checkpoint when None) with the weights at ``path``."""
    state = read_checkpoint(path)
    found = checkpoint_model_type(state)
    model_type = model_type or found
    builders = sam_builders()
    if model_type is None:
        raise SesamInputError(path, f"cannot tell the model type of this checkpoint; pass --model-type "
                                    f"({'|'.join(builders)})")
    if model_type not in builders:
        raise SesamInputError(None, f"unknown SAM model type '{model_type}' (known: {', '.join(builders)})")
    if found is not None and found != model_type:
        raise SesamInputError(path, f"is a {found} checkpoint, not {model_type}: pass --model-type {found}")
    model = builders[model_type]()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise SesamInputError(path, f"does not fit SAM model type {model_type} ({first[0].strip()})") from None
    return model.to(device).eval(), model_type


class TorchSamBackend(SamBackend):
    """A ``segment_anything.modeling.Sam`` on a torch device, decoding batches of prompt sets."""

    def __init__(self, model, identity: ModelIdentity, device: str, decode_batch_size: int | None = None):
        from segment_anything.utils.onnx import SamOnnxModel

        self.model = model
        self.identity = identity
        self.device = device
        self.long_side = model.image_encoder.img_size
        height, width = model.prompt_encoder.image_embedding_size
        self._features_shape = (1, model.prompt_encoder.embed_dim, height, width)
        self.decode_batch_size = decode_batch_size or DECODE_BATCH["cuda" if device.startswith("cuda") else "cpu"]
        self._prompts = SamOnnxModel(model, return_single_mask=False)
        """segment-anything's ONNX-export wrapper: its ``_embed_points`` takes the decoder tokens
        (labels -1..3) of a PromptBatch, its ``_embed_masks`` a batch of mask inputs"""
        self._image_pe = None
        self._on_device: tuple[Any, Any] = (None, None)
        if device.startswith("cuda"):
            exact_float32_on_cuda()

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        return self._features_shape

    def _tensor(self, array: np.ndarray):
        """A float32 array as a tensor on the device (through pinned memory on CUDA)."""
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(array, np.float32))
        if self.device == "cpu":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _encode(self, tensor: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.image_encoder(self._tensor(tensor)).float().cpu().numpy()

    def _features(self, embedding: Embedding) -> tuple:
        """The embedding's features and high-resolution maps on the device, moved once per image."""
        features, on_device = self._on_device
        if features is not embedding.features:
            on_device = tuple(self._tensor(array) for array in (embedding.features, *embedding.high_res))
            self._on_device = (embedding.features, on_device)
        return on_device

    def _decode_batch(self, embedding: Embedding, batch: PromptBatch, mask_input: Any | None) -> tuple[Any, Any]:
        import torch

        with torch.inference_mode():
            if self._image_pe is None:
                self._image_pe = self.model.prompt_encoder.get_dense_pe()
            sparse = self._prompts._embed_points(self._tensor(batch.coords), self._tensor(batch.labels))
            if mask_input is None:
                dense = self.model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                    len(batch), -1, *self._features_shape[2:])
            else:
                masks = mask_input if isinstance(mask_input, torch.Tensor) else self._tensor(mask_input)
                dense = self.model.prompt_encoder.mask_downscaling(masks[:, None])
            low_res, iou = self.model.mask_decoder.predict_masks(
                image_embeddings=self._features(embedding)[0], image_pe=self._image_pe,
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
        return low_res.float(), iou.float()

    def _decode_tokens(self, embedding: Embedding, coords: np.ndarray, labels: np.ndarray,
                       mask_input: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        batch = PromptBatch(coords[None], labels[None], np.array([len(labels)]))
        low_res, iou = self._decode_batch(embedding, batch, None if mask_input is None else mask_input[None])
        return low_res[0].cpu().numpy(), iou[0].cpu().numpy()

    def _feedback(self, low_res, iou):
        import torch

        return low_res[torch.arange(len(iou), device=iou.device), iou.argmax(1)]

    def _postprocess(self, low_res, embedding: Embedding):
        """On CUDA, ``postprocess_on_device``; on the CPU numpy's, which is several times faster than
        eager PyTorch there (no intermediate tensors per tap)."""
        import torch

        if low_res.device.type == "cpu":
            masks, stability = super()._postprocess(low_res.numpy(), embedding)
            return torch.from_numpy(masks), torch.from_numpy(stability)
        return self.postprocess_on_device(low_res, embedding)

    def postprocess_on_device(self, low_res, embedding: Embedding):
        """(B, M, 256, 256) logits tensor -> (B, M, H, W) bool masks and (B, M) stability scores,
        computed where the tensor is (the GPU path; the same taps and thresholds as numpy's)."""
        import torch

        with torch.inference_mode():
            logits = self._upscale(low_res, embedding)
            inside = torch.count_nonzero(logits > 1.0, dim=(-2, -1))
            union = torch.count_nonzero(logits > -1.0, dim=(-2, -1))
            stability = torch.where(union > 0, inside / union.clamp(min=1), 0.0)
            return logits > 0, stability

    def _upscale(self, low_res, embedding: Embedding):
        """(B, M, 256, 256) logits -> (B, M, H, W), the taps of ``transforms.upscale_logits``."""
        import torch

        (height, width), ((input_h, input_w), side) = embedding.original_size, self._upscale_geometry(embedding)
        rows = upscale_taps(low_res.shape[-2], input_h, height, side)
        cols = upscale_taps(low_res.shape[-1], input_w, width, side)
        (row_index, row_weight), (col_index, col_weight) = [
            (torch.from_numpy(index).to(self.device), torch.from_numpy(weight).to(self.device))
            for index, weight in (rows, cols)]
        along_rows = sum(row_weight[:, k, None] * low_res.index_select(2, row_index[:, k])
                         for k in range(row_index.shape[1]))
        return sum(col_weight[:, k] * along_rows.index_select(3, col_index[:, k]) for k in range(col_index.shape[1]))

    def _to_numpy(self, array) -> np.ndarray:
        return array.cpu().numpy()

    def decode_masks(self, embedding: Embedding, batch: PromptBatch, hypotheses: slice = slice(None),
                     iterative: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            return super().decode_masks(embedding, batch, hypotheses, iterative)
