"""Where training and evaluation run: the torch device and its mixed-precision type."""

from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA GPU")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CPUs and GPUs that have it, else float16 (with loss scaling)."""
    if device.type == "cpu" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
