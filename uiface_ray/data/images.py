"""Decode, resize and re-encode face images; every error names the image it came from.

One resize for every face image a model sees or a dataset is made of: :func:`resize_images` (and
:func:`decode_images`, which decodes and resizes) with :data:`RESIZE_FILTER`, Pillow's bicubic
filter.  Why bicubic:

- Pillow widens its kernel by the scale factor when it shrinks an image, so every downsizing is
  antialiased (a 112 px face brought to 32 px for a generator shows no moire) with any filter but
  NEAREST; the choice is about the kernel's shape.
- Bicubic (Keys, a = -0.5) keeps a face's edges (eyes, mouth, hairline) sharper than bilinear (a
  triangle kernel blurs at every step), and overshoots less than Lanczos-3, whose ringing halos
  show when a 32 px sample is enlarged to 112 px for an identity encoder.
- One filter everywhere means a generator's training images (``train.data``), the real faces it
  is compared with at its own size (``evaluate.faceset.at_resolution``), its samples enlarged for
  an encoder, and the faces of a prepared dataset (:func:`prepare_image`) are all made the same
  way: a difference in a metric is never a difference in filters.

Not this function: ``sample.api.to_uint8`` resizes the sampler's float tensor before rounding
(bilinear, no antialias) to match the official release's saved images exactly; the iresnet
encoder resizes its input tensor inside the model (torch, on the device).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from uiface_ray.errors import InputError

__all__ = [
    "IMAGE_SUFFIXES",
    "RESIZE_FILTER",
    "EncodedFace",
    "ImageError",
    "decode_batch",
    "decode_images",
    "decode_rgb",
    "prepare_image",
    "resize_images",
]

RESIZE_FILTER = Image.Resampling.BICUBIC  # the one filter for resizing face images (module docstring)


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
        raise ImageError(f"unreadable image {source}: not a decodable image ({type(exc).__name__}: {exc})") from None
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


def _resize(img: Image.Image, width: int, height: int) -> Image.Image:
    return img if img.size == (width, height) else img.resize((width, height), RESIZE_FILTER)


def resize_images(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` -> uint8 ``(N, h, w, 3)`` with :data:`RESIZE_FILTER`; ``size`` is a side
    or ``(h, w)``.  Images already of that size are returned unchanged."""
    height, width = (size, size) if isinstance(size, int) else size
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
    if images.shape[1:3] == (height, width):
        return images
    out = np.empty((len(images), height, width, 3), dtype=np.uint8)  # (N, h, w, 3)
    for i, im in enumerate(images):
        out[i] = np.asarray(_resize(Image.fromarray(im), width, height))
    return out


def decode_images(
    encoded: Sequence[bytes], size: int | None = None, sources: Sequence[str] | None = None
) -> np.ndarray:
    """Encoded images -> uint8 ``(N, size, size, 3)`` RGB, resized with :data:`RESIZE_FILTER` (a
    non-square image is stretched, not cropped); with ``size=None`` all must share one size.
    Errors name the image by ``sources`` (default ``row <i>``)."""
    names = list(sources) if sources is not None else [f"row {i}" for i in range(len(encoded))]
    out = None
    for i, (data, source) in enumerate(zip(encoded, names)):
        img, _ = _open_rgb(data, source)
        if size is not None:
            img = _resize(img, size, size)
        if out is None:
            out = np.empty((len(encoded), img.height, img.width, 3), dtype=np.uint8)  # (N, H, W, 3)
        elif img.size != (out.shape[2], out.shape[1]):
            raise ImageError(
                f"image {source} is {img.width}x{img.height}, but {names[0]} is "
                f"{out.shape[2]}x{out.shape[1]}: a face table holds one size"
            )
        out[i] = np.asarray(img)
    return out if out is not None else np.zeros((0, size or 0, size or 0, 3), dtype=np.uint8)


def decode_batch(images: Sequence[bytes], sources: Sequence[str]) -> np.ndarray:
    """Encoded images of one size -> uint8 ``(B, H, W, 3)``; a size mismatch names the image."""
    return decode_images(images, None, sources)


def _centre_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    if w == h:
        return img
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def prepare_image(
    data: bytes,
    source: str,
    resolution: int | None,
    image_format: Literal["jpeg", "png"] = "jpeg",
    jpeg_quality: int = 95,
) -> EncodedFace:
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
        square = _resize(_centre_square(img), resolution, resolution)
    if square is img and was_rgb and img.format == target:
        return EncodedFace(data, img.width, img.height)
    buf = io.BytesIO()
    if target == "JPEG":
        square.save(buf, format="JPEG", quality=jpeg_quality)
    else:
        square.save(buf, format="PNG")
    return EncodedFace(buf.getvalue(), square.width, square.height)
