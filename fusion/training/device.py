"""Device and mixed precision for training and scoring (device resolution is shared with the
text encoder, so `--device` means the same thing everywhere)."""

from __future__ import annotations

import contextlib

import torch

from text_encoder.device import resolve_device

__all__ = ["autocast", "resolve_device"]


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed), a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
