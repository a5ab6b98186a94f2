"""Decode, resize and re-encode face images; every error names the image it came from."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from uiface_ray.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "EncodedFace", "ImageError", "decode_rgb", "decode_batch", "prepare_image"]

def _pillow_suffixes() -> tuple[str, ...]:
    """Every file suffix that Pillow can open (JPEG, PNG, BMP, WebP, PGM/PPM, TIFF, GIF, ...)."""
    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN))


IMAGE_SUFFIXES = _pillow_suffixes()
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


class ImageError(InputError, ValueError):
    """An image cannot be decoded or has the wrong size; the message names its file or record."""


@dataclass(frozen=True)
class EncodedFace:
    data: bytes  # encoded JPEG/PNG
    width: int
    height: int


def _open_rgb(data: bytes, source: str) -> tuple[Image.Image, bool]:
    """The decoded RGB image, and whether ``data`` is already an RGB file (no conversion)."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"unreadable image {source}: {type(exc).__name__}: {exc}") from None
    if img.mode == "RGB":
        return img, True
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float grey: scale to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8), mode="L")
    return img.convert("RGB"), False


def decode_rgb(data: bytes, source: str) -> np.ndarray:
    """Encoded bytes -> uint8 RGB ``(H, W, 3)``."""
    img, _ = _open_rgb(data, source)
    return np.asarray(img, dtype=np.uint8)


def decode_batch(images: Sequence[bytes], sources: Sequence[str]) -> np.ndarray:
    """Encoded images of one size -> uint8 ``(B, H, W, 3)``; a size mismatch names the image."""
    arrays = [decode_rgb(data, src) for data, src in zip(images, sources)]
    if not arrays:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    for arr, src in zip(arrays, sources):
        if arr.shape != arrays[0].shape:
            raise ImageError(f"image {src} is {arr.shape[1]}x{arr.shape[0]}, but {sources[0]} is "
                             f"{arrays[0].shape[1]}x{arrays[0].shape[0]}: a face table holds one size")
    return np.stack(arrays)  # (B, H, W, 3)


def _centre_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    if w == h:
        return img
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def prepare_image(data: bytes, source: str, resolution: int | None,
                  image_format: Literal["jpeg", "png"] = "jpeg", jpeg_quality: int = 95) -> EncodedFace:
    """An aligned chip at ``resolution`` x ``resolution``, encoded as ``image_format``; with
    ``resolution=None`` the image keeps its size and shape.

    Non-square images are centre-cropped to a square before resizing.  Grey, palette and
    16-bit images are converted to RGB.  The original bytes are kept, without re-compression,
    when the size and format already match.
    """
    img, was_rgb = _open_rgb(data, source)
    target = _PIL_FORMATS[image_format]
    square = img
    if resolution is not None and img.size != (resolution, resolution):
        square = _centre_square(img).resize((resolution, resolution), Image.Resampling.LANCZOS)
    if square is img and was_rgb and img.format == target:
        return EncodedFace(data, img.width, img.height)
    buf = io.BytesIO()
    if target == "JPEG":
        square.save(buf, format="JPEG", quality=jpeg_quality)
    else:
        square.save(buf, format="PNG")
    return EncodedFace(buf.getvalue(), square.width, square.height)
