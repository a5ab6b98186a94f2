"""Seeds derived from keys: per image (job seed, identity id, image index) and per training step
(job seed, step, rank).

The seed of an image does not depend on the cluster size, the batch or the worker that makes
it, and it is the same in every process and Python version (no ``hash()``).  A training step's
seed depends only on its step and its worker's rank, so a resumed run draws what an
uninterrupted one would have drawn.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["image_seed", "step_seed"]


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


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 32-bit seed for one worker's generator at one training step, from numpy's SeedSequence."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])
