"""The identity table: one row per synthetic identity, read and validated at every boundary.

Also reads the official release's ``.npy`` identity arrays directly (ids = row indices).
Parquet columns: ``identity_id`` (int64, 0..N-1), ``embedding`` (list<float32>, L2-normalised),
``seed`` (int64, the seed of the face it came from) and ``nn_similarity`` (float32, cosine
similarity to its nearest other identity).  The schema metadata key ``uiface.encoder`` records
the identity encoder (JSON: name, dim, fingerprint) and ``uiface.identities`` the filter summary.
Schema and checks: ``uiface_ray.storage.tables.IDENTITY_TABLE``; this module adds what is
particular to identities: unique ids, no all-zero embedding, rows L2-normalised.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from uiface_ray import storage
from uiface_ray.identities.filtering import FilterResult
from uiface_ray.storage.tables import IDENTITY_TABLE, IdentityTableError, check_embeddings, read_typed, write_typed

__all__ = ["IdentityTable", "IdentityTableError", "read_identity_table", "write_identity_table"]

COLUMNS = ("identity_id", "embedding", "seed", "nn_similarity")


@dataclass
class IdentityTable:
    identity_ids: np.ndarray  # (N,) int64
    embeddings: np.ndarray  # (N, E) float32
    seeds: np.ndarray  # (N,) int64
    nn_similarity: np.ndarray  # (N,) float32
    encoder: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # hash of the file's bytes ("" when built in memory)

    def __len__(self) -> int:
        return len(self.identity_ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


def write_identity_table(url: str, result: FilterResult, encoder: dict[str, Any], storage_cfg=None) -> IdentityTable:
    """Write a filter result as an identity table (ids 0..N-1 in acceptance order)."""
    n = len(result.embeddings)
    if n == 0:
        raise IdentityTableError(f"refusing to write an empty identity table to {url}")
    ids = np.arange(n, dtype=np.int64)
    columns = {
        "identity_id": ids,
        "embedding": result.embeddings.astype(np.float32),  # (N, E)
        "seed": result.seeds.astype(np.int64),
        "nn_similarity": result.nn_similarity.astype(np.float32),
    }
    meta = {
        "uiface.encoder": json.dumps(encoder, sort_keys=True),
        "uiface.identities": json.dumps(asdict(result.summary), sort_keys=True),
    }
    data = write_typed(IDENTITY_TABLE, url, columns, storage_cfg, metadata=meta)
    return IdentityTable(
        ids,
        result.embeddings.astype(np.float32),
        result.seeds.astype(np.int64),
        result.nn_similarity.astype(np.float32),
        dict(encoder),
        hashlib.sha256(data).hexdigest(),
    )


def _normalised(emb: np.ndarray, url: str) -> np.ndarray:
    """(N, E) float32 finite embeddings checked (non-zero) and L2-normalised per row."""
    norms = np.linalg.norm(emb, axis=1)
    if (norms == 0).any():
        raise IdentityTableError(f"identity table {url}: all-zero embedding at row {int(np.argmin(norms))}")
    return emb / norms[:, None]


def _check_npy_header(url: str, data: bytes) -> None:
    """Refuse a ``.npy`` whose header describes more (or fewer) bytes than follow it, before
    ``np.load`` allocates the array it claims (a header may claim shape (10**12, 128): 512 TB)."""
    buf = io.BytesIO(data)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(buf)
        if version not in readers:
            raise ValueError(f"format version {version[0]}.{version[1]} (a numeric array is written as 1.0 or 2.0)")
        shape, _fortran, dtype = readers[version](buf)
    except ValueError as exc:
        raise IdentityTableError(f"identity file {url} is not a readable .npy file: {str(exc)[:160]}") from None
    if dtype.hasobject:
        return  # np.load refuses it (allow_pickle=False), with its own message
    needed = math.prod(shape) * dtype.itemsize
    held = len(data) - buf.tell()
    if needed != held:
        raise IdentityTableError(
            f"identity file {url}: its .npy header claims shape {shape} of {dtype} ({needed} bytes), but "
            f"{held} bytes follow the header (truncated, or not the array it claims)"
        )


def _read_npy(url: str, data: bytes, expected_dim: int | None) -> IdentityTable:
    """The official release's identities: a ``.npy`` array (N, E), one identity per row.

    ``identity_id`` is the row index (as the release names its sample folders), so ids never
    depend on the embeddings' values; ``seed`` is -1 and ``nn_similarity`` NaN (not in the file).
    Object arrays are refused (``allow_pickle=False``): loading never runs code.
    """
    _check_npy_header(url, data)
    try:
        emb = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        reason = "it holds Python objects (refused: allow_pickle=False)" if "pickle" in str(exc) else str(exc)[:120]
        raise IdentityTableError(f"identity file {url} is not a numeric .npy array: {reason}") from None
    except (OSError, EOFError) as exc:
        raise IdentityTableError(f"identity file {url} is not a readable .npy file ({type(exc).__name__})") from None
    if not isinstance(emb, np.ndarray) or emb.ndim != 2 or emb.shape[0] == 0 or emb.dtype.kind not in "fiu":
        shape = getattr(emb, "shape", None)
        raise IdentityTableError(
            f"identity file {url}: expected a non-empty (N, E) numeric array, got shape {shape} "
            f"dtype {getattr(emb, 'dtype', type(emb).__name__)}"
        )
    emb = check_embeddings(emb, f"identity file {url}", IdentityTableError, expected_dim)  # (N, E) float32
    n, dim = emb.shape
    return IdentityTable(
        identity_ids=np.arange(n, dtype=np.int64),
        embeddings=_normalised(emb, url),
        seeds=np.full(n, -1, dtype=np.int64),
        nn_similarity=np.full(n, np.nan, dtype=np.float32),
        encoder={"kind": "npy", "dim": int(dim), "source": url.rsplit("/", 1)[-1]},
        sha256=hashlib.sha256(data).hexdigest(),
    )


def read_identity_table(url: str, expected_dim: int | None = None, storage_cfg=None) -> IdentityTable:
    """Read and validate an identity table; every problem is an :class:`IdentityTableError` naming ``url``.

    A URL ending in ``.npy`` is read as the official release's identity array (see :func:`_read_npy`).
    """
    if not storage.exists(url, storage_cfg):
        raise IdentityTableError(f"identity table not found: {url}")
    data = storage.read_bytes(url, storage_cfg)
    if url.lower().endswith(".npy"):
        return _read_npy(url, data, expected_dim)
    table = read_typed(IDENTITY_TABLE, url, data=data)
    emb = _normalised(table.embeddings(expected_dim), url)  # (N, E)
    ids = table.column("identity_id")
    if len(np.unique(ids)) != len(ids):
        raise IdentityTableError(f"identity table {url}: identity_id values are not unique")
    return IdentityTable(
        identity_ids=ids,
        embeddings=emb,
        seeds=table.column("seed"),
        nn_similarity=table.column("nn_similarity"),
        encoder=table.json_metadata("uiface.encoder") or {},
        sha256=hashlib.sha256(data).hexdigest(),
    )
