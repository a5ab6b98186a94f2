"""Reading a finished synthetic dataset: the manifest, then its shards in order, hash-checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from uiface_ray.errors import InputError
from uiface_ray import storage
from uiface_ray.synth.manifest import Manifest, read_manifest
from uiface_ray.synth.shard import ShardRows, read_shard, sha256

__all__ = ["DatasetError", "SyntheticDataset", "open_dataset"]


class DatasetError(InputError, ValueError):
    """A synthetic dataset is missing, incomplete or corrupted; the message names the file."""


@dataclass
class SyntheticDataset:
    url: str
    manifest: Manifest
    storage_cfg: object = None

    def shard_url(self, name: str) -> str:
        return storage.join(self.url, "shards", name)

    def iter_shards(self, verify: bool = True) -> Iterator[ShardRows]:
        """Every shard in index order; with ``verify`` its bytes must match the manifest's hash."""
        for record in sorted(self.manifest.shards, key=lambda r: r.index):
            url = self.shard_url(record.name)
            data = storage.read_bytes(url, self.storage_cfg)  # read once: hashed, then parsed
            if verify and sha256(data) != record.sha256:
                raise DatasetError(f"{url}: content hash differs from the manifest (corrupted or replaced)")
            rows = read_shard(url, self.storage_cfg, data=data)
            if len(rows) != record.rows:
                raise DatasetError(f"{url}: {len(rows)} rows, the manifest says {record.rows}")
            yield rows


def open_dataset(url: str, storage_cfg=None) -> SyntheticDataset:
    """Open a dataset written by ``jobs/synthesize.py``; refuses one whose manifest is not complete."""
    manifest = read_manifest(url, storage_cfg)
    if manifest is None:
        raise DatasetError(f"no manifest.json under {url}: not a synthetic dataset (or not started)")
    if not manifest.complete:
        raise DatasetError(
            f"{url} is incomplete: {len(manifest.shards)}/{manifest.num_shards} shards; "
            "rerun jobs/synthesize.py with the same config to finish it"
        )
    return SyntheticDataset(url, manifest, storage_cfg)
