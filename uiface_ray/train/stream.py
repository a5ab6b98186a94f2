"""Diffusion training's data path: a small scan of the face table at the driver, then each worker's
own stream of batches through the streaming core (:mod:`uiface_ray.data.stream`, ``stream_read``).

What a worker needs from the whole table is :class:`TrainData`, small whatever the table's size:
the encoder recorded in the table, the identities kept (their labels and image counts), the
provenance record with its hash, the grid's few real faces, and the :class:`ReadSpec` its stream
is read with.  The scan reads the footers, the ``label`` column (the core's metadata pass), the
embeddings of the first piece (checked: dimension, finite) and the grid's rows; never the images
of the rest.  Each batch is checked as it is read (an embedding with NaN names its row there).

Selection (``data.min_images_per_identity``, ``data.max_identities``): identities with at least the
minimum of images, the ones with the most images first (ties: the lower label, the face table's
labels being its identities in name order), kept through the core's row filter (``classes``).

``training_record()['rows_sha256']``: a sha256 of the kept labels, the selection settings and each
table file's name and Parquet footer (row groups, their sizes, column chunk sizes and statistics).
It identifies the data a generator was trained on without reading the images (reading them all made
the start of a run grow with the table); it is not a hash of the image bytes.

Latent training (``model.space: latent``) reads the latent cache's parts (``train/latent_cache.py``)
instead of the table: the same rows, the ``latent`` (and ``latent_flipped``) columns instead of the
image; the order of its stream is the core's over the parts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from uiface_ray.data.images import decode_images
from uiface_ray.data.stream import StreamSource, make_plan
from uiface_ray.data.stream_read import DecodeImages, ReadSpec, iter_local
from uiface_ray.data.stream_source import open_source, parquet_files
from uiface_ray.storage.latent_table import read_footer
from uiface_ray.storage.row_groups import RowGroupError, read_rows
from uiface_ray.storage.tables import FACE_TABLE, FaceTableError
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.data import encoder_info_of, provenance_of
from uiface_ray.train.latent_cache import LatentCache

__all__ = ["LatentBatch", "PixelBatch", "TrainData", "local_batches", "read_spec", "scan_table"]


@dataclass(frozen=True, eq=False)
class TrainData:
    """Everything a worker needs from the whole table (no rows), plus how to read its stream."""

    table: str
    encoder_info: dict
    provenance: dict
    classes: np.ndarray  # (K,) the table's labels kept, sorted; a batch's label is an index into it
    counts: np.ndarray  # (K,) images of each
    rows_sha256: str
    grid_embeddings: np.ndarray  # (k, E) float32: the grid's identities (most images first)
    grid_images: np.ndarray  # (k, S, S, 3) uint8: their first face
    source: StreamSource | None = None  # the face table's pieces (the driver's; not sent to workers)
    spec: ReadSpec | None = None  # how this run's stream is read (set by read_spec)
    latents: LatentCache | None = None  # latent training: the cache the stream reads

    @property
    def num_rows(self) -> int:
        return int(self.counts.sum())

    @property
    def num_identities(self) -> int:
        return len(self.classes)

    def training_record(self) -> dict:
        """What a generator trained on these rows records about its data (the dataset card shows it)."""
        return {
            "table": self.table,
            "source": self.provenance.get("input"),
            "people_file": self.provenance.get("people_file"),
            "identities": self.num_identities,
            "images": self.num_rows,
            "rows_sha256": self.rows_sha256,
        }


def _select(keys: np.ndarray, rows: np.ndarray, min_images: int, max_identities: int | None) -> np.ndarray:
    keep = np.flatnonzero(rows >= min_images)
    keep = keep[np.lexsort((keys[keep], -rows[keep]))]  # most images first, then the lower label
    return np.sort(keys[keep[:max_identities] if max_identities else keep])


def _encoder_meta(meta: dict, url: str) -> dict | None:
    try:
        value = json.loads(meta["uiface.encoder"]) if "uiface.encoder" in meta else None
    except json.JSONDecodeError as exc:
        raise FaceTableError(f"face table {url}: schema metadata uiface.encoder is not JSON: {exc}") from None
    return value if isinstance(value, dict) else None


def float_rows(values: np.ndarray, width: int, where: str, what: str = "embedding") -> np.ndarray:
    """A list column as read (an object array of arrays, or (n, D)) -> float32 (n, D), checked: every row
    of ``width`` values, all finite."""
    try:
        rows = np.stack([np.asarray(v, dtype=np.float32) for v in values]) if values.dtype == object else values
    except ValueError as exc:
        raise FaceTableError(f"{where}: {what} rows have mixed lengths ({exc})") from None
    rows = np.asarray(rows, dtype=np.float32).reshape(len(values), -1)
    if rows.shape[1] != width:
        expected = "model.embedding_dim is" if what == "embedding" else "expected"
        raise FaceTableError(f"{where}: {what} rows have dimension {rows.shape[1]}, but {expected} {width}")
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        raise FaceTableError(f"{where}: {len(bad)} {what}(s) hold NaN or infinite values (first at row {bad[0]})")
    return rows


def _grid(cfg: TrainConfig, source: StreamSource, classes: np.ndarray, counts: np.ndarray):
    """(embeddings (k, E), images (k, S, S, 3)) of the first face of the ``grid.num_identities``
    identities with the most images, read piece by piece until each is found."""
    labels = [int(v) for v in classes[np.lexsort((classes, -counts))][: cfg.grid.num_identities]]
    found: dict[int, tuple[np.ndarray, bytes]] = {}
    for p in source.pieces:
        wanted = [lab for lab in labels if lab not in found and lab in set(p.keys.tolist())]
        if not wanted:
            continue
        url = source.files[p.file]
        cols = read_rows(url, p.row_group, p.start, p.stop, ["label", "embedding", "image"], cfg.storage)
        for lab in wanted:
            i = int(np.flatnonzero(cols["label"] == lab)[0])
            found[lab] = (float_rows(cols["embedding"][i : i + 1], cfg.model.embedding_dim, url)[0], cols["image"][i])
        if len(found) == len(labels):
            break
    s, e = cfg.model.image_size, cfg.model.embedding_dim
    if not labels:
        return np.zeros((0, e), np.float32), np.zeros((0, s, s, 3), np.uint8)
    return np.stack([found[lab][0] for lab in labels]), decode_images([found[lab][1] for lab in labels], s)


def scan_table(cfg: TrainConfig) -> TrainData:
    """The driver's pass over the face table (module docstring); every problem is an error naming the file."""
    d = cfg.data
    files = parquet_files(d.table, cfg.storage)
    source = open_source(d.table, files, "label", cfg.storage, cfg.stream.piece_rows)
    keys, rows = source.key_counts()
    classes = _select(keys, rows, d.min_images_per_identity, d.max_identities)
    if not len(classes):
        raise FaceTableError(f"face table {d.table}: no identity has at least {d.min_images_per_identity} images")
    counts = rows[np.searchsorted(keys, classes)]
    source = source.restrict(classes)
    footers = [read_footer(FACE_TABLE, f, cfg.storage) for f in files]
    missing = [f for f, footer in zip(files, footers) if "embedding" not in footer.columns]
    if missing:
        raise FaceTableError(
            f"face table {missing[0]} has no 'embedding' column; add identity embeddings with jobs/embed.py first"
        )
    first = source.pieces[0]
    head = read_rows(files[first.file], first.row_group, first.start, first.stop, ["embedding"], cfg.storage)
    float_rows(head["embedding"], cfg.model.embedding_dim, f"face table {files[first.file]}")
    digest = hashlib.sha256(json.dumps([classes.tolist(), d.min_images_per_identity, d.max_identities]).encode())
    for f, footer in zip(files, footers):
        digest.update(f.rsplit("/", 1)[-1].encode() + b"\0" + footer.digest.encode())
    grid_emb, grid_img = _grid(cfg, source, classes, counts)
    meta = footers[0].metadata
    return TrainData(
        table=d.table,
        encoder_info=encoder_info_of(_encoder_meta(meta, files[0]), files[0], cfg.model.embedding_dim),
        provenance=provenance_of(meta),
        classes=classes,
        counts=counts,
        rows_sha256=digest.hexdigest(),
        grid_embeddings=grid_emb,
        grid_images=grid_img,
        source=source,
    )


