"""FR training core (pure torch): IResNet + margin head, the optimiser, one optimisation step, batches.

The training loop (:mod:`uiface_ray.fr.loop`) calls these per step (its weight average is the
shared :class:`uiface_ray.optim.ema.EMA`); nothing here knows about Ray or storage.  UIFace A.1:
IR-50 backbone, ArcFace (s = 64, m = 0.5), 40 epochs, step-wise learning rates 0.1, 0.01, 0.001,
0.0001, AdaFace augmentation with probability 0.2.
The backbone's state dict keeps insightface's layout (``conv1``, ``layer1.0.bn1`` ...), so a
saved ``backbone.pth`` loads with ``uiface_ray.encoders.load_encoder(kind="iresnet")``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from uiface_ray.encoders.iresnet import build_iresnet
from uiface_ray.fr.heads import build_head
from uiface_ray.fr.augment import AugmentSpec, augment_batch


class FRModel(nn.Module):
    """Backbone (insightface IResNet sized for its input) and a margin head; ``forward`` returns the loss."""

    def __init__(
        self,
        depth: int,
        num_classes: int,
        embedding_dim: int = 512,
        s: float = 64.0,
        m: float = 0.5,
        generator: torch.Generator | None = None,
        head: str = "arcface",
        input_size: int = 112,
        width: float = 1.0,
    ):
        super().__init__()
        self.backbone = build_iresnet(depth, embedding_dim, input_size=input_size, width=width)
        self.head = build_head(head, embedding_dim, num_classes, s, m, generator)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = self.backbone(images)  # (B, E): under the caller's autocast, if any
        with torch.autocast(images.device.type, enabled=False):  # cosines times s = 64: float32
            return self.head(embeddings.float(), labels)


def build_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


@dataclass(frozen=True)
class StepResult:
    loss: float
    lr: float


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: np.ndarray,
    labels: np.ndarray,
    lr: float,
    generator: torch.Generator | None,
    augment: AugmentSpec | None,
    device: torch.device | str = "cpu",
    autocast: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> StepResult:
    """Augment (``augment``: with ``generator``; None: the images came augmented), normalise to
    [-1, 1] as insightface, one forward/backward/update; the forward pass under ``autocast`` (a dtype,
    or None for float32), the loss scaled by ``scaler`` (CUDA float16).  ``images``: uint8
    (B, H, W, 3) or float (B, 3, H, W) in [0, 1]."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    x = to_unit_range(images) if images.dtype == np.uint8 else torch.as_tensor(images, dtype=torch.float32)
    if augment is not None:
        x = augment_batch(x, generator, augment)
    x = ((x - 0.5) / 0.5).to(device).contiguous(memory_format=torch.channels_last)  # (B, 3, n, n) in [-1, 1]
    y = torch.as_tensor(labels, dtype=torch.long, device=device)
    model.train()
    with torch.autocast(torch.device(device).type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        loss = model(x, y)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"FR loss is {float(loss)} at lr {lr}: lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return StepResult(float(loss.detach()), lr)


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's state dict in insightface layout (a DDP ``module.`` wrapper is looked through)."""
    inner = getattr(model, "module", model)
    return {
        k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in inner.backbone.state_dict().items()
    }


def state_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()
