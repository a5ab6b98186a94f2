"""Exponential moving average of the weights (paper A.1: momentum 0.999, the sampled model)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """``shadow <- decay * shadow + (1 - decay) * param`` after each optimiser step."""

    def __init__(self, module: nn.Module, decay: float = 0.999, warmup: bool = False) -> None:
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = [p.detach().clone().float() for p in module.parameters()]

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        decay = self.current_decay()
        params = [p.detach().float() for p in module.parameters()]
        torch._foreach_lerp_(self.shadow, params, 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged weights into ``module`` (same architecture)."""
        for shadow, p in zip(self.shadow, module.parameters(), strict=True):
            p.copy_(shadow.to(p.dtype))

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": [s.cpu() for s in self.shadow],
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError(f"EMA state has {len(state['shadow'])} tensors, the model {len(self.shadow)}")
        device = self.shadow[0].device if self.shadow else "cpu"
        self.shadow = [s.to(device).float() for s in state["shadow"]]
        self.num_updates = int(state["num_updates"])

    def to(self, device: torch.device | str) -> "EMA":
        self.shadow = [s.to(device) for s in self.shadow]
        return self
