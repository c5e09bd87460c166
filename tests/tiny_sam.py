"""A tiny randomly initialised SAM built from segment_anything.modeling, for tests of the real loading path.

The encoder is a 2-block ViT of width 32 on the standard 1024 input (64x64 patches), the decoder the
real PromptEncoder / MaskDecoder / TwoWayTransformer at width 32: every code path of ViT-B/L/H at a
size that runs in milliseconds. ``save_tiny_checkpoint`` writes its state dict with ``torch.save``.
"""

from __future__ import annotations

from functools import partial

TINY_MODEL_TYPE = "tiny_test"
WIDTH = 32


def build_tiny_sam():
    """An untrained tiny ``segment_anything.modeling.Sam`` (deterministic: seeded)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=1024, patch_size=16, embed_dim=WIDTH, depth=2, num_heads=2, mlp_ratio=2.0,
            out_chans=WIDTH, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=14, global_attn_indexes=()),
        prompt_encoder=PromptEncoder(embed_dim=WIDTH, image_embedding_size=(64, 64),
                                     input_image_size=(1024, 1024), mask_in_chans=4),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=WIDTH, mlp_dim=64, num_heads=2),
            transformer_dim=WIDTH, iou_head_depth=3, iou_head_hidden_dim=WIDTH),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def save_tiny_checkpoint(path: str) -> str:
    """Register the tiny builder with sesam and save a tiny SAM's state dict at ``path``."""
    import torch

    from stages.sam.sam_backend import register_sam_builder

    register_sam_builder(TINY_MODEL_TYPE, build_tiny_sam)
    torch.save(build_tiny_sam().state_dict(), path)
    return path


def save_tiny_sam2(directory: str) -> tuple[str, str]:
    """A tiny SAM 2.1 made from the real ``sam2.1_hiera_t`` config with a smaller Hiera trunk (width 16,
    blocks 1, 1, 2, 1) and one memory-attention layer, randomly initialised (seeded): writes its
    config YAML and its checkpoint (``{"model": state_dict}``) into ``directory``; returns
    (checkpoint path, config path)."""
    import os

    import sam2
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    config = OmegaConf.load(os.path.join(sam2.__path__[0], "configs", "sam2.1", "sam2.1_hiera_t.yaml"))
    trunk = config.model.image_encoder.trunk
    trunk.embed_dim, trunk.stages, trunk.global_att_blocks = 16, [1, 1, 2, 1], [3]
    config.model.image_encoder.neck.backbone_channel_list = [128, 64, 32, 16]
    config.model.memory_attention.num_layers = 1
    config_path = os.path.join(directory, "tiny_sam2.1.yaml")
    OmegaConf.save(config, config_path)
    torch.manual_seed(0)
    model = instantiate(config.model, _recursive_=True)
    checkpoint = os.path.join(directory, "tiny_sam2.pt")
    torch.save({"model": model.state_dict()}, checkpoint)
    return checkpoint, config_path
