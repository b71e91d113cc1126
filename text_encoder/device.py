"""Device selection shared by the text encoder and (later) the fusion model."""

from __future__ import annotations

import torch

from text_encoder.errors import InvalidDeviceError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto" | "cpu" | "cuda" | "cuda:N" | "mps" into a usable `torch.device`.

    "auto" prefers CUDA, then Apple MPS, then CPU. An explicit accelerator that is not
    available is an error rather than a silent CPU fallback, so a user who asked for a GPU
    notices when they do not get one.
    """
    if isinstance(device, torch.device):
        return device
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InvalidDeviceError(
            f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidDeviceError(
            f"device {device!r} requested but CUDA is not available on this machine"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidDeviceError(
            f"device {device!r} requested but MPS is not available on this machine"
        )
    return dev
