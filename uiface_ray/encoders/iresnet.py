"""IResNet face-recognition backbones (IR-18/34/50/100) in the insightface state-dict layout.

The parameter names are those of insightface's ``arcface_torch`` checkpoints and of ElasticFace,
so their ``backbone.pth`` files load directly (after a leading ``module.`` is stripped)::

    conv1, bn1, prelu                                    stem, 3x3 conv at stride 1
    layerK.i.{bn1, conv1, bn2, prelu, conv2, bn3}       improved residual block (K = 1..4)
    layerK.0.downsample.{0, 1}                           1x1 stride-2 conv + BN on the shortcut
    bn2, dropout, fc, features                           BN, flatten, Linear(512*7*7 -> E), BN1d

Input: RGB, 112x112, NCHW float, normalised as ``(x / 255 - 0.5) / 0.5`` (values in [-1, 1]).
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
    """The insightface IResNet: four stride-2 stages take 112x112 to 7x7, then an FC embedding."""

    def __init__(self, layers: tuple[int, int, int, int], embedding_dim: int = 512, dropout: float = 0.0):
        super().__init__()
        self.depth_layers = tuple(layers)
        self.embedding_dim = embedding_dim
        self.conv1 = _conv3x3(3, STAGE_WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0], eps=BN_EPS)
        self.prelu = nn.PReLU(STAGE_WIDTHS[0])
        in_ch = STAGE_WIDTHS[0]
        for k, (blocks, width) in enumerate(zip(layers, STAGE_WIDTHS), start=1):
            setattr(self, f"layer{k}", self._make_stage(in_ch, width, blocks))
            in_ch = width
        spatial = INPUT_SIZE // 2 ** len(STAGE_WIDTHS)  # 112 -> 7
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
        if x.ndim != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"IResNet expects input (B, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {tuple(x.shape)}")
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


def build_iresnet(depth: int, embedding_dim: int = 512, dropout: float = 0.0) -> IResNet:
    """An IResNet of ``depth`` in {18, 34, 50, 100}, randomly initialised as in insightface.

    Expects RGB 112x112 input normalised with :func:`normalize_faces` ((x/255 - 0.5) / 0.5).
    """
    if depth not in IRESNET_LAYERS:
        raise ValueError(f"iresnet depth must be one of {sorted(IRESNET_LAYERS)}, got {depth!r}")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
    return IResNet(IRESNET_LAYERS[depth], embedding_dim=embedding_dim, dropout=dropout)


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

    model = build_iresnet(depth, embedding_dim)
    state = read_state_dict(url, storage)
    load_state_strict(model, state, url, what=f"IResNet-{depth} (embedding_dim {embedding_dim})")
    return model.eval(), state_fingerprint(model.state_dict())


class IResNetEncoder(IdentityEncoder):
    """An IResNet as an identity encoder: chips resized to 112x112, normalised, embedded, L2-normalised.

    Chips of another size are resized (bilinear, antialiased) to 112x112 first.
    """

    def __init__(self, model: IResNet, fingerprint: str, device: str = "cpu", batch_size: int = 64,
                 depth: int | None = None):
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
            chunk = torch.from_numpy(np.ascontiguousarray(images[start:start + self.batch_size]))
            x = normalize_faces(chunk.to(self.device))  # (b, 3, H, W)
            if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
                x = nn.functional.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                              align_corners=False, antialias=True)
            out.append(self.model(x).float().cpu().numpy())  # (b, E)
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(out))
