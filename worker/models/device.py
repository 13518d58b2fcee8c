"""Which torch device the worker runs its models on (``WORKER_DEVICE``)."""

from __future__ import annotations

import torch

from worker.errors import ConfigError


def resolve_device(choice: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    if choice == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if choice == "cuda":
        raise ConfigError("WORKER_DEVICE=cuda but torch sees no CUDA device; check the driver or use auto")
    return "cpu"
