"""Embed a face table with a pool of Ray actors and write it back with an ``embedding`` column.

One actor per CPU slot (or per GPU when the encoder runs on CUDA) loads the encoder once and checks
it is the one the driver loaded; the table is read in blocks of ``block_size`` rows
(``storage.batches``), each block's encoded images go to an actor (:class:`~uiface_ray.runtime.pool.ActorPool`:
two blocks in flight per actor), are decoded there, and the embeddings come back in the table's
order.  A lost actor's blocks go to another actor (and a new one starts where a slot is free), so a
dead encoder no longer ends the job, and the output is the same bytes.  Each block is written with
its ``embedding`` (list<float32>, unit L2 norm) into row groups of a temporary file, put in place in
one step at the end, with the encoder recorded in the schema metadata key ``uiface.encoder`` (JSON:
kind, name, dim, hash).  The driver holds a bounded window of blocks and one row group, whatever the
table's size, and prints progress with an ETA from the start.

Why this pool and not Ray Data's ``map_batches`` with an actor pool: the output must be the input's
rows in the input's order, written by the storage layer's streaming ``TableWriter`` (typed checks
per block, one commit) so that it is byte-identical however many actors ran or died; the input is
read by the storage layer's typed reader with the job's own storage settings (pyarrow and fsspec
stay in ``uiface_ray/storage/``, where Ray Data would need a pyarrow filesystem built here); and a
lost actor, a bad checkpoint met in an actor, or a pool too large for the cluster end or recover
the same way in every stage.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from uiface_ray.config import ActorPoolConfig, StorageConfig
from uiface_ray.encoders.base import EncoderError
from uiface_ray.encoders.config import EmbedConfig, EncoderConfig
from uiface_ray.progress import Progress
from uiface_ray.runtime.pool import ActorPool, PoolError, PoolWorker

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


class EncoderActor(PoolWorker):
    """Holds one loaded encoder, checked against the one the driver loaded; turns blocks of encoded
    images into embeddings."""

    def __init__(self, encoder: EncoderConfig, storage: StorageConfig, expected_hash: str):
        import torch

        from uiface_ray.encoders import load_encoder

        torch.set_num_threads(1)
        with self.loading():
            self.encoder = load_encoder(encoder, storage)
            if self.encoder.fingerprint != expected_hash:
                raise EncoderError(
                    f"encoder {encoder.path or encoder.kind} changed while the job ran: weights "
                    f"{self.encoder.fingerprint}, the driver saw {expected_hash}; rerun the job"
                )

    def embed(self, block: tuple[Sequence[bytes], Sequence[str]]) -> np.ndarray:
        from uiface_ray.data.images import decode_batch

        images, sources = block
        return self.encoder.embed(decode_batch(images, sources))  # (b, dim) float32


def _log(message: str) -> None:
    print(f"[embed] {message}", file=sys.stderr, flush=True)


def _pool_settings(cfg: EmbedConfig) -> tuple[ActorPoolConfig, bool]:
    """One encoder actor per free CPU (per free GPU for a CUDA encoder), or ``cfg.num_actors``."""
    import ray

    gpu = cfg.encoder.device.startswith("cuda")
    free = ray.available_resources()
    n = cfg.num_actors or int(free.get("GPU", 0) if gpu else free.get("CPU", 0))
    if n < 1:
        raise PoolError(f"no free {'GPU' if gpu else 'CPU'} in the Ray cluster for encoder actors ({free})")
    return ActorPoolConfig(num_actors=n, use_gpu=gpu, cpus_per_actor=1), gpu


def _embed(actor, block: Table, attempt: int):
    return actor.embed.remote((block.column("image"), block.column("source")))


def embed_table(
    reader: TableReader, output: str, cfg: EmbedConfig, info: dict, log: Callable[[str], None] = _log
) -> tuple[int, int]:
    """Embed every block of ``reader`` with a pool of actors on the current Ray and write the table
    with ``embedding`` to ``output`` block by block, in the reader's order (committed once every
    block is written); returns ``(rows, number of actors)``."""
    import json

    from uiface_ray.storage.batches import TableWriter
    from uiface_ray.storage.tables import FACE_TABLE

    total = reader.num_rows
    settings, gpu = _pool_settings(cfg)
    args = (cfg.encoder, cfg.storage, info["hash"])
    blocks = -(-total // cfg.block_size)
    with ActorPool(EncoderActor, args, settings, use_gpu=gpu, max_actors=blocks, name="uiface-encoder") as pool:
        log(f"{total} images in blocks of {cfg.block_size} on {pool.size} actor(s) of {info['name']} ({info['dim']}-d)")
        metadata = {**reader.metadata, ENCODER_META: json.dumps(info, sort_keys=True)}
        progress = Progress(total, every_s=PROGRESS_EVERY_S)
        if progress.due():  # the first line, from the start
            log(progress.text())
        # embedding list<float32>, checked (one length, finite) block by block; nothing at output until commit
        with TableWriter(FACE_TABLE, output, cfg.storage, metadata) as writer:
            for block, emb in pool.map(reader.blocks(cfg.block_size), _embed, ordered=True, label=_rows):
                writer.write(block.with_column("embedding", emb))
                progress.add(len(block))
                if progress.due(force=progress.done >= total):
                    log(progress.text())
            reader.close()  # read to the end before the commit replaces it (output may be the input)
    return writer.rows, pool.size


def _rows(block: Table) -> str:
    return f"a block of {len(block)} rows"


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
    info = check_encoder(cfg)
    # checked from the footer here; each block's rows when it is read
    with open_typed(FACE_TABLE, cfg.input, cfg.storage, required=["image", "source"]) as reader:
        with ray_session(cfg.ray):
            rows, n = embed_table(reader, output, cfg, info, log)
    seconds = time.perf_counter() - start
    log(f"wrote {rows} embeddings ({info['dim']}-d) to {output} in {seconds:.1f} s")
    return EmbedResult(output, rows, int(info["dim"]), info, n, seconds, rows / seconds)
