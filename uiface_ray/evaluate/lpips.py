"""LPIPS-VGG (Zhang et al., 2018), only from weight files the user supplies.

Two files are needed and neither can be downloaded here: the ImageNet VGG16 weights in
torchvision's state-dict layout (``features.0.weight`` ... ``features.28.bias``) and the LPIPS
linear layers of Zhang et al. (``vgg.pth``: ``lin0.model.1.weight`` ... ``lin4.model.1.weight``).
Without both this module computes nothing: a number is reported as LPIPS only when those
weights produced it.  The network is written here (no torchvision): VGG16's convolutions up to
relu5_3, taps at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; inputs in [-1, 1] are shifted and
scaled as in LPIPS; each tap is unit-normalised over channels, the squared difference is
weighted by the 1x1 linear layer, averaged over space and summed over taps.
"""

from __future__ import annotations

import torch
from torch import nn

from uiface_ray.encoders.checkpoint import load_state_strict, read_state_dict, state_fingerprint

# VGG16 "features": (conv out channels per layer, 'M' = max-pool), torchvision's indices.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # features indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_TAP_CHANNELS = (64, 128, 256, 512, 512)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class _LinearLayer(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPSVGG(nn.Module):
    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in _VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(item)
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList([_LinearLayer(c) for c in _TAP_CHANNELS])
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
            if i == _TAPS[-1]:
                break
        return out

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of a[i] and b[i]; both (B, 3, H, W) in [-1, 1] -> (B,)."""
        total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for lin, fa, fb in zip(self.lins, self._taps(a), self._taps(b)):
            na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # unit norm over channels
            nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin.model[1]((na - nb) ** 2).mean((1, 2, 3))  # (B,)
        return total


def load_lpips_vgg(vgg_url: str, lin_url: str, storage=None) -> tuple[LPIPSVGG, str]:
    """Build LPIPS-VGG from the two weight files; errors name the file and the bad keys."""
    model = LPIPSVGG()
    vgg = {k: v for k, v in read_state_dict(vgg_url, storage).items() if k.startswith("features.")}
    load_state_strict(model.features, {k[len("features.") :]: v for k, v in vgg.items()}, vgg_url)
    lin = read_state_dict(lin_url, storage)
    lin = {k.replace("lin", "", 1): v for k, v in lin.items()}  # lin0.model.1.weight -> 0.model.1.weight
    load_state_strict(model.lins, lin, lin_url)
    fingerprint = state_fingerprint(model.state_dict())
    return model.eval(), fingerprint


def lpips_distance(model: LPIPSVGG, a, b, batch_size: int = 16) -> torch.Tensor:
    """uint8 (B, H, W, 3) numpy pairs -> (B,) LPIPS distances."""
    out = []
    for i in range(0, len(a), batch_size):
        xa = torch.from_numpy(a[i : i + batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1
        xb = torch.from_numpy(b[i : i + batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append(model(xa, xb))
    return torch.cat(out) if out else torch.zeros(0)


__all__ = ["LPIPSVGG", "load_lpips_vgg", "lpips_distance"]
