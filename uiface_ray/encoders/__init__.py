"""Identity encoders behind one interface: aligned face chips -> L2-normalised embeddings.

``load_encoder(EncoderConfig(kind="dlib"))`` gives dlib's 128-d ResNet descriptor (centred);
``load_encoder(EncoderConfig(kind="iresnet", path=..., depth=50))`` an insightface IResNet (512-d).
"""

from uiface_ray.encoders.base import (
    EncoderConfig,
    EncoderError,
    IdentityEncoder,
    l2_normalize,
    load_encoder,
)
from uiface_ray.encoders.checkpoint import CheckpointError, read_state_dict
from uiface_ray.encoders.iresnet import IResNetEncoder, build_iresnet, load_iresnet

__all__ = [
    "CheckpointError",
    "EncoderConfig",
    "EncoderError",
    "IResNetEncoder",
    "IdentityEncoder",
    "build_iresnet",
    "l2_normalize",
    "load_encoder",
    "load_iresnet",
    "read_state_dict",
]
