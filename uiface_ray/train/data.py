"""The face table as training data: validation, decoding, and a resumable batch order.

The face table (docs/ARCHITECTURE.md) has ``image`` (encoded JPEG/PNG), ``label``, ``identity``,
``source`` and, after ``jobs/embed.py``, ``embedding`` (list<float32>, L2-normalised) with the
encoder recorded in the schema metadata key ``uiface.encoder``.

The batch order is a pure function of (seed, step): the rows form an endless stream of
per-epoch permutations and global batch ``step`` is positions ``[step * B, (step + 1) * B)`` of
it, so resuming at a step continues exactly where the data stopped, for any number of workers.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from uiface_ray.config import StorageConfig
from uiface_ray.data.face_table import FACE_TABLE_META
from uiface_ray.errors import InputError
from uiface_ray.storage.fs import StorageError, list_files
from uiface_ray.storage.parquet import read_table, table_metadata

__all__ = [
    "BatchOrder", "FaceData", "FaceTableError", "decode_images", "load_face_data", "load_face_images", "table_files",
]

META_COLUMNS = ["label", "identity", "source", "embedding"]


class FaceTableError(InputError, ValueError):
    """The face table cannot train this model; the message names the table and the problem."""


@dataclass
class FaceData:
    """Selected rows of a face table; ``labels`` are contiguous over the selected identities."""

    url: str
    embeddings: np.ndarray  # (N, E) float32
    labels: np.ndarray  # (N,) int64
    identities: list[str]  # name per label
    sources: list[str]  # (N,)
    encoder_info: dict
    images: np.ndarray | None = None  # (N, S, S, 3) uint8 once decoded
    encoded: list[bytes] | None = None  # (N,) encoded images, when read
    provenance: dict = field(default_factory=dict)  # how the face table was made (prepare_faces' record)

    @property
    def num_rows(self) -> int:
        return int(self.labels.shape[0])

    def training_record(self) -> dict:
        """What a generator trained on these rows records about its data (the dataset card shows it):
        the table, where its faces came from, counts, and a content hash of the rows used."""
        digest = hashlib.sha256()
        for name in self.identities:
            digest.update(name.encode() + b"\0")
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        digest.update(np.ascontiguousarray(self.embeddings).tobytes())
        for blob in self.encoded or []:
            digest.update(hashlib.sha256(blob).digest())
        return {"table": self.url, "source": self.provenance.get("input"),
                "people_file": self.provenance.get("people_file"), "identities": len(self.identities),
                "images": self.num_rows, "rows_sha256": digest.hexdigest()}


def table_files(url: str, storage: StorageConfig | None = None) -> list[str]:
    """The Parquet file itself, or the .parquet files directly under a folder."""
    if url.endswith(".parquet"):
        return [url]
    try:
        files = list_files(url, ".parquet", storage)
    except StorageError as exc:
        raise FaceTableError(f"face table {url} cannot be read: {exc}") from exc
    if not files:
        raise FaceTableError(f"face table {url}: no .parquet files found there")
    return files


def _encoder_info(meta: dict, url: str, dim: int) -> dict:
    raw = meta.get("uiface.encoder")
    if not raw:
        return {"kind": "unspecified", "dim": dim, "fingerprint": ""}
    try:
        enc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FaceTableError(f"face table {url}: schema metadata uiface.encoder is not JSON: {exc}") from exc
    if int(enc.get("dim", dim)) != dim:
        raise FaceTableError(f"face table {url}: uiface.encoder says dim {enc.get('dim')}, embeddings have {dim}")
    return {"kind": str(enc.get("kind", "unspecified")), "dim": dim,
            "fingerprint": str(enc.get("fingerprint", enc.get("hash", "")))}


def _provenance(meta: dict) -> dict:
    try:
        value = json.loads(meta.get(FACE_TABLE_META, "{}"))
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _embeddings(table, url: str) -> np.ndarray:
    if "embedding" not in table.column_names:
        raise FaceTableError(
            f"face table {url} has no 'embedding' column (columns: {table.column_names}); "
            "add identity embeddings with jobs/embed.py first"
        )
    column = table.column("embedding").combine_chunks()
    if column.null_count:
        raise FaceTableError(f"face table {url}: {column.null_count} rows have no embedding")
    lengths = np.asarray(column.value_lengths())
    if len(lengths) == 0:
        raise FaceTableError(f"face table {url} has no rows")
    if (lengths != lengths[0]).any():
        raise FaceTableError(f"face table {url}: embedding lengths differ ({sorted(set(lengths.tolist()))[:5]})")
    values = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return values.reshape(len(lengths), int(lengths[0]))  # (N, E)


def _read_one(url: str, storage: StorageConfig | None, with_images: bool):
    try:
        table = read_table(url, storage)
    except StorageError as exc:
        raise FaceTableError(f"face table {url} cannot be read: {exc}") from exc
    missing = [c for c in ["label", "identity"] + (["image"] if with_images else []) if c not in table.column_names]
    if missing:
        raise FaceTableError(f"face table {url} lacks column(s) {missing}; it has {table.column_names}")
    emb = _embeddings(table, url)
    ids = table.column("identity").to_pylist()
    sources = table.column("source").to_pylist() if "source" in table.column_names else [""] * len(ids)
    images = table.column("image").to_pylist() if with_images else None
    return emb, ids, sources, images, table_metadata(table)


def _select(identities: list[str], min_images: int, max_identities: int | None) -> list[str]:
    counts = Counter(identities)
    keep = [name for name, n in counts.items() if n >= min_images]
    keep.sort(key=lambda name: (-counts[name], name))
    return sorted(keep[:max_identities] if max_identities else keep)


def load_face_data(url: str, embedding_dim: int, min_images: int = 1, max_identities: int | None = None,
                   with_images: bool = True, storage: StorageConfig | None = None) -> FaceData:
    """Read and validate the table: embeddings present, of ``embedding_dim``, finite."""
    parts = [_read_one(f, storage, with_images) for f in table_files(url, storage)]
    emb = np.concatenate([p[0] for p in parts])
    if emb.shape[1] != embedding_dim:
        raise FaceTableError(
            f"face table {url}: embeddings have dimension {emb.shape[1]}, but model.embedding_dim is {embedding_dim}"
        )
    ids = [i for p in parts for i in p[1]]
    sources = [s for p in parts for s in p[2]]
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if len(bad):
        raise FaceTableError(
            f"face table {url}: {len(bad)} embeddings contain NaN or inf (first: row {bad[0]}, {sources[bad[0]]!r})"
        )
    names = _select(ids, min_images, max_identities)
    if not names:
        raise FaceTableError(f"face table {url}: no identity has at least {min_images} images")
    label_of = {name: i for i, name in enumerate(names)}
    rows = np.array([k for k, name in enumerate(ids) if name in label_of], dtype=np.int64)
    encoded = None
    if with_images:
        flat = [b for p in parts for b in p[3]]
        encoded = [flat[k] for k in rows]
    return FaceData(
        url=url, embeddings=np.ascontiguousarray(emb[rows]),
        labels=np.array([label_of[ids[k]] for k in rows], dtype=np.int64), identities=names,
        sources=[sources[k] for k in rows], encoder_info=_encoder_info(parts[0][4], url, emb.shape[1]),
        encoded=encoded, provenance=_provenance(parts[0][4]),
    )


def load_face_images(url: str, size: int, storage: StorageConfig | None = None) -> np.ndarray:
    """All images of a face table (embeddings not needed), decoded to (N, size, size, 3) uint8."""
    encoded: list[bytes] = []
    for f in table_files(url, storage):
        try:
            table = read_table(f, storage, columns=["image"])
        except StorageError as exc:
            raise FaceTableError(f"face table {f} cannot be read (needs an 'image' column): {exc}") from exc
        encoded.extend(table.column("image").to_pylist())
    if not encoded:
        raise FaceTableError(f"face table {url} has no rows")
    return decode_images(encoded, size)


def decode_images(encoded: list[bytes], size: int) -> np.ndarray:
    """Encoded images -> (N, size, size, 3) uint8, resized with an antialiasing bicubic filter."""
    out = np.empty((len(encoded), size, size, 3), dtype=np.uint8)
    for i, data in enumerate(encoded):
        with Image.open(io.BytesIO(data)) as img:
            rgb = img.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.BICUBIC)
            out[i] = np.asarray(rgb)
    return out


class BatchOrder:
    """Global batch ``step`` of an endless stream of per-epoch permutations of ``num_rows``."""

    def __init__(self, num_rows: int, seed: int) -> None:
        self.num_rows = num_rows
        self.seed = seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)
        return self._perms[epoch]

    def global_batch(self, step: int, batch_size: int) -> np.ndarray:
        positions = np.arange(step * batch_size, (step + 1) * batch_size)
        epochs, offsets = np.divmod(positions, self.num_rows)
        return np.array([self._perm(int(e))[o] for e, o in zip(epochs, offsets)], dtype=np.int64)

    def worker_batch(self, step: int, batch_size: int, rank: int, world_size: int) -> np.ndarray:
        """This rank's contiguous share of global batch ``step``."""
        per = batch_size // world_size
        return self.global_batch(step, batch_size)[rank * per:(rank + 1) * per]
