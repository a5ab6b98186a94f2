"""The identity-encoder interface: aligned face images in, L2-normalised embeddings out.

Every encoder has ``dim`` (embedding size), ``name`` (kind and variant), ``fingerprint`` (a short
hash of its weights, recorded next to everything built from its embeddings) and
``embed(images)`` taking uint8 RGB ``(B, H, W, 3)`` aligned face chips and returning float32
``(B, dim)`` rows of unit L2 norm.
"""

from __future__ import annotations

import abc
import json
import numpy as np

from uiface_ray.encoders.config import EncoderConfig
from uiface_ray.errors import InputError

__all__ = ["EncoderConfig", "EncoderError", "IdentityEncoder", "check_images", "l2_normalize"]


class EncoderError(InputError, ValueError):
    """An encoder cannot be built or was given input it cannot take; the message says which."""


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32)


def check_images(images: np.ndarray, who: str) -> np.ndarray:
    """Validate a uint8 ``(B, H, W, 3)`` batch; the error names the encoder and the bad shape/dtype."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise EncoderError(f"{who}.embed expects uint8 RGB images (B, H, W, 3), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise EncoderError(f"{who}.embed expects dtype uint8, got {images.dtype}")
    return images


class IdentityEncoder(abc.ABC):
    """Aligned face images -> L2-normalised identity embeddings of a known dimension."""

    dim: int
    name: str
    fingerprint: str

    @abc.abstractmethod
    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(B, H, W, 3)`` RGB chips -> float32 ``(B, dim)`` unit-norm rows."""

    def info(self) -> dict:
        """What is recorded about the encoder next to its embeddings (``uiface.encoder``)."""
        return {"kind": self.name.split("-")[0], "name": self.name, "dim": self.dim, "hash": self.fingerprint}

    def info_json(self) -> str:
        return json.dumps(self.info(), sort_keys=True)
