"""Learning-rate schedule: linear warm-up, then cosine annealing (paper A.1) or constant."""

from __future__ import annotations

import math

import torch

__all__ = ["lr_factor", "make_lr_scheduler"]


def lr_factor(
    step: int, max_steps: int, warmup_steps: int = 0, schedule: str = "cosine", min_lr_ratio: float = 0.0
) -> float:
    """Multiplier of the peak lr for optimiser step ``step`` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, max_steps, warmup_steps, schedule, min_lr_ratio)
    )
