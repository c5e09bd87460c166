"""TinyViT, MobileSAM's image encoder, in the fused inference form its ONNX export holds.

The architecture is TinyViT (Wu et al., 2022; Microsoft, MIT licence) as MobileSAM adapted it for
SAM's 1024x1024 input (Zhang et al., 2023, ``mobile_sam/modeling/tiny_vit_sam.py``, Apache-2.0):
a convolutional stem and MBConv stage, three stages of windowed attention blocks with a depthwise
"local" convolution between attention and MLP, the last patch merging with stride 1 so the output
stays 64x64, and SAM's neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d) to 256 channels.

Written here for inference only, in the form an exported model keeps:

- every ``Conv2d_BN`` is one ``Conv2d`` with a bias (the BatchNorm folded into it), kept under the
  child name ``c`` so that parameter names match the export's scopes (``patch_embed.seq.0.c``);
- each attention's relative-position bias is the gathered (heads, N, N) table (TinyViT's ``ab``),
  a buffer rather than the (heads, offsets) parameter it is gathered from;
- no dropout, drop path, classifier head or gradient checkpointing.

Input: (B, 3, 1024, 1024) float32, SAM-normalised and padded; output: (B, 256, 64, 64).
"""

from __future__ import annotations

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn
from torch.nn import functional as F

MOBILE_SAM = dict(embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10),
                  window_sizes=(7, 7, 14, 7))
"""MobileSAM's TinyViT-5M configuration (``build_sam_vit_t``)."""


class FusedConv(nn.Sequential):
    """A ``Conv2d_BN`` with its BatchNorm folded into the convolution: one biased conv named ``c``."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1):
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel, stride, padding, groups=groups, bias=True)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions with a GELU between: (B, 3, L, L) -> (B, dim, L/4, L/4)."""

    def __init__(self, dim: int):
        super().__init__()
        self.seq = nn.Sequential(FusedConv(3, dim // 2, 3, 2, 1), nn.GELU(), FusedConv(dim // 2, dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (x4), 3x3 depthwise, 1x1 project, residual, GELU after each."""

    def __init__(self, dim: int, expand_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1, self.act1 = FusedConv(dim, hidden), nn.GELU()
        self.conv2, self.act2 = FusedConv(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU()
        self.conv3, self.act3 = FusedConv(hidden, dim), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act3(self.conv3(self.act2(self.conv2(self.act1(self.conv1(x))))) + x)


class PatchMerging(nn.Module):
    """(B, C, H, W) or (B, H*W, C) -> (B, H'*W', out_dim): 1x1 conv, 3x3 depthwise conv (stride 2,
    or 1 into MobileSAM's last stage), 1x1 conv."""

    def __init__(self, resolution: int, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = FusedConv(dim, out_dim)
        self.conv2 = FusedConv(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = FusedConv(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.view(len(x), self.resolution, self.resolution, -1).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention within a window of N = window^2 tokens, with a learned bias per
    head and relative offset (here the gathered (heads, N, N) table ``ab``)."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("ab", torch.zeros(num_heads, window * window, window * window))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(self.norm(x)).view(batch, tokens, self.num_heads, 3 * self.head_dim).permute(0, 2, 1, 3) \
            .split(self.head_dim, dim=3)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.ab)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """LayerNorm, Linear (x4), GELU, Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention (the map padded bottom/right to whole windows), residual; 3x3 depthwise
    local conv; MLP, residual. (B, H*W, C) -> (B, H*W, C)."""

    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = FusedConv(dim, dim, 3, 1, 1, groups=dim)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        side, window = self.resolution, self.window
        if side == window:
            return self.attn(x)
        pad = (window - side % window) % window
        grid = F.pad(x.view(batch, side, side, dim), (0, 0, 0, pad, 0, pad))
        count = (side + pad) // window
        windows = grid.view(batch, count, window, count, window, dim).transpose(2, 3) \
            .reshape(batch * count * count, window * window, dim)
        grid = self.attn(windows).view(batch, count, count, window, window, dim).transpose(2, 3) \
            .reshape(batch, side + pad, side + pad, dim)
        return grid[:, :side, :side].reshape(batch, length, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        x = x + self._windowed_attention(x)
        x = self.local_conv(x.transpose(1, 2).reshape(batch, dim, self.resolution, self.resolution))
        x = x.view(batch, dim, length).transpose(1, 2)
        return x + self.mlp(x)


class Stage(nn.Module):
    """``blocks`` at one resolution, then an optional ``downsample`` (PatchMerging)."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """MobileSAM's image encoder: (B, 3, img_size, img_size) -> (B, 256, img_size/16, img_size/16)."""

    def __init__(self, img_size: int = 1024, embed_dims=MOBILE_SAM["embed_dims"], depths=MOBILE_SAM["depths"],
                 num_heads=MOBILE_SAM["num_heads"], window_sizes=MOBILE_SAM["window_sizes"], out_chans: int = 256):
        super().__init__()
        self.img_size = img_size
        self.out_side = img_size // 16
        self.patch_embed = PatchEmbed(embed_dims[0])
        patches = img_size // 4
        resolutions = [patches // 2 ** (i - 1 if i == 3 else i) for i in range(len(depths))]
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            out_dim = embed_dims[min(i + 1, len(embed_dims) - 1)]
            last = i == len(depths) - 1
            downsample = None if last else PatchMerging(resolutions[i], embed_dims[i], out_dim,
                                                        stride=1 if i + 1 == len(depths) - 1 else 2)
            if i == 0:
                blocks = [MBConv(embed_dims[0]) for _ in range(depth)]
            else:
                blocks = [TinyViTBlock(embed_dims[i], resolutions[i], num_heads[i], window_sizes[i])
                          for _ in range(depth)]
            self.layers.append(Stage(blocks, downsample))
        self.neck = nn.Sequential(nn.Conv2d(embed_dims[-1], out_chans, 1, bias=False), LayerNorm2d(out_chans),
                                  nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        x = x.view(len(x), self.out_side, self.out_side, -1).permute(0, 3, 1, 2)
        return self.neck(x)
