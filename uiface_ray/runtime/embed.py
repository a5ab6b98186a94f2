"""Embed a face table with a pool of Ray actors and write it back with an ``embedding`` column.

One actor per CPU slot (or per GPU when the encoder runs on CUDA) loads the encoder once; the
images go out in blocks of ``block_size`` encoded images, are decoded inside the actors, and the
embeddings come back in the order they went out.  The table is then written in one atomic step
with ``embedding`` (list<float32>, unit L2 norm) and the encoder recorded in the schema metadata
key ``uiface.encoder`` (JSON: kind, name, dim, hash).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from uiface_ray.config import StorageConfig
from uiface_ray.encoders.config import EmbedConfig
from uiface_ray.progress import progress_text

__all__ = ["EmbedResult", "EncoderActor", "check_encoder", "embed_images", "run_embed"]

ENCODER_META = "uiface.encoder"


@dataclass(frozen=True)
class EmbedResult:
    output: str
    images: int
    dim: int
    encoder: dict
    num_actors: int
    seconds: float
    images_per_second: float


class EncoderActor:
    """Holds one loaded encoder; turns blocks of encoded images into embeddings."""

    def __init__(self, encoder: dict, storage: dict | None, threads: int = 1):
        import torch

        from uiface_ray.encoders import load_encoder

        torch.set_num_threads(threads)
        self.encoder = load_encoder(encoder, StorageConfig.model_validate(storage or {}))

    def info(self) -> dict:
        return self.encoder.info()

    def embed(self, block: tuple[Sequence[bytes], Sequence[str]]) -> np.ndarray:
        from uiface_ray.data.images import decode_batch

        images, sources = block
        return self.encoder.embed(decode_batch(images, sources))  # (b, dim) float32


def _log(message: str) -> None:
    print(f"[embed] {message}", file=sys.stderr, flush=True)


def _pool_size(cfg: EmbedConfig, num_blocks: int) -> tuple[int, dict]:
    """How many actors, and the resources each asks for."""
    import ray

    gpu = cfg.encoder.device.startswith("cuda")
    free = ray.available_resources()
    if cfg.num_actors is not None:
        n = cfg.num_actors
    else:
        n = int(free.get("GPU", 0)) if gpu else int(free.get("CPU", 0))
    if n < 1:
        raise RuntimeError(f"no free {'GPU' if gpu else 'CPU'} in the Ray cluster for encoder actors ({free})")
    options = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
    return max(1, min(n, num_blocks)), options


def embed_images(
    images: Sequence[bytes], sources: Sequence[str], cfg: EmbedConfig, log: Callable[[str], None] = _log
) -> tuple[np.ndarray, dict, int]:
    """Embed encoded images with a pool of actors on the current Ray; returns
    ``(embeddings (N, dim) float32 in input order, encoder info, number of actors)``."""
    import ray
    from ray.util import ActorPool

    blocks = [
        (list(images[i : i + cfg.block_size]), list(sources[i : i + cfg.block_size]))
        for i in range(0, len(images), cfg.block_size)
    ]
    n, options = _pool_size(cfg, len(blocks))
    actor_cls = ray.remote(**options)(EncoderActor)
    storage = cfg.storage.model_dump()
    actors = [actor_cls.remote(cfg.encoder.model_dump(), storage) for _ in range(n)]
    try:
        info = ray.get(actors[0].info.remote())
        log(f"{len(images)} images in {len(blocks)} blocks on {n} actor(s) of {info['name']} ({info['dim']}-d)")
        out: list[np.ndarray] = []
        done, start, last = 0, time.perf_counter(), time.perf_counter()
        for emb in ActorPool(actors).map(lambda actor, block: actor.embed.remote(block), blocks):
            out.append(emb)
            done += len(emb)
            if time.perf_counter() - last > 10 or done == len(images):
                log(progress_text(done, len(images), time.perf_counter() - start))
                last = time.perf_counter()
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
    dim = int(info["dim"])
    return (np.concatenate(out) if out else np.zeros((0, dim), np.float32)), info, n


def check_encoder(cfg: EmbedConfig) -> dict:
    """Load the encoder once here (on CPU) so that a bad checkpoint or a missing dlib fails with
    its own error before any actor starts; returns its info."""
    from uiface_ray.encoders import load_encoder

    return load_encoder(cfg.encoder.model_copy(update={"device": "cpu"}), cfg.storage).info()


def run_embed(cfg: EmbedConfig, log: Callable[[str], None] = _log) -> EmbedResult:
    """Read ``cfg.input``, embed every image, write the table with ``embedding`` to ``cfg.output``."""
    import json

    from uiface_ray.runtime.session import ray_session
    from uiface_ray.storage import resolve_urls
    from uiface_ray.storage.tables import FACE_TABLE, read_face_table, write_typed

    start = time.perf_counter()
    # resolved here, at the driver: the actors run in another folder and environment
    cfg = resolve_urls(cfg)
    output = cfg.output or cfg.input
    expected = check_encoder(cfg)
    table = read_face_table(cfg.input, cfg.storage, required=["image", "source"])  # checked: not empty, no nulls
    images = table.column("image")
    sources = table.column("source")
    with ray_session(cfg.ray):
        embeddings, info, n = embed_images(images, sources, cfg, log)
    if info["hash"] != expected["hash"]:
        raise RuntimeError(f"encoder actors loaded weights {info['hash']}, the driver {expected['hash']}")
    # embedding list<float32>, checked (one length, finite) before anything is written
    write_typed(
        FACE_TABLE,
        output,
        table.with_column("embedding", embeddings),
        cfg.storage,
        metadata={ENCODER_META: json.dumps(info, sort_keys=True)},
    )
    seconds = time.perf_counter() - start
    log(f"wrote {len(embeddings)} embeddings ({info['dim']}-d) to {output} in {seconds:.1f} s")
    return EmbedResult(output, len(embeddings), int(info["dim"]), info, n, seconds, len(embeddings) / seconds)
