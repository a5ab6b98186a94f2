"""Identities on Ray: actors draw c_e-only faces and embed them; the driver filters them in order.

Candidate ``k`` always comes from seed ``image_seed(seed, "candidate", k)`` and the greedy filter
sees candidates in ``k`` order whatever the order tasks finish in, so the identity table does not
depend on the number of actors.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict

import numpy as np

from uiface_ray import storage
from uiface_ray.identities.config import MakeIdentitiesConfig
from uiface_ray.identities.filtering import FilterSummary, GreedyIdentityFilter
from uiface_ray.identities.table import write_identity_table
from uiface_ray.model.bundle import ModelLoadError, read_model_summary
from uiface_ray.runtime.device_probe import actor_precision
from uiface_ray.runtime.pool import ActorPool, PoolWorker, wants_gpu
from uiface_ray.runtime.session import ray_session
from uiface_ray.storage.fs import check_writable
from uiface_ray.identities.errors import IdentitiesInputError
from uiface_ray.progress import Progress

__all__ = ["CandidateWorker", "make_identities", "training_identity_embeddings"]

log = logging.getLogger(__name__)


class CandidateWorker(PoolWorker):
    """Holds the sampler (c_e only: two-stage with t0 = 0) and the identity encoder."""

    def __init__(self, cfg: MakeIdentitiesConfig, device: str):
        import torch

        from uiface_ray.encoders import load_encoder
        from uiface_ray.sample import SamplerConfig, UIFaceSampler

        self.cfg = cfg
        if device == "cpu":
            torch.set_num_threads(cfg.actors.cpus_per_actor)
        sampler_cfg = SamplerConfig(mode="two_stage_fixed", t0=0, num_inference_steps=cfg.num_inference_steps)
        with self.loading():
            self.sampler = UIFaceSampler.from_pretrained(
                cfg.model,
                device=device,
                dtype=cfg.actors.dtype,  # resolved by the driver (runtime.device_probe)
                config=sampler_cfg,
                storage=cfg.storage,
            )
            self.encoder = load_encoder(cfg.encoder, cfg.storage)

    def embed_candidates(self, block: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """Seeds, identity embeddings ``(B, dim)`` of candidate block ``block``, and the encoder's info."""
        from uiface_ray.sample import image_seed

        n = self.cfg.candidates_per_task
        seeds = [image_seed(self.cfg.seed, "candidate", k) for k in range(block * n, (block + 1) * n)]
        dim = self.sampler.model.embedding_dim
        unused = np.full((n, dim), 1.0 / np.sqrt(dim), dtype=np.float32)  # c_e only: contexts are not used
        images = self.sampler.sample(unused, seeds).images  # (B, H, W, 3) uint8
        return np.asarray(seeds, dtype=np.int64), self.encoder.embed(images), self.encoder.info()


def training_identity_embeddings(url: str, storage_cfg=None) -> np.ndarray:
    """One L2-normalised mean embedding per training identity (``label``) of a face table (its embedding
    column checked by ``storage.tables``: no missing, ragged, NaN or infinite rows)."""
    from uiface_ray.storage.tables import FaceTableError, read_face_table

    table = read_face_table(url, storage_cfg, required=["embedding", "label"], columns=["embedding", "label"])
    labels = table.column("label")  # (N,) int64
    emb = table.embeddings()  # (N, E) float32
    uniq, inverse = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(uniq), emb.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, emb)  # (K, E)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)  # (K, 1)
    if (norms == 0).any():
        raise FaceTableError(f"face table {url}: the embeddings of label {uniq[np.argmin(norms[:, 0])]} sum to zero")
    return (sums / norms).astype(np.float32)


