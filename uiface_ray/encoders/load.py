"""The encoder factory: build the identity encoder an :class:`EncoderConfig` describes.

Kept apart from ``base`` so that the interface module does not import its own implementations."""

from __future__ import annotations

from uiface_ray.encoders.base import EncoderError, IdentityEncoder
from uiface_ray.encoders.config import EncoderConfig

__all__ = ["load_encoder"]


def load_encoder(spec: EncoderConfig | dict, storage=None) -> IdentityEncoder:
    """Build the encoder ``spec`` describes; weights at s3:// URLs are read through the storage layer.

    ``storage`` is a :class:`uiface_ray.config.StorageConfig` (endpoint, credentials) or None.
    """
    if isinstance(spec, dict):
        spec = EncoderConfig.model_validate(spec)
    if spec.kind == "iresnet":
        from uiface_ray.encoders.iresnet import IResNetEncoder

        return IResNetEncoder.from_config(spec, storage)
    if spec.kind == "dlib":
        from uiface_ray.encoders.dlib_resnet import DlibResNetEncoder

        return DlibResNetEncoder.from_config(spec, storage)
    raise EncoderError(f"unknown encoder kind {spec.kind!r}: expected 'dlib' or 'iresnet'")
