"""The latent cache: every face encoded through the autoencoder once, kept beside the face table.

Latent diffusion (``model.space: latent``) trains on the autoencoder's output.  Encoding each batch
at every step costs an encoder pass per image per epoch; the cache encodes each face once::

    <data.latent_cache, default <data.table>.latents>/<key>/part-00000-00000.parquet  one per row group
    <data.latent_cache, default <data.table>.latents>/<key>/latents.json             written last

``key`` (:class:`LatentSpec`) is a hash of everything the latents depend on: the autoencoder's files
(config and weights, hashed as stored, nothing loaded), the image size and resize filter, the
orientations kept and the encoding dtype.  Part ``part-FFFFF-GGGGG`` mirrors row group GGGGG of
table file FFFFF (the same rows in the same order) with ``identity``, ``embedding`` and:

- ``latent``: the autoencoder's output for the image, unscaled, float32, C*h*w values a row (VQ:
  the pre-quantisation latents, as LDM diffuses; KL: the posterior's mean and log-variance, 2*C*h*w,
  sampled at each step from the step's generator, so a cached KL latent is not one frozen draw);
- ``latent_flipped``: the same for the mirrored image, when ``data.hflip`` is on.  The encoder is a
  CNN, not mirror-equivariant, so flip(E(x)) != E(flip(x)): both orientations are kept (twice the
  encoding once, twice the bytes: 2 * 3*32*32 * 4 B = 24 KiB a face at the paper's size) and each step
  picks the one its flip draw asks for, the x0 the per-step encoder gave.

Build and resume cases (:func:`cache_state`):

- every part present, its footer readable and naming the same source (size and version of the table
  file) and key: the cache is used as is (the footers only are read; the marker is written when a
  build was killed after its last part);
- otherwise (a first run, a killed build, a damaged part): each such part is kept, the others are
  encoded; a part that cannot be read is encoded again, said so in one line;
- a table file changed since (size or version): its parts are encoded again, the marker rewritten.

Every part is written to a temporary name and moved into place whole (``storage.TableWriter``), and
the marker last, so a killed build leaves complete parts and no marker, and the next run encodes only
what is missing.  This module is Ray-free: :func:`encode_part` is what one worker does (the Ray Data
job is ``runtime/latent_cache.py``), :func:`build_in_process` runs the same in one process.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from diffusers import VQModel

from uiface_ray.config import StorageConfig
from uiface_ray.data.images import RESIZE_FILTER, decode_images
from uiface_ray.errors import InputError
from uiface_ray.model.autoencoder import Autoencoder, load_autoencoder
from uiface_ray.progress import Progress
from uiface_ray.storage.batches import TableWriter
from uiface_ray.storage.fs import (
    StorageError,
    exists,
    file_info,
    find_files,
    join,
    open_url,
    read_bytes,
    write_bytes_atomic,
)
from uiface_ray.storage.latent_table import LATENT_TABLE, LatentCacheError, read_footer, read_row_group
from uiface_ray.storage.tables import FACE_TABLE
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.data import table_files

__all__ = [
    "LatentCache",
    "LatentCacheError",
    "LatentPart",
    "LatentSpec",
    "autoencoder_fingerprint",
    "build_in_process",
    "cache_state",
    "commit_cache",
    "encode_part",
    "open_cache",
]

FORMAT = "uiface.latents/1"
MARKER = "latents.json"
PART_META = "uiface.latent_part"
ENCODE_BATCH = 64  # images per encoder pass


@dataclass(frozen=True)
class LatentSpec:
    """Everything the cached latents depend on; :meth:`key` names the cache folder."""

    autoencoder: str  # sha256 of the autoencoder folder's files (names and bytes)
    image_size: int
    orientations: int  # 2: the image and its mirror (data.hflip), 1: the image alone
    encode_dtype: str = "float32"
    resize: str = RESIZE_FILTER.name.lower()
    format: str = FORMAT

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LatentPart:
    """One row group of one table file, and the cache part that mirrors it."""

    file: int  # index of the table file
    row_group: int
    rows: int
    source: str  # the table file's URL
    size: int  # the table file's size and version when the part was made
    version: str | None

    @property
    def name(self) -> str:
        return f"part-{self.file:05d}-{self.row_group:05d}.parquet"

    def record(self) -> dict:
        return {**asdict(self), "name": self.name}


@dataclass(frozen=True)
class LatentCache:
    """A cache folder: where it is, what it holds and what each latent row is."""

    url: str
    spec: LatentSpec
    parts: tuple[LatentPart, ...]
    kind: str  # 'vq' (latent = C*h*w) or 'kl' (latent = mean and log-variance, 2*C*h*w)
    latent_shape: tuple[int, int, int]  # (C, h, w) of what the UNet denoises

    @property
    def width(self) -> int:
        """Values in one ``latent`` row."""
        c, h, w = self.latent_shape
        return (2 if self.kind == "kl" else 1) * c * h * w

    @property
    def columns(self) -> list[str]:
        return ["latent", "latent_flipped"][: self.spec.orientations]

    def part_url(self, part: LatentPart) -> str:
        return join(self.url, part.name)

    def part_urls(self) -> list[str]:
        return [self.part_url(p) for p in self.parts]


def autoencoder_fingerprint(url: str, storage: StorageConfig | None = None) -> str:
    """sha256 of every file under the autoencoder folder (relative names and bytes, read in chunks)."""
    digest = hashlib.sha256()
    names = find_files(url, storage)
    if not names:
        raise LatentCacheError(f"model.autoencoder {url}: no files there")
    for name in names:
        digest.update(name.encode() + b"\0")
        with open_url(join(url, name), "rb", storage) as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def cache_root(cfg: TrainConfig) -> str:
    return cfg.data.latent_cache or cfg.data.table.rstrip("/") + ".latents"


def plan_parts(table: str, storage: StorageConfig | None) -> list[LatentPart]:
    """One part per row group of every table file, in table order (footers and file sizes only)."""
    parts = []
    for i, url in enumerate(table_files(table, storage)):
        try:
            info = file_info(url, storage)
        except StorageError as exc:
            raise LatentCacheError(f"face table {url} cannot be read: {exc}") from exc
        footer = read_footer(FACE_TABLE, url, storage)
        for j, rows in enumerate(footer.row_groups):
            parts.append(LatentPart(i, j, rows, url, info.size, info.version))
    return parts


def _autoencoder_layout(url: str, image_size: int, storage: StorageConfig | None) -> tuple[str, tuple[int, int, int]]:
    """('vq' | 'kl', (C, h, w)) of the autoencoder, from its config.json (no weights loaded)."""
    try:
        config = json.loads(read_bytes(join(url, "config.json"), storage))
        kind = {"VQModel": "vq", "AutoencoderKL": "kl"}[config["_class_name"]]
        side = image_size // 2 ** (len(config["block_out_channels"]) - 1)
        return kind, (int(config["latent_channels"]), side, side)
    except (StorageError, ValueError, KeyError, TypeError) as exc:
        raise LatentCacheError(f"model.autoencoder {url}: config.json is not a VQModel/AutoencoderKL config ({exc})")


def _part_done(cache: LatentCache, part: LatentPart, storage: StorageConfig | None) -> tuple[bool, str | None]:
    """Whether the part file is there, complete and made from this source with this key."""
    url = cache.part_url(part)
    if not exists(url, storage):
        return False, None
    try:
        footer = read_footer(LATENT_TABLE, url, storage)
    except LatentCacheError as exc:
        return False, f"[latents] {url} is damaged ({exc}); encoding it again"
    try:
        made = json.loads(footer.metadata.get(PART_META, "{}"))
    except json.JSONDecodeError:
        made = {}
    expected = {**part.record(), "key": cache.spec.key()}
    if made != expected or sum(footer.row_groups) != part.rows:
        return False, f"[latents] {url} was made from another source; encoding it again"
    return True, None


def cache_state(cfg: TrainConfig, log: Callable[[str], None] = print) -> tuple[LatentCache, list[LatentPart]]:
    """The cache this run uses and the parts still to encode (module docstring: the resume cases)."""
    spec = LatentSpec(
        autoencoder_fingerprint(cfg.model.autoencoder, cfg.storage),
        cfg.model.image_size,
        2 if cfg.data.hflip else 1,
    )
    kind, shape = _autoencoder_layout(cfg.model.autoencoder, cfg.model.image_size, cfg.storage)
    cache = LatentCache(
        join(cache_root(cfg), spec.key()), spec, tuple(plan_parts(cfg.data.table, cfg.storage)), kind, shape
    )
    marker = _read_marker(cache.url, cfg.storage)
    todo = []
    for part in cache.parts:  # every part's footer, also under a marker: a damaged part is encoded again
        done, note = _part_done(cache, part, cfg.storage)
        if note:
            log(note)
        if not done:
            todo.append(part)
    if not todo and (marker is None or marker["parts"] != [p.record() for p in cache.parts]):
        commit_cache(cache, cfg.storage)  # every part there (a build killed before its marker): commit it
    return cache, todo


def _read_marker(url: str, storage: StorageConfig | None) -> dict | None:
    try:
        data = read_bytes(join(url, MARKER), storage)
    except StorageError as exc:
        if "not found" in str(exc):
            return None
        raise LatentCacheError(f"latent cache {url}: {MARKER} cannot be read: {exc}") from exc
    try:
        marker = json.loads(data)
        if marker.get("format") != FORMAT or not isinstance(marker.get("parts"), list):
            raise ValueError(f"not a {FORMAT} marker")
    except ValueError:
        return None  # a damaged marker: the parts are checked one by one and the marker rewritten
    return marker


def commit_cache(cache: LatentCache, storage: StorageConfig | None) -> None:
    """Write ``latents.json`` (after every part): the cache is complete."""
    marker = {
        "format": FORMAT,
        "key": cache.spec.key(),
        "spec": asdict(cache.spec),
        "kind": cache.kind,
        "latent_shape": list(cache.latent_shape),
        "rows": sum(p.rows for p in cache.parts),
        "parts": [p.record() for p in cache.parts],
    }
    write_bytes_atomic(join(cache.url, MARKER), json.dumps(marker, indent=1).encode(), storage)


def open_cache(cfg: TrainConfig) -> LatentCache:
    """The complete cache of this run; an error naming it when it is missing or out of date."""
    cache, todo = cache_state(cfg, log=lambda line: None)
    if todo:
        raise LatentCacheError(
            f"latent cache {cache.url} lacks {len(todo)} of {len(cache.parts)} parts; "
            "it is built by jobs/train_diffusion.py before training starts"
        )
    return cache


@torch.no_grad()
def encode_latents(autoencoder: Autoencoder, images: np.ndarray, device: torch.device) -> np.ndarray:
    """(B, S, S, 3) uint8 -> (B, D) float32: the unscaled autoencoder output (VQ: pre-quantisation
    latents; KL: the posterior's mean and log-variance), from the pixels the per-step path used."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(device).float() / 127.5 - 1.0  # (B, 3, S, S) in [-1, 1]
    encoded = autoencoder.encode(x)
    out = encoded.latents if isinstance(autoencoder, VQModel) else encoded.latent_dist.parameters  # (B, C', h, w)
    return out.float().cpu().reshape(len(images), -1).numpy()


def encode_part(
    autoencoder: Autoencoder,
    cache: LatentCache,
    part: LatentPart,
    storage: StorageConfig | None,
    device: torch.device | None = None,
) -> int:
    """Encode one row group of the table into its part, committed whole; returns its rows."""
    data = read_row_group(FACE_TABLE, part.source, part.row_group, ["image", "label", "identity", "embedding"], storage)
    if len(data) != part.rows:
        raise LatentCacheError(f"face table {part.source} changed while its latents were made; run again")
    labels, identities = data.column("label"), data.column("identity")
    embeddings, encoded = data.column("embedding"), data.column("image")
    meta = {PART_META: json.dumps({**part.record(), "key": cache.spec.key()}, sort_keys=True)}
    with TableWriter(LATENT_TABLE, cache.part_url(part), storage, meta, row_group_rows=1024) as writer:
        for start in range(0, part.rows, ENCODE_BATCH):
            stop = min(start + ENCODE_BATCH, part.rows)
            images = decode_images(encoded[start:stop], cache.spec.image_size)  # (b, S, S, 3) uint8
            columns = {"label": labels[start:stop], "identity": identities[start:stop]}
            columns["embedding"] = embeddings[start:stop]
            columns["latent"] = encode_latents(autoencoder, images, device or torch.device("cpu"))  # (b, D)
            if cache.spec.orientations == 2:
                mirrored = images[
                    :, :, ::-1
                ].copy()  # (b, S, S, 3), as apply_flip mirrors the last axis of (b, 3, S, S)
                columns["latent_flipped"] = encode_latents(autoencoder, mirrored, device or torch.device("cpu"))
            writer.write(columns)
    return part.rows


def progress_line(progress: Progress, parts_left: int) -> str:
    return f"[latents] {progress.text('faces')}, {parts_left} part(s) left"


def build_in_process(cfg: TrainConfig, log: Callable[[str], None] = print) -> LatentCache:
    """Build what is missing of this run's cache in this process (the local runner), then commit it."""
    cache, todo = cache_state(cfg, log)
    if not todo:
        return cache
    autoencoder = load_autoencoder(cfg.model.autoencoder, storage=cfg.storage)
    progress = Progress(sum(p.rows for p in todo), every_s=10.0)
    log(f"[latents] encoding {progress.total} faces in {len(todo)} part(s) -> {cache.url}")
    for i, part in enumerate(todo):
        progress.add(encode_part(autoencoder, cache, part, cfg.storage), parts=1)
        if progress.due():
            log(progress_line(progress, len(todo) - i - 1))
    commit_cache(cache, cfg.storage)
    log(f"[latents] committed {cache.url} ({time.strftime('%H:%M:%S')})")
    return cache


def check_compatible(cache: LatentCache, latent_shape: tuple[int, int, int]) -> None:
    if tuple(cache.latent_shape) != tuple(latent_shape):
        raise InputError(
            f"latent cache {cache.url} holds latents of {cache.latent_shape}, the UNet takes {latent_shape}"
        )