def _validate(cfg: MakeIdentitiesConfig) -> tuple[int, np.ndarray | None]:
    try:  # the marker only: the actors load the weights (a damaged file is their one-line error)
        dim = read_model_summary(cfg.model, cfg.storage).embedding_dim
    except ModelLoadError as exc:
        raise IdentitiesInputError(f"model: {exc}") from exc
    train = None
    if cfg.training_embeddings:
        train = training_identity_embeddings(cfg.training_embeddings, cfg.storage)
        if train.shape[1] != dim:
            raise IdentitiesInputError(
                f"training_embeddings {cfg.training_embeddings} have dim {train.shape[1]}, the model expects {dim}"
            )
    for url in (cfg.output, cfg.summary_url()):
        try:
            check_writable(url.rsplit("/", 1)[0] if "/" in url else ".", cfg.storage)
        except storage.StorageError as exc:
            raise IdentitiesInputError(f"cannot write {url}: {exc}") from exc
    return dim, train


def _show_kept(progress: Progress, filt: GreedyIdentityFilter, max_candidates: int) -> None:
    """``[make_identities] kept K/N of D drawn (max M)  r cand/s  ETA h:mm:ss`` every ``every_s``
    (the last when the filter is done); the ETA extrapolates the kept rate (it slows as the kept set
    fills the embedding space)."""
    progress.done = filt.kept
    if not filt.drawn or not progress.due(force=filt.done):
        return
    print(
        f"[make_identities] kept {filt.kept}/{progress.total} of {filt.drawn} drawn (max {max_candidates})  "
        f"{filt.drawn / max(progress.elapsed, 1e-9):.1f} cand/s  ETA {progress.eta()}",
        file=sys.stderr,
        flush=True,
    )


def make_identities(cfg: MakeIdentitiesConfig) -> FilterSummary:
    """Draw, embed and filter candidates until ``num_identities`` are kept; write table + summary."""
    cfg = storage.resolve_urls(cfg)
    dim, train = _validate(cfg)
    filt = GreedyIdentityFilter(
        cfg.num_identities, dim, cfg.similarity_threshold, train, cfg.leakage_threshold if train is not None else None
    )
    blocks = range(-(-cfg.max_candidates // cfg.candidates_per_task))
    encoder: dict = {}
    progress = Progress(cfg.num_identities)
    with ray_session(cfg.ray):  # the job's session, or the pipeline's when one is open
        use_gpu = wants_gpu(cfg.actors)
        precision = actor_precision(cfg.actors.dtype, use_gpu)  # "auto": what the actors' device runs fastest
        print(f"[make_identities] precision: {precision.describe()}", flush=True)
        cfg = cfg.model_copy(update={"actors": cfg.actors.model_copy(update={"dtype": precision.dtype_name})})
        args = (cfg, "cuda" if use_gpu else "cpu")
        with ActorPool(
            CandidateWorker, args, cfg.actors, use_gpu=use_gpu, max_actors=len(blocks), name="uiface-candidates"
        ) as pool:
            progress.restart()
            # in candidate order whatever the order tasks finish in: the table does not depend on the actors
            for _, (seeds, emb, info) in pool.map(blocks, _draw, ordered=True, label=_block):
                if emb.shape[1] != dim:
                    raise IdentitiesInputError(
                        f"the identity encoder gives dim {emb.shape[1]}, the model expects {dim}"
                    )
                encoder.update(info)
                filt.offer(emb, seeds)
                _show_kept(progress, filt, cfg.max_candidates)
                if filt.done:
                    break
    if not filt.done:
        raise IdentitiesInputError(
            f"only {filt.kept} of {cfg.num_identities} identities after {filt.drawn} "
            "candidates (max_candidates); raise similarity_threshold or max_candidates"
        )
    result = filt.result()
    _write(cfg, result, encoder, precision)
    return result.summary


def _draw(actor, block: int, attempt: int):
    return actor.embed_candidates.remote(block)


def _block(block: int) -> str:
    return f"candidate block {block}"


def _write(cfg: MakeIdentitiesConfig, result, encoder: dict, precision) -> None:
    """The identity table, then the summary beside it."""
    write_identity_table(cfg.output, result, encoder, cfg.storage)
    summary = {
        **asdict(result.summary),
        "output": cfg.output,
        "model": cfg.model,
        "seed": cfg.seed,
        "encoder": encoder,
        "dtype": precision.dtype_name,
        "device": precision.device,
    }
    storage.write_bytes_atomic(cfg.summary_url(), (json.dumps(summary, indent=2) + "\n").encode(), cfg.storage)
