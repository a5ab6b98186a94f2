"""Image-folder export: ``<out>/<identity>/<index>.jpg``, one folder per identity."""

from __future__ import annotations

from uiface_ray import storage
from uiface_ray.synth.dataset import SyntheticDataset
from uiface_ray.synth.shard import decode_image, encode_image

__all__ = ["as_jpeg", "export_image_folders"]

JPEG_MAGIC = b"\xff\xd8\xff"


def as_jpeg(data: bytes, quality: int) -> bytes:
    """JPEG bytes unchanged; anything else decoded and encoded as JPEG at ``quality``."""
    if data[:3] == JPEG_MAGIC:
        return data
    return encode_image(decode_image(data), "jpeg", quality)


def export_image_folders(dataset: SyntheticDataset, out_url: str, jpeg_quality: int = 95,
                         storage_cfg=None, verify: bool = True) -> int:
    """Write every image as ``<out_url>/<identity_id>/<image_index>.jpg``; returns the image count."""
    count = 0
    for rows in dataset.iter_shards(verify):
        for identity, index, image in zip(rows.identity_id, rows.image_index, rows.image):
            url = storage.join(out_url, str(int(identity)), f"{int(index)}.jpg")
            storage.write_bytes_atomic(url, as_jpeg(image, jpeg_quality), storage_cfg)
            count += 1
    return count
