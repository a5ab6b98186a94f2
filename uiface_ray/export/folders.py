"""Image-folder export: ``<out>/images/<identity>/<index>.jpg``, one folder per identity (the files
are written per shard by :func:`uiface_ray.export.shard.export_shard`)."""

from __future__ import annotations

from uiface_ray.synth.shard import decode_image, encode_image

__all__ = ["as_jpeg"]

JPEG_MAGIC = b"\xff\xd8\xff"


def as_jpeg(data: bytes, quality: int) -> bytes:
    """JPEG bytes unchanged; anything else decoded and encoded as JPEG at ``quality``."""
    if data[:3] == JPEG_MAGIC:
        return data
    return encode_image(decode_image(data), "jpeg", quality)
