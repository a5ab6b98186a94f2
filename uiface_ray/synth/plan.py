"""Shard planning: the identity table cut into fixed shards of ``identities_per_shard`` identities.

A shard's content depends only on its identities, the images per identity and the job seed, so
the plan (and every shard's bytes) is the same whatever the cluster size or the order shards run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uiface_ray.synth.errors import SynthesisInputError

__all__ = ["MAX_DATASET_IMAGES", "ShardSpec", "plan_shards", "shard_name"]

#: Most images one dataset may plan (about 1.1e12: petabytes of PNGs); counts beyond are a typo,
#: refused here before anything is allocated.
MAX_DATASET_IMAGES = 2**40


def shard_name(index: int) -> str:
    """Predictable file name of shard ``index``: ``shard-00042.parquet``."""
    if index < 0:
        raise ValueError(f"shard index must be >= 0, got {index}")
    return f"shard-{index:05d}.parquet"


@dataclass(frozen=True)
class ShardSpec:
    """One unit of work: rows ``[row_start, row_stop)`` of the identity table."""

    index: int
    row_start: int
    row_stop: int
    images_per_identity: int

    @property
    def name(self) -> str:
        return shard_name(self.index)

    @property
    def num_identities(self) -> int:
        return self.row_stop - self.row_start

    @property
    def num_images(self) -> int:
        return self.num_identities * self.images_per_identity


def plan_shards(num_identities: int, identities_per_shard: int, images_per_identity: int) -> list[ShardSpec]:
    """Consecutive shards of ``identities_per_shard`` identities (the last may be smaller)."""
    if num_identities < 1:
        raise ValueError(f"cannot plan shards for {num_identities} identities")
    if identities_per_shard < 1 or images_per_identity < 1:
        raise ValueError(
            "identities_per_shard and images_per_identity must be >= 1, got "
            f"{identities_per_shard} and {images_per_identity}"
        )
    if num_identities * images_per_identity > MAX_DATASET_IMAGES:
        raise SynthesisInputError(
            f"{num_identities} identities x images_per_identity {images_per_identity} = "
            f"{num_identities * images_per_identity} images: at most {MAX_DATASET_IMAGES} (2**40) in one dataset"
        )
    starts = np.arange(0, num_identities, identities_per_shard)
    return [
        ShardSpec(i, int(s), int(min(s + identities_per_shard, num_identities)), images_per_identity)
        for i, s in enumerate(starts)
    ]
