"""Read the weights of an exported SAM-family ONNX pair back into PyTorch modules.

A PyTorch ONNX export keeps most weights as initialisers named after their module
(``mask_decoder.transformer.layers.0.norm1.weight``), but constant-folds others under generated names
(``onnx::MatMul_1974``). Those are identified here by the node that consumes them, whose name is the
module scope it was traced in (``/transformer/final_attn_token_to_image/v_proj/MatMul`` ->
``transformer.final_attn_token_to_image.v_proj``), and by the node's operator:

- ``MatMul``: a ``Linear`` weight, stored transposed;
- ``Conv``: a convolution's weight (input 1) and bias (input 2); a folded ``Conv2d_BN`` is one conv;
- ``Mul`` / ``Add`` inside a ``LayerNorm2d`` scope: its weight / bias, stored as (C, 1, 1);
- ``Mul`` of a (1, C, 1, 1) tensor outside any module (the decoder's mask embedding when there is
  no mask input): ``prompt_encoder.no_mask_embed.weight``;
- ``Expand`` outside any module (the decoder's output tokens, IoU token then mask tokens):
  ``mask_decoder.iou_token.weight`` and ``mask_decoder.mask_tokens.weight``;
- a ``Constant`` added to attention logits (``/layers.1/blocks.0/attn/Add``): TinyViT's gathered
  relative-position bias ``ab``.

Every parameter and buffer of the target module must be filled exactly once, with the right shape;
anything else is an error naming the file.
"""

from __future__ import annotations

import numpy as np

from ..errors import SesamInputError

SCOPE_ROOTS = ("", "mask_decoder.", "prompt_encoder.")
"""Where a scope path may live in the target module: the ONNX decoder was traced through
``predict_masks``/``mask_downscaling`` directly, so its scopes lack the submodule's name."""


def scope_path(node_name: str) -> str:
    """The module path of a traced node: ``/patch_embed/seq/seq.0/c/Conv`` -> ``patch_embed.seq.0.c``.

    Scopes nest as the module tree was called; a child of a called ``Sequential`` repeats its
    parent's name (``seq/seq.0``), which is folded here.
    """
    parts = node_name.strip("/").split("/")[:-1]
    path: list[str] = []
    for part in parts:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def _target(keys: set[str], path: str, attribute: str) -> str | None:
    """The state-dict key ``<root><path>.<attribute>`` that exists in ``keys``, if any."""
    for root in SCOPE_ROOTS:
        key = f"{root}{path}.{attribute}" if path else f"{root}{attribute}"
        if key in keys:
            return key
    return None


def onnx_state_dict(path: str, keys: set[str], rename: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The weights of the ONNX model at ``path`` as a state dict over ``keys`` (the target module's
    state-dict keys); ``rename`` maps initialiser-name prefixes (``model.prompt_encoder.`` ->
    ``prompt_encoder.``). Raises SesamInputError when a weight cannot be placed or a key stays empty."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(path)
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for a bad file
        raise SesamInputError(path, f"not a readable ONNX model: {exc}") from None
    graph = model.graph
    initialisers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    constants = {node.output[0]: numpy_helper.to_array(node.attribute[0].t) for node in graph.node
                 if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"}
    state: dict[str, np.ndarray] = {}

    def put(key: str | None, value: np.ndarray, source: str) -> None:
        if key is None:
            raise SesamInputError(path, f"has a weight the PyTorch model has no place for ({source}); "
                                        "not the expected architecture")
        if key in state:
            raise SesamInputError(path, f"fills {key} twice ({source})")
        state[key] = np.ascontiguousarray(value)

    for name, value in initialisers.items():
        if not name.startswith("onnx::"):
            for old, new in (rename or {}).items():
                if name.startswith(old):
                    name = new + name[len(old):]
            put(name if name in keys else None, value, name)
    for node in graph.node:
        scope = scope_path(node.name)
        for index, name in enumerate(node.input):
            folded = name.startswith("onnx::") and name in initialisers
            constant = name in constants and node.op_type == "Add" and scope.endswith(".attn")
            if not folded and not constant:
                continue
            value = initialisers[name] if folded else constants[name]
            source = f"{name} in {node.name}"
            if constant:
                put(_target(keys, scope, "ab"), value, source)
            elif node.op_type == "MatMul":
                put(_target(keys, scope, "weight"), value.T, source)
            elif node.op_type == "Conv":
                put(_target(keys, scope, "weight" if index == 1 else "bias"), value, source)
            elif node.op_type in ("Mul", "Add") and scope:
                put(_target(keys, scope, "weight" if node.op_type == "Mul" else "bias"), value.reshape(-1), source)
            elif node.op_type == "Mul" and value.ndim == 4:
                put(_target(keys, "", "prompt_encoder.no_mask_embed.weight"), value.reshape(1, -1), source)
            elif node.op_type == "Expand":
                tokens = value.reshape(-1, value.shape[-1])
                put(_target(keys, "", "mask_decoder.iou_token.weight"), tokens[:1], source)
                put(_target(keys, "", "mask_decoder.mask_tokens.weight"), tokens[1:], source)
            else:
                put(None, value, source)
    missing = sorted(keys - set(state))
    if missing:
        raise SesamInputError(path, f"lacks {len(missing)} weight(s) of the PyTorch model, e.g. {missing[0]}; "
                                    "not the expected architecture")
    return state
