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
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from uiface_ray import jsonfile
from uiface_ray.config import StorageConfig
from uiface_ray.data.face_table import FACE_TABLE_META
from uiface_ray.data.images import decode_images
from uiface_ray.storage.fs import StorageError, list_files
from uiface_ray.storage.tables import FaceTableError, read_face_table

__all__ = [
    "BatchOrder",
    "FaceData",
    "FaceTableError",
    "decode_images",
    "load_face_data",
    "load_face_images",
    "table_files",
]

META_COLUMNS = ["label", "identity", "source", "embedding"]


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
        return {
            "table": self.url,
            "source": self.provenance.get("input"),
            "people_file": self.provenance.get("people_file"),
            "identities": len(self.identities),
            "images": self.num_rows,
            "rows_sha256": digest.hexdigest(),
        }


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


def encoder_info_of(enc: dict | None, url: str, dim: int) -> dict:
    """The table's ``uiface.encoder`` record as a model records it (kind, dim, fingerprint)."""
    if not enc:
        return {"kind": "unspecified", "dim": dim, "fingerprint": ""}
    if int(enc.get("dim", dim)) != dim:
        raise FaceTableError(f"face table {url}: uiface.encoder says dim {enc.get('dim')}, embeddings have {dim}")
    return {
        "kind": str(enc.get("kind", "unspecified")),
        "dim": dim,
        "fingerprint": str(enc.get("fingerprint", enc.get("hash", ""))),
    }


def provenance_of(meta: dict) -> dict:
    """How the face table was made (prepare_faces' record in the schema metadata), or {}."""
    try:
        value = jsonfile.loads(meta.get(FACE_TABLE_META, "{}"))
    except jsonfile.JSONFileError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class _Part:
    """What one file of the face table gives."""

    embeddings: np.ndarray  # (n, E) float32
    identities: list[str]
    sources: list[str]
    images: list[bytes] | None
    encoder: dict | None
    metadata: dict


def _read_one(url: str, embedding_dim: int, storage: StorageConfig | None, with_images: bool) -> _Part:
    image = ["image"] if with_images else []
    table = read_face_table(
        url, storage, required=["label", "identity", "embedding", *image], columns=META_COLUMNS + image
    )
    emb = table.embeddings()
    if emb.shape[1] != embedding_dim:
        raise FaceTableError(
            f"face table {url}: embeddings have dimension {emb.shape[1]}, but model.embedding_dim is {embedding_dim}"
        )
    ids = table.column("identity")
    sources = table.column("source") if table.has("source") else [""] * len(ids)
    images = table.column("image") if with_images else None
    return _Part(emb, ids, sources, images, table.json_metadata("uiface.encoder"), table.metadata)


def _select(identities: list[str], min_images: int, max_identities: int | None) -> list[str]:
    counts = Counter(identities)
    keep = [name for name, n in counts.items() if n >= min_images]
    keep.sort(key=lambda name: (-counts[name], name))
    return sorted(keep[:max_identities] if max_identities else keep)


def load_face_data(
    url: str,
    embedding_dim: int,
    min_images: int = 1,
    max_identities: int | None = None,
    with_images: bool = True,
    storage: StorageConfig | None = None,
) -> FaceData:
    """Read and validate the table (``storage.tables``: embeddings present, not ragged, finite, of
    ``embedding_dim``)."""
    parts = [_read_one(f, embedding_dim, storage, with_images) for f in table_files(url, storage)]
    emb = np.concatenate([p.embeddings for p in parts])  # (N, E)
    ids = [i for p in parts for i in p.identities]
    sources = [s for p in parts for s in p.sources]
    names = _select(ids, min_images, max_identities)
    if not names:
        raise FaceTableError(f"face table {url}: no identity has at least {min_images} images")
    label_of = {name: i for i, name in enumerate(names)}
    rows = np.array([k for k, name in enumerate(ids) if name in label_of], dtype=np.int64)
    encoded = None
    if with_images:
        flat = [b for p in parts for b in p.images]
        encoded = [flat[k] for k in rows]
    return FaceData(
        url=url,
        embeddings=np.ascontiguousarray(emb[rows]),
        labels=np.array([label_of[ids[k]] for k in rows], dtype=np.int64),
        identities=names,
        sources=[sources[k] for k in rows],
        encoder_info=encoder_info_of(parts[0].encoder, url, emb.shape[1]),
        encoded=encoded,
        provenance=provenance_of(parts[0].metadata),
    )


def load_face_images(url: str, size: int, storage: StorageConfig | None = None) -> np.ndarray:
    """All images of a face table (embeddings not needed), decoded to (N, size, size, 3) uint8."""
    encoded: list[bytes] = []
    for f in table_files(url, storage):
        encoded.extend(read_face_table(f, storage, required=["image"], columns=["image"]).column("image"))
    return decode_images(encoded, size)


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
        return self.global_batch(step, batch_size)[rank * per : (rank + 1) * per]
