"""Identity encoders: aligned face chips -> L2-normalised identity embeddings.

``load_encoder(EncoderConfig(kind="dlib"))`` gives dlib's 128-d ResNet descriptor (centred);
``load_encoder(EncoderConfig(kind="iresnet", path=..., depth=50))`` an insightface IResNet (512-d).
Names are imported on first use (``uiface_ray._lazy``): importing the config does not import torch.
"""

from uiface_ray._lazy import lazy_exports

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "EncoderConfig": "config",
    "EncoderError": "base",
    "IResNetEncoder": "iresnet",
    "IdentityEncoder": "base",
    "build_iresnet": "iresnet",
    "l2_normalize": "base",
    "load_encoder": "load",
    "load_iresnet": "iresnet",
    "read_state_dict": "checkpoint",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
