"""IResNet face-recognition backbones (IR-18/34/50/100) in the insightface state-dict layout.

The parameter names are those of insightface's ``arcface_torch`` checkpoints and of ElasticFace,
so their ``backbone.pth`` files load directly (after a leading ``module.`` is stripped)::

    conv1, bn1, prelu                                    stem, 3x3 conv at stride 1
    layerK.i.{bn1, conv1, bn2, prelu, conv2, bn3}       improved residual block (K = 1..4)
    layerK.0.downsample.{0, 1}                           1x1 stride-2 conv + BN on the shortcut
    bn2, dropout, fc, features                           BN, flatten, Linear(512*7*7 -> E), BN1d

Input: RGB, ``input_size`` x ``input_size`` (112 for insightface's models), NCHW float, normalised
as ``(x / 255 - 0.5) / 0.5`` (values in [-1, 1]).  Four stride-2 stages reduce the side by 16, so
the fc layer is sized for the input: 112 -> 7x7, 64 -> 4x4, 32 -> 2x2.  ``width`` scales the stage
widths (64, 128, 256, 512); at 112 px and width 1 the model is insightface's, key for key and shape
for shape.  A checkpoint records both in its shapes (:func:`iresnet_geometry`), so any of these
loads as an encoder without being told its input size or width.
Output: ``(B, embedding_dim)`` raw features (not normalised; the encoder L2-normalises them).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from uiface_ray.encoders.base import EncoderConfig, EncoderError, IdentityEncoder, check_images, l2_normalize

__all__ = [
    "IRESNET_LAYERS",
    "IBasicBlock",
    "IResNet",
    "IResNetEncoder",
    "build_iresnet",
    "iresnet_geometry",
    "load_iresnet",
    "normalize_faces",
]

# Blocks per stage, as in insightface's iresnet18/34/50/100.
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
STAGE_WIDTHS = (64, 128, 256, 512)
INPUT_SIZE = 112
BN_EPS = 1e-5
STRIDE = 2 ** len(STAGE_WIDTHS)  # total downsampling of the four stages: side / 16


def stage_widths(width: float) -> tuple[int, int, int, int]:
    """Channels of the four stages for a width multiplier: ``round(64 * width)`` doubled stage by stage
    (1.0: insightface's 64, 128, 256, 512; 0.5: 32, 64, 128, 256)."""
    base = int(round(STAGE_WIDTHS[0] * width))
    if base < 1:
        raise ValueError(f"iresnet width multiplier must give at least 1 channel (64 * width), got {width}")
    return tuple(base * c // STAGE_WIDTHS[0] for c in STAGE_WIDTHS)


def check_input_size(input_size: int) -> int:
    if input_size < STRIDE or input_size % STRIDE:
        raise ValueError(
            f"iresnet input_size must be a positive multiple of {STRIDE} (32, 64, 112, ...), got {input_size}"
        )
    return int(input_size)


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the (downsampled) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=BN_EPS)
        self.conv1 = _conv3x3(in_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = _conv3x3(out_ch, out_ch, stride)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.bn1(x)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.prelu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        return out + shortcut


class IResNet(nn.Module):
    """The insightface IResNet: four stride-2 stages take the input side to side/16 (112 -> 7), then
    an FC embedding sized for that map."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        embedding_dim: int = 512,
        dropout: float = 0.0,
        input_size: int = INPUT_SIZE,
        width: float = 1.0,
    ):
        super().__init__()
        self.depth_layers = tuple(layers)
        self.embedding_dim = embedding_dim
        self.input_size = check_input_size(input_size)
        self.width = float(width)
        widths = stage_widths(width)
        self.conv1 = _conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0], eps=BN_EPS)
        self.prelu = nn.PReLU(widths[0])
        in_ch = widths[0]
        for k, (blocks, out_ch) in enumerate(zip(layers, widths), start=1):
            setattr(self, f"layer{k}", self._make_stage(in_ch, out_ch, blocks))
            in_ch = out_ch
        spatial = self.input_size // STRIDE  # 112 -> 7, 64 -> 4, 32 -> 2
        self.bn2 = nn.BatchNorm2d(in_ch, eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(in_ch * spatial * spatial, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=BN_EPS)
        self._init_weights()

    @staticmethod
    def _make_stage(in_ch: int, out_ch: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=2, bias=False),
            nn.BatchNorm2d(out_ch, eps=BN_EPS),
        )
        stage = [IBasicBlock(in_ch, out_ch, stride=2, downsample=downsample)]
        stage += [IBasicBlock(out_ch, out_ch) for _ in range(blocks - 1)]
        return nn.Sequential(*stage)

    def _init_weights(self) -> None:
        # As insightface: N(0, 0.1) convs, unit BN; the final BN1d scale is fixed at 1.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.features.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.input_size
        if x.ndim != 4 or x.shape[1:] != (3, n, n):
            raise ValueError(f"IResNet expects input (B, 3, {n}, {n}), got {tuple(x.shape)}")
        # Shapes at 112 px and width 1 (insightface's model); other sizes scale the sides by n / 112.
        x = self.prelu(self.bn1(self.conv1(x)))  # (B, 64, 112, 112)
        x = self.layer1(x)  # (B, 64, 56, 56)
        x = self.layer2(x)  # (B, 128, 28, 28)
        x = self.layer3(x)  # (B, 256, 14, 14)
        x = self.layer4(x)  # (B, 512, 7, 7)
        x = self.bn2(x)
        x = torch.flatten(x, 1)  # (B, 512 * 7 * 7)
        x = self.dropout(x)
        x = self.fc(x)  # (B, E)
        return self.features(x)


def build_iresnet(
    depth: int, embedding_dim: int = 512, dropout: float = 0.0, input_size: int = INPUT_SIZE, width: float = 1.0
) -> IResNet:
    """An IResNet of ``depth`` in {18, 34, 50, 100}, randomly initialised as in insightface.

    Expects RGB ``input_size`` x ``input_size`` input normalised with :func:`normalize_faces`
    ((x/255 - 0.5) / 0.5); ``width`` multiplies the stage widths.
    """
    if depth not in IRESNET_LAYERS:
        raise ValueError(f"iresnet depth must be one of {sorted(IRESNET_LAYERS)}, got {depth!r}")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
    return IResNet(
        IRESNET_LAYERS[depth], embedding_dim=embedding_dim, dropout=dropout, input_size=input_size, width=width
    )


def iresnet_geometry(state: dict, source: str = "<state dict>") -> tuple[int, float]:
    """(input_size, width) of the IResNet a state dict was saved from, read from its shapes:
    ``conv1.weight`` (64 * width, 3, 3, 3) and ``fc.weight`` (E, 512 * width * (input_size / 16) ** 2).
    Where those keys are missing, insightface's (112, 1.0), so that the strict load names them."""
    from uiface_ray.encoders.checkpoint import CheckpointError

    stem, fc, top = state.get("conv1.weight"), state.get("fc.weight"), state.get("bn2.weight")
    width = stem.shape[0] / STAGE_WIDTHS[0] if stem is not None and stem.ndim == 4 else 1.0
    if fc is None or top is None or fc.ndim != 2:
        return INPUT_SIZE, width
    side = int(round((fc.shape[1] / top.shape[0]) ** 0.5))
    if side < 1 or side * side * top.shape[0] != fc.shape[1] or stage_widths(width)[-1] != top.shape[0]:
        raise CheckpointError(
            f"{source}: fc.weight {tuple(fc.shape)} and conv1.weight "
            f"{tuple(stem.shape) if stem is not None else None} fit no IResNet input size and width"
        )
    return side * STRIDE, width


def normalize_faces(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(B, H, W, 3)`` -> float ``(B, 3, H, W)`` in [-1, 1]: ``(x / 255 - 0.5) / 0.5``."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected RGB images (B, H, W, 3), got shape {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    return (x / 255.0 - 0.5) / 0.5


# --------------------------------------------------------------------------------------------
# Checkpoints and the encoder


def load_iresnet(url: str, depth: int, embedding_dim: int = 512, storage=None) -> tuple[IResNet, str]:
    """Build an IResNet and load an insightface-layout checkpoint into it (no pickled code runs).

    Returns ``(model in eval mode, weight fingerprint)``.  Missing, unexpected or mis-shaped keys
    raise one :class:`CheckpointError` naming ``url`` and the keys.
    """
    from uiface_ray.encoders.checkpoint import load_state_strict, read_state_dict, state_fingerprint

    state = read_state_dict(url, storage)
    input_size, width = iresnet_geometry(state, url)
    model = build_iresnet(depth, embedding_dim, input_size=input_size, width=width)
    load_state_strict(model, state, url, what=f"IResNet-{depth} (embedding_dim {embedding_dim})")
    return model.eval(), state_fingerprint(model.state_dict())


class IResNetEncoder(IdentityEncoder):
    """An IResNet as an identity encoder: chips resized to the model's input size (112 for
    insightface's), normalised, embedded, L2-normalised.

    Chips of another size are resized (bilinear, antialiased) to the input size first.
    """

    def __init__(
        self, model: IResNet, fingerprint: str, device: str = "cpu", batch_size: int = 64, depth: int | None = None
    ):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.dim = model.embedding_dim
        self.name = f"iresnet-{depth}" if depth else "iresnet"
        self.fingerprint = fingerprint

    @classmethod
    def from_config(cls, spec: EncoderConfig, storage=None) -> "IResNetEncoder":
        if not spec.path:
            raise EncoderError("encoder.path is required for kind 'iresnet' (a .pth or .safetensors checkpoint)")
        model, fingerprint = load_iresnet(spec.path, spec.depth, spec.embedding_dim, storage)
        return cls(model, fingerprint, spec.device, spec.batch_size, spec.depth)

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> np.ndarray:
        images = check_images(images, self.name)
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size]))
            x = normalize_faces(chunk.to(self.device))  # (b, 3, H, W)
            n = self.model.input_size
            if x.shape[-2:] != (n, n):
                x = nn.functional.interpolate(x, size=(n, n), mode="bilinear", align_corners=False, antialias=True)
            out.append(self.model(x).float().cpu().numpy())  # (b, E)
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(out))
