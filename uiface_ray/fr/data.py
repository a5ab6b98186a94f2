"""FR training's data: a synthetic dataset (its manifest's shards, labels the identity ids ranked
densely) or a face table (one .parquet file or a folder of them, labels the ``label`` values ranked
densely), as a :class:`~uiface_ray.data.stream.StreamSource`.

:class:`FRTransform` is what the loaders apply to each batch: decode at the input size, then the
training augmentation, row by row from its own generator (seed, epoch, row).  Only the driver calls
:func:`fr_source`: it reads the manifest, every footer and the key column,
never an image; the workers get the small :class:`~uiface_ray.data.stream_read.ReadSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uiface_ray import storage
from uiface_ray.config import StorageConfig
from uiface_ray.data.images import decode_images
from uiface_ray.data.stream import StreamSource
from uiface_ray.data.stream_read import DecodeImages
from uiface_ray.fr.augment import AugmentSpec, augment_rows
from uiface_ray.data.stream_source import open_source, parquet_files
from uiface_ray.storage.row_groups import read_rows
from uiface_ray.synth.dataset import DatasetError, open_dataset

__all__ = ["FRTransform", "first_image_side", "fr_source"]


def _synthetic_files(url: str, st: StorageConfig | None) -> list[tuple[str, int]] | None:
    """(URL, rows) of each shard a complete synthetic dataset's manifest lists, in index order; None for
    a face table."""
    if url.endswith(".parquet") or not storage.exists(storage.join(url, "manifest.json"), st):
        return None
    ds = open_dataset(url, st)
    if not ds.manifest.shards:
        raise DatasetError(f"{url}: the synthetic dataset holds no images")
    return [(ds.shard_url(r.name), r.rows) for r in sorted(ds.manifest.shards, key=lambda r: r.index)]


def fr_source(url: str, st: StorageConfig | None, piece_rows: int) -> StreamSource:
    """The pieces of the dataset at ``url`` with their keys (see the module docstring)."""
    shards = _synthetic_files(url, st)
    if shards is None:
        return open_source(url, parquet_files(url, st), "label", st, piece_rows)
    source = open_source(url, [u for u, _ in shards], "identity_id", st, piece_rows)
    for i, (shard, rows) in enumerate(shards):
        found = sum(p.stop - p.start for p in source.pieces if p.file == i)
        if found != rows:
            raise DatasetError(f"{shard}: {found} rows, the manifest says {rows}")
    return source


def first_image_side(source: StreamSource, st: StorageConfig | None) -> int:
    """The side of the dataset's first image (one row read and decoded)."""
    piece = next(p for p in source.pieces if p.stop > p.start)
    url = source.files[piece.file]
    row = read_rows(url, piece.row_group, piece.start, piece.start + 1, [source.image_column], st)
    name = f"{url} row group {piece.row_group} row {piece.start}"
    return int(decode_images(list(row[source.image_column]), None, [name]).shape[1])


@dataclass(frozen=True, eq=False)
class FRTransform:
    """Loader transform: encoded ``image`` -> float32 (n, 3, s, s) in [0, 1], augmented (``augment``
    None: decoded only); run by the Ray Data loader tasks or the local runner's reader thread."""

    decode: DecodeImages
    augment: AugmentSpec | None
    seed: int

    def __call__(self, batch: dict) -> dict:
        import torch

        batch = self.decode(batch)
        x = torch.from_numpy(np.ascontiguousarray(batch["image"])).permute(0, 3, 1, 2).float() / 255.0  # (n, 3, s, s)
        if self.augment is not None and len(x):
            x = augment_rows(x, self.seed, batch["epoch"], batch["row"], self.augment)
        return {**batch, "image": x.contiguous().numpy()}
