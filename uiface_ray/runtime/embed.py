"""Embed a face table with a pool of Ray actors and write it back with an ``embedding`` column.

One actor per CPU slot (or per GPU when the encoder runs on CUDA) loads the encoder once; the
table is read in blocks of ``block_size`` rows (``storage.batches``), each block's encoded images
go to an actor (two blocks queued per actor at most), are decoded there, and the embeddings come
back in the order they went out.  Each block is written with its ``embedding`` (list<float32>,
unit L2 norm) into row groups of a temporary file, put in place in one step at the end, with the
encoder recorded in the schema metadata key ``uiface.encoder`` (JSON: kind, name, dim, hash).  The
driver holds a few blocks and one row group, whatever the table's size, and prints progress with
an ETA from the start.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from uiface_ray.config import StorageConfig
from uiface_ray.encoders.config import EmbedConfig
from uiface_ray.progress import progress_text

if TYPE_CHECKING:
    from uiface_ray.storage.batches import TableReader
    from uiface_ray.storage.tables import Table

__all__ = ["EmbedResult", "EncoderActor", "check_encoder", "embed_table", "run_embed"]

ENCODER_META = "uiface.encoder"
PROGRESS_EVERY_S = 10.0  # seconds between progress lines


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


def _ordered_results(actors: list, blocks: Iterator[Table], depth: int = 2) -> Iterator[tuple[Table, np.ndarray]]:
    """``(block, its embeddings)`` in block order; at most ``depth`` blocks queued per actor, so the
    driver holds a few blocks, not the table (``ActorPool.map`` submits every block at once)."""
    import ray

    free = deque(actor for actor in actors for _ in range(depth))
    inflight: deque = deque()  # (block, ObjectRef, actor) in submission order
    for block in blocks:
        if not free:
            done, ref, actor = inflight.popleft()
            yield done, ray.get(ref)
            free.append(actor)
        actor = free.popleft()
        images, sources = block.column("image"), block.column("source")
        inflight.append((block, actor.embed.remote((images, sources)), actor))
    while inflight:
        done, ref, _ = inflight.popleft()
        yield done, ray.get(ref)


def embed_table(
    reader: TableReader, output: str, cfg: EmbedConfig, expected: dict, log: Callable[[str], None] = _log
) -> tuple[int, dict, int]:
    """Embed every block of ``reader`` with a pool of actors on the current Ray and write the table
    with ``embedding`` to ``output`` block by block (committed once every block is written);
    returns ``(rows, encoder info, number of actors)``."""
    import json

    import ray

    from uiface_ray.storage.batches import TableWriter
    from uiface_ray.storage.tables import FACE_TABLE

    total = reader.num_rows
    n, options = _pool_size(cfg, -(-total // cfg.block_size))
    actor_cls = ray.remote(**options)(EncoderActor)
    storage = cfg.storage.model_dump()
    actors = [actor_cls.remote(cfg.encoder.model_dump(), storage) for _ in range(n)]
    try:
        info = ray.get(actors[0].info.remote())
        if info["hash"] != expected["hash"]:
            raise RuntimeError(f"encoder actors loaded weights {info['hash']}, the driver {expected['hash']}")
        log(f"{total} images in blocks of {cfg.block_size} on {n} actor(s) of {info['name']} ({info['dim']}-d)")
        metadata = {**reader.metadata, ENCODER_META: json.dumps(info, sort_keys=True)}
        start = last = time.perf_counter()
        log(progress_text(0, total, 0.0))
        # embedding list<float32>, checked (one length, finite) block by block; nothing at output until commit
        with TableWriter(FACE_TABLE, output, cfg.storage, metadata) as writer:
            for block, emb in _ordered_results(actors, reader.blocks(cfg.block_size)):
                writer.write(block.with_column("embedding", emb))
                now = time.perf_counter()
                if now - last >= PROGRESS_EVERY_S or writer.rows == total:
                    log(progress_text(writer.rows, total, now - start))
                    last = now
            reader.close()  # read to the end before the commit replaces it (output may be the input)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
    return writer.rows, info, n


def check_encoder(cfg: EmbedConfig) -> dict:
    """Load the encoder once here (on CPU) so that a bad checkpoint or a missing dlib fails with
    its own error before any actor starts; returns its info."""
    from uiface_ray.encoders import load_encoder

    return load_encoder(cfg.encoder.model_copy(update={"device": "cpu"}), cfg.storage).info()


def run_embed(cfg: EmbedConfig, log: Callable[[str], None] = _log) -> EmbedResult:
    """Read ``cfg.input``, embed every image, write the table with ``embedding`` to ``cfg.output``."""
    from uiface_ray.runtime.session import ray_session
    from uiface_ray.storage import resolve_urls
    from uiface_ray.storage.batches import open_typed
    from uiface_ray.storage.tables import FACE_TABLE

    start = time.perf_counter()
    # resolved here, at the driver: the actors run in another folder and environment
    cfg = resolve_urls(cfg)
    output = cfg.output or cfg.input
    expected = check_encoder(cfg)
    # checked from the footer here; each block's rows when it is read
    with open_typed(FACE_TABLE, cfg.input, cfg.storage, required=["image", "source"]) as reader:
        with ray_session(cfg.ray):
            rows, info, n = embed_table(reader, output, cfg, expected, log)
    seconds = time.perf_counter() - start
    log(f"wrote {rows} embeddings ({info['dim']}-d) to {output} in {seconds:.1f} s")
    return EmbedResult(output, rows, int(info["dim"]), info, n, seconds, rows / seconds)
