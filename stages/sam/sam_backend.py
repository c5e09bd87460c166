"""The official segment-anything models (ViT-H/L/B) in PyTorch, on CPU or CUDA.

Checkpoints are plain state dicts, loaded with ``map_location`` so a CUDA-saved file loads on a
machine without CUDA. Models are built by a registry of builders, like segment-anything's
``sam_model_registry``: ``vit_h``, ``vit_l`` and ``vit_b`` are its real builders; other builders
(e.g. a tiny SAM for tests) can be added with ``register_sam_builder``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import SesamInputError
from .base import Embedding, ModelIdentity, SamBackend

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


def torch_device(device: str) -> str:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is an error."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SesamInputError(None, "--device cuda: no CUDA device is available to PyTorch here")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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
    """A ``segment_anything.modeling.Sam`` on a torch device; decodes one prompt set at a time."""

    def __init__(self, model, identity: ModelIdentity, device: str):
        self.model = model
        self.identity = identity
        self.device = device
        self.long_side = model.image_encoder.img_size
        height, width = model.prompt_encoder.image_embedding_size
        self._features_shape = (1, model.prompt_encoder.embed_dim, height, width)

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        return self._features_shape

    def _encode(self, tensor: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.image_encoder(torch.from_numpy(tensor).to(self.device)).float().cpu().numpy()

    def _decode_low_res(self, embedding: Embedding, points: np.ndarray, labels: np.ndarray,
                        box: np.ndarray | None, mask_input: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array, np.float32)).to(self.device)

        with torch.inference_mode():
            sparse, dense = self.model.prompt_encoder(
                points=(tensor(points[None]), tensor(labels[None])) if len(points) else None,
                boxes=None if box is None else tensor(box[None]),
                masks=None if mask_input is None else tensor(mask_input[None, None]),
            )
            low_res, iou = self.model.mask_decoder.predict_masks(
                image_embeddings=tensor(embedding.features),
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )
        return low_res[0].float().cpu().numpy(), iou[0].float().cpu().numpy()