def read_spec(cfg: TrainConfig, data: TrainData, world_size: int, cache: LatentCache | None = None) -> TrainData:
    """``data`` with the :class:`ReadSpec` of this run's stream (pixels: the face table; latents: the cache's
    parts) for ``world_size`` workers; without the driver's source."""
    if cache is None:
        source, columns = data.source, ("embedding",)
    else:
        parts = cache.part_urls()
        source = open_source(cache.url, parts, "label", cfg.storage, cfg.stream.piece_rows, image_column="latent")
        source = source.restrict(data.classes)
        columns = ("embedding", *cache.columns[1:])
    if source.num_rows != data.num_rows:
        raise RowGroupError(
            f"{source.url}: {source.num_rows} rows of the kept identities, the table has {data.num_rows}"
        )
    plan = make_plan(source, cfg.seed, cfg.stream.shuffle_window, cfg.batch_size // world_size, world_size)
    spec = ReadSpec.of(plan, source, cfg.storage, columns)
    return TrainData(**{**data.__dict__, "source": None, "spec": spec, "latents": cache})


@dataclass(frozen=True)
class PixelBatch:
    """Batch transform of pixel training: images decoded (an undecodable one names its file and row
    group), embeddings checked."""

    decode: DecodeImages
    dim: int
    where: str

    def __call__(self, batch: dict) -> dict:
        return {
            "image": self.decode(batch)["image"],  # (b, S, S, 3) uint8
            "embedding": float_rows(batch["embedding"], self.dim, self.where),  # (b, E)
            "label": batch["label"],
            "row": batch["row"],
        }


@dataclass(frozen=True)
class LatentBatch:
    """Batch transform of latent training: the cached latents of each face (both orientations)."""

    width: int
    dim: int
    where: str
    flipped: bool

    def __call__(self, batch: dict) -> dict:
        names = ["image", "latent_flipped"] if self.flipped else ["image"]  # the core reads 'latent' as its image
        latents = np.stack([float_rows(batch[n], self.width, self.where, "latent") for n in names], axis=1)  # (b, K, D)
        embeddings = float_rows(batch["embedding"], self.dim, self.where)  # (b, E)
        return {"latent": latents, "embedding": embeddings, "label": batch["label"], "row": batch["row"]}


def batch_transform(cfg: TrainConfig, data: TrainData) -> Callable[[dict], dict]:
    if data.latents is None:
        decode = DecodeImages(cfg.model.image_size, data.spec)
        return PixelBatch(decode, cfg.model.embedding_dim, f"face table {data.table}")
    c = data.latents
    return LatentBatch(c.width, cfg.model.embedding_dim, f"latent cache {c.url}", c.spec.orientations == 2)


def local_batches(cfg: TrainConfig, data: TrainData, rank: int = 0) -> Callable[[int], Iterator[dict]]:
    """The local runner's stream from a step (the core's in-process iterator, prefetching in a thread)."""
    transform = batch_transform(cfg, data)
    return lambda start: iter_local(data.spec, rank, start, cfg.max_steps, transform, cfg.stream.prefetch_batches)
