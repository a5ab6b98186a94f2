"""Per-image seeds: a stable hash of (job seed, identity id, image index).

The seed of an image does not depend on the cluster size, the batch or the worker that makes
it, and it is the same in every process and Python version (no ``hash()``).
"""

from __future__ import annotations

import hashlib

__all__ = ["image_seed"]


def image_seed(job_seed: int, identity_id: int | str, image_index: int) -> int:
    """A 63-bit seed for ``torch.Generator.manual_seed`` from blake2b of the three keys."""
    if isinstance(job_seed, bool) or not isinstance(job_seed, int):
        raise TypeError(f"job_seed must be an int, got {job_seed!r}")
    if isinstance(image_index, bool) or not isinstance(image_index, int) or image_index < 0:
        raise ValueError(f"image_index must be a non-negative int, got {image_index!r}")
    if not isinstance(identity_id, (int, str)) or isinstance(identity_id, bool):
        raise TypeError(f"identity_id must be an int or str, got {identity_id!r}")
    key = f"uiface-image-seed/1|{job_seed}|{type(identity_id).__name__}:{identity_id}|{image_index}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
