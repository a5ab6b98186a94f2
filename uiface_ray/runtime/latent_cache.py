"""Build the latent cache on the cluster: one Ray Data ``map_batches`` over the parts still to encode,
its actor pool holding the autoencoder (one GPU each with ``use_gpu``).

Each part is one row group of the face table, read, decoded, encoded and written whole by an actor
(``train.latent_cache.encode_part``: a temporary name moved into place), so a retried or lost actor
leaves no half-written part and Ray Data's own retries are safe; the marker is written here, at the
driver, after the last part.  A killed build resumes with the parts it finished.  The driver prints
one progress line with rate and ETA every 10 s as parts land.
"""

from __future__ import annotations

import time

import numpy as np

from uiface_ray.config import StorageConfig
from uiface_ray.progress import Progress
from uiface_ray.runtime import ingest
from uiface_ray.runtime.session import ray_session
from uiface_ray.runtime.user_error import user_error
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.latent_cache import LatentCache, LatentCacheError, cache_state, commit_cache, progress_line

__all__ = ["build_latent_cache"]


class _Encoder:
    """A Ray Data actor: the autoencoder, loaded once; encodes the parts named in each batch."""

    def __init__(self, cache: LatentCache, autoencoder: str, storage_ref, use_gpu: bool, threads: int | None):
        import ray
        import torch

        from uiface_ray.model.autoencoder import load_autoencoder

        if threads:
            torch.set_num_threads(threads)
        self.cache = cache
        self.storage = StorageConfig(**ray.get(storage_ref[0]))
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.autoencoder = load_autoencoder(autoencoder, self.device, storage=self.storage)

    def __call__(self, batch: dict) -> dict:
        from uiface_ray.train.latent_cache import encode_part

        parts = [self.cache.parts[int(i)] for i in batch["part"]]
        rows = [encode_part(self.autoencoder, self.cache, p, self.storage, self.device) for p in parts]
        return {"part": np.asarray(batch["part"]), "rows": np.asarray(rows, dtype=np.int64)}


def _encode(cfg: TrainConfig, cache: LatentCache, todo: list[int]) -> None:
    import ray

    ingest.quiet_ray_data()
    storage_ref = [ray.put(cfg.storage.model_dump())]  # in a list: passed as a reference, fetched in the actor
    resources = {"num_gpus": 1} if cfg.use_gpu else {"num_cpus": cfg.cpus_per_worker}
    ds = ray.data.from_items([{"part": i} for i in todo], override_num_blocks=len(todo)).map_batches(
        _Encoder,
        fn_constructor_kwargs={
            "cache": cache,
            "autoencoder": cfg.model.autoencoder,
            "storage_ref": storage_ref,
            "use_gpu": cfg.use_gpu,
            "threads": cfg.torch_threads,
        },
        batch_size=1,
        concurrency=max(1, min(len(todo), cfg.num_workers)),
        **resources,
    )
    progress = Progress(sum(cache.parts[i].rows for i in todo), every_s=10.0)
    left = len(todo)
    for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
        left -= 1
        progress.add(int(batch["rows"][0]), parts=1)
        if progress.due(force=left == 0):
            print(progress_line(progress, left), flush=True)


def build_latent_cache(cfg: TrainConfig) -> LatentCache:
    """The run's latent cache, encoding what is missing on the cluster (``cfg`` resolved by the caller)."""
    log = lambda line: print(line, flush=True)  # noqa: E731
    cache, todo = cache_state(cfg, log)
    if not todo:
        log(f"[latents] using {cache.url} ({sum(p.rows for p in cache.parts)} faces, key {cache.spec.key()})")
        return cache
    start = time.time()
    log(
        f"[latents] encoding {sum(p.rows for p in todo)} faces in {len(todo)} of {len(cache.parts)} part(s) "
        f"-> {cache.url}"
    )
    index = {p: i for i, p in enumerate(cache.parts)}
    try:
        with ray_session(cfg.ray):
            _encode(cfg, cache, [index[p] for p in todo])
    except Exception as exc:  # noqa: BLE001 - bad input is one line; anything else re-raised
        error = user_error(exc, LatentCacheError)
        if error is None:
            raise
        raise error from None
    commit_cache(cache, cfg.storage)
    log(f"[latents] committed {cache.url} in {time.time() - start:.1f} s")
    return cache
