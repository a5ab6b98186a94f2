"""Shard encoding: generated images and their provenance as one Parquet file.

Columns: ``identity_id`` (int64), ``image_index`` (int32), ``seed`` (int64), ``image`` (binary,
PNG or JPEG), ``t0`` (int32, the timestep where the sample entered the identity stage), ``mode``
(string, the sampler mode) and ``model_hash`` (string).  Encoding is deterministic: the same
images give the same bytes, so a shard's SHA-256 identifies its content.  Schema and checks:
``uiface_ray.storage.tables.SHARD`` (errors are ``ShardError``, a ``ValueError``).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from uiface_ray import storage
from uiface_ray.data.images import decode_rgb
from uiface_ray.storage.tables import SHARD, read_typed, table_bytes
from uiface_ray.synth.config import SynthesisConfig
from uiface_ray.synth.manifest import ShardRecord
from uiface_ray.synth.plan import ShardSpec
from uiface_ray.synth.retry import write_with_retries

__all__ = [
    "SHARD_COLUMNS",
    "ShardRows",
    "decode_image",
    "encode_image",
    "encode_shard",
    "read_shard",
    "sha256",
    "shard_metadata",
    "write_shard",
]

SHARD_COLUMNS = ("identity_id", "image_index", "seed", "image", "t0", "mode", "model_hash")
ImageFormat = Literal["png", "jpeg"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_image(image: np.ndarray, fmt: ImageFormat = "png", quality: int = 95) -> bytes:
    """Encode one ``(H, W, 3)`` uint8 image as PNG (lossless) or JPEG (``quality``)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    buf = io.BytesIO()
    pil = Image.fromarray(image, mode="RGB")
    if fmt == "png":
        pil.save(buf, format="PNG", compress_level=6)
    elif fmt == "jpeg":
        pil.save(buf, format="JPEG", quality=quality, subsampling=0)
    else:
        raise ValueError(f"image format must be 'png' or 'jpeg', got {fmt!r}")
    return buf.getvalue()


def decode_image(data: bytes, source: str = "shard image") -> np.ndarray:
    """Decode PNG/JPEG bytes to a ``(H, W, 3)`` uint8 array (``data.images.decode_rgb``)."""
    return decode_rgb(data, source)


@dataclass
class ShardRows:
    """The rows of one shard, one entry per image."""

    identity_id: np.ndarray  # (R,) int64
    image_index: np.ndarray  # (R,) int32
    seed: np.ndarray  # (R,) int64
    image: list[bytes]  # R encoded images
    t0: np.ndarray  # (R,) int32
    mode: str
    model_hash: str
    metadata: dict[str, str] = field(default_factory=dict)  # the file's uiface.* schema metadata

    def __len__(self) -> int:
        return len(self.image)


def shard_metadata(image_format: str, height: int, width: int, mode: str, model_hash: str) -> dict[str, str]:
    """The schema metadata of a shard: what a reader needs to know before decoding a row."""
    return {
        "uiface.image_format": image_format,
        "uiface.image_size": f"{height}x{width}",
        "uiface.mode": mode,
        "uiface.model_hash": model_hash,
    }


def encode_shard(rows: ShardRows) -> bytes:
    """The Parquet bytes of one shard (no compression of the already-compressed images), with
    ``rows.metadata`` as the schema metadata."""
    n = len(rows)
    columns = {
        "identity_id": np.asarray(rows.identity_id, dtype=np.int64),
        "image_index": np.asarray(rows.image_index, dtype=np.int32),
        "seed": np.asarray(rows.seed, dtype=np.int64),
        "image": list(rows.image),
        "t0": np.asarray(rows.t0, dtype=np.int32),
        "mode": [rows.mode] * n,
        "model_hash": [rows.model_hash] * n,
    }
    return table_bytes(SHARD, columns, rows.metadata or None, compression="none")


def write_shard(cfg: SynthesisConfig, spec: ShardSpec, data: bytes, rows: int) -> ShardRecord:
    """Put a shard's bytes in place under ``<output>/shards/`` (a failed write retried as a write,
    with backoff) and record it as the store lists it right after: size and version (ETag, mtime)."""
    url = storage.join(cfg.output, "shards", spec.name)

    def write() -> storage.FileInfo:
        storage.write_bytes_atomic(url, data, cfg.storage)
        return storage.file_info(url, cfg.storage)

    info = write_with_retries(write, url, attempts=cfg.write_attempts, backoff_s=cfg.write_backoff_s)
    if info.size != len(data):
        raise storage.StorageError(f"{url}: the store lists {info.size} bytes after writing {len(data)}")
    return ShardRecord(spec.name, spec.index, rows, sha256(data), len(data), info.version)


def read_shard(url: str, storage_cfg=None, data: bytes | None = None) -> ShardRows:
    """Read a shard back (``data``: its bytes, when already read); a damaged or malformed shard is a
    ``ShardError`` (a ``ValueError``) naming ``url``."""
    table = read_typed(SHARD, url, storage_cfg, data=data)
    modes = table.column("mode")
    hashes = table.column("model_hash")
    return ShardRows(
        identity_id=table.column("identity_id"),
        image_index=table.column("image_index"),
        seed=table.column("seed"),
        image=table.column("image"),
        t0=table.column("t0"),
        mode=modes[0] if modes else "",
        model_hash=hashes[0] if hashes else "",
        metadata={k: v for k, v in table.metadata.items() if k.startswith("uiface.")},
    )
