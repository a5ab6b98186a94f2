"""Exponential moving average of the weights, for both training stages: the diffusion model that is
saved and sampled (paper A.1: momentum 0.999) and the FR backbone that is saved and verified.

After each optimiser step (``n`` updates so far):
  1. decay ``d = decay``; with ``warmup``, ``d = min(decay, (1 + n) / (10 + n))``, so that a short
     run's average follows the fast-moving early weights instead of the random start;
  2. ``shadow <- d * shadow + (1 - d) * value`` for every floating-point tensor tracked;
  3. integer tensors (BatchNorm's ``num_batches_tracked``) are copied.
Tracked are the parameters, or with ``buffers`` the whole state dict (parameters and BatchNorm
running statistics: the FR backbone averages both).  The shadow lives on the module's device.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """The weight average of ``module`` (see the module docstring)."""

    def __init__(self, module: nn.Module, decay: float = 0.999, warmup: bool = False, buffers: bool = False) -> None:
        self.decay = decay
        self.warmup = warmup
        self.buffers = buffers
        self.num_updates = 0
        tracked = self._tracked(module)
        self.names = list(tracked)
        self.shadow = [
            v.detach().clone().float() if v.is_floating_point() else v.detach().clone() for v in tracked.values()
        ]

    def _tracked(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors averaged, by name; they share storage with ``module`` (``copy_to`` writes through)."""
        return module.state_dict() if self.buffers else dict(module.named_parameters())

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        decay = self.current_decay()  # 1.
        values = list(self._tracked(module).values())
        floats = [i for i, s in enumerate(self.shadow) if s.is_floating_point()]
        shadow = [self.shadow[i] for i in floats]
        if shadow:
            torch._foreach_mul_(shadow, decay)  # 2.
            torch._foreach_add_(shadow, [values[i].detach().float() for i in floats], alpha=1.0 - decay)
        for s, v in zip(self.shadow, values, strict=True):
            if not s.is_floating_point():
                s.copy_(v)  # 3.
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged tensors into ``module`` (same architecture)."""
        for shadow, v in zip(self.shadow, self._tracked(module).values(), strict=True):
            v.copy_(shadow)

    def averaged(self) -> dict[str, torch.Tensor]:
        """The average as a state dict (on the CPU, contiguous): with ``buffers``, the module's own layout."""
        return {
            k: s.detach().cpu().clone(memory_format=torch.contiguous_format)
            for k, s in zip(self.names, self.shadow, strict=True)
        }

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
        with torch.no_grad():
            for s, saved in zip(self.shadow, state["shadow"], strict=True):
                s.copy_(saved)  # on this EMA's device, in its dtype
        self.num_updates = int(state["num_updates"])

    def to(self, device: torch.device | str) -> "EMA":
        self.shadow = [s.to(device) for s in self.shadow]
        return self
