"""Parquet tables on any storage URL, written atomically (untyped; the face table, identity table and
shards go through ``storage.tables``, which checks their schema)."""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from uiface_ray.config import StorageConfig
from uiface_ray.storage.fs import StorageError, read_bytes, write_bytes_atomic


def to_table(columns: Mapping[str, Sequence[Any]] | pa.Table, metadata: Mapping[str, str] | None = None) -> pa.Table:
    table = columns if isinstance(columns, pa.Table) else pa.table(dict(columns))
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    return table


def table_to_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue()


def write_table(
    url: str,
    table: pa.Table | Mapping[str, Sequence[Any]],
    storage: StorageConfig | None = None,
    metadata: Mapping[str, str] | None = None,
    compression: str = "zstd",
) -> bytes:
    """Write one Parquet file atomically; returns the bytes written (for hashing)."""
    data = table_to_bytes(to_table(table, metadata), compression)
    write_bytes_atomic(url, data, storage)
    return data


def read_table(url: str, storage: StorageConfig | None = None, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one Parquet file; errors name the URL."""
    data = read_bytes(url, storage)
    try:
        return pq.read_table(io.BytesIO(data), columns=list(columns) if columns else None)
    except Exception as exc:  # noqa: BLE001
        raise StorageError(f"{url} is not a readable Parquet file: {exc}") from exc


def table_metadata(table: pa.Table) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
