"""One shard's images from a sampler (no Ray): seeds, batches, encoding.

The seed of image ``j`` of identity ``i`` is ``image_seed(job_seed, i, j)``, so a shard's bytes
depend only on its identities, the job seed and the model, never on which worker ran it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
import numpy as np
import torch

from uiface_ray.sample import image_seed
from uiface_ray.synth.errors import SynthesisInputError
from uiface_ray.synth.plan import ShardSpec
from uiface_ray.synth.shard import ShardRows, encode_image, shard_metadata

__all__ = ["GeneratedShard", "NonFiniteImagesError", "generate_shard", "shard_seeds"]


@dataclass
class GeneratedShard:
    rows: ShardRows
    seconds: float  # sampling + encoding time
    unet_evaluations: int


def shard_seeds(
    job_seed: int, identity_ids: np.ndarray, images_per_identity: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(identity_id, image_index, seed)`` of every row, identity-major."""
    ids = np.repeat(np.asarray(identity_ids, dtype=np.int64), images_per_identity)
    idx = np.tile(np.arange(images_per_identity, dtype=np.int32), len(identity_ids))
    seeds = np.array([image_seed(job_seed, int(i), int(j)) for i, j in zip(ids, idx)], dtype=np.int64)
    return ids, idx, seeds


class NonFiniteImagesError(SynthesisInputError):
    """The sampler's latents or images hold NaN/inf (an overflow: guidance, dtype or weights); the
    shard is not written."""


def _check_finite(finite: np.ndarray, spec: ShardSpec, start: int, ids: np.ndarray, idx: np.ndarray, sampler) -> None:
    """Raise :class:`NonFiniteImagesError` naming the shard and the first bad image of the batch
    starting at row ``start``: rounding NaN to uint8 gives black images that look like data."""
    bad = np.flatnonzero(~np.asarray(finite, dtype=bool))
    if not len(bad):
        return
    row = start + int(bad[0])
    cfg = getattr(sampler, "config", None)
    knobs = "" if cfg is None else f" (guidance_scale {cfg.guidance_scale}, dtype {sampler.model.unet.dtype})"
    raise NonFiniteImagesError(
        f"shard {spec.index}: the sampler produced non-finite values (NaN/inf) for {len(bad)} of {len(finite)} "
        f"images of a batch (first: identity {int(ids[row])}, image {int(idx[row])}); the shard was not written; "
        f"check sampler.guidance_scale and actors.dtype{knobs} and the model's weights"
    )


def generate_shard(
    sampler,
    spec: ShardSpec,
    identity_ids: np.ndarray,
    embeddings: np.ndarray,
    *,
    job_seed: int,
    batch_size: int,
    image_format: str,
    jpeg_quality: int,
    mode: str,
    model_hash: str,
) -> GeneratedShard:
    """Sample and encode every image of ``spec``; ``identity_ids``/``embeddings`` are the shard's rows."""
    start = time.perf_counter()
    ids, idx, seeds = shard_seeds(job_seed, identity_ids, spec.images_per_identity)
    rows_emb = np.repeat(np.asarray(embeddings, dtype=np.float32), spec.images_per_identity, axis=0)  # (R, E)
    images: list[bytes] = []
    t0s: list[np.ndarray] = []
    evaluations = 0
    for b in range(0, len(ids), batch_size):
        contexts = torch.from_numpy(rows_emb[b : b + batch_size])  # (B, E)
        out = sampler.sample(contexts, [int(s) for s in seeds[b : b + batch_size]])
        _check_finite(out.finite, spec, b, ids, idx, sampler)
        images.extend(
            encode_image(np.ascontiguousarray(img), image_format, jpeg_quality) for img in out.images
        )  # (B, H, W, 3) uint8
        t0s.append(np.asarray(out.t0).astype(np.int32))
        evaluations += int(np.sum(out.unet_evaluations))
    height, width = np.asarray(out.images).shape[1:3]
    rows = ShardRows(
        ids,
        idx,
        seeds,
        images,
        np.concatenate(t0s),
        mode,
        model_hash,
        shard_metadata(image_format, int(height), int(width), mode, model_hash),
    )
    return GeneratedShard(rows, time.perf_counter() - start, evaluations)
