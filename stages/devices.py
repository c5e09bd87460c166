"""Device names, one kind for every command that computes: ``auto`` (CUDA when available, else the
CPU), ``cpu``, ``cuda`` (the first GPU, or this process's GPU under torchrun) or ``cuda:N``."""

from __future__ import annotations

import re

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(device: str) -> str:
    """``device`` if it is one of DEVICE_NAMES (N a GPU index), else ValueError."""
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"'{device}' is no device: use {', '.join(DEVICE_NAMES)}")
    return device


def is_cuda(device: str) -> bool:
    """Whether ``device`` names a GPU (``cuda`` or ``cuda:N``; not ``auto``)."""
    return device.startswith("cuda")


def cuda_index(device: str) -> int:
    """The GPU index of ``cuda:N`` (0 for ``cuda``)."""
    return int(device.partition(":")[2] or 0)
