"""The latent cache's Parquet parts and the row-group reads it is built from (pyarrow stays in storage/).

A latent part mirrors one row group of a face table file: the same rows in the same order, with
``label``, ``identity`` and ``embedding`` copied and the autoencoder's output in ``latent`` (and
``latent_flipped``, the output for the mirrored image) as ``list<float32>`` rows of C*h*w values
(written from (N, D) float32 arrays).  :data:`LATENT_TABLE` is its kind (one error class, checks on reading and writing);
:func:`read_footer` and :func:`read_row_group` read a face table file row group by row group,
so a worker holds one row group at most.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa

from uiface_ray.config import StorageConfig
from uiface_ray.storage.batches import open_parquet
from uiface_ray.storage.tables import EMBEDDING, Table, TableError, TableKind, _check_nulls, _missing, _one_line

__all__ = [
    "LATENT_TABLE",
    "LatentCacheError",
    "read_row_group",
    "Footer",
    "read_footer",
]


class LatentCacheError(TableError):
    """A part of the latent cache is unreadable or malformed; the message names the file."""


LATENT_TABLE = TableKind(
    "latent cache part",
    LatentCacheError,
    pa.schema(
        [
            ("identity", pa.string()),
            ("label", pa.int64()),
            ("embedding", EMBEDDING),
            ("latent", pa.list_(pa.float32())),
            ("latent_flipped", pa.list_(pa.float32())),
        ]
    ),
    required=("label", "embedding", "latent"),
)


@dataclass(frozen=True)
class Footer:
    """What a Parquet file's footer tells without reading its rows."""

    row_groups: list[int]  # rows of each row group
    columns: list[str]
    metadata: dict[str, str]  # the schema metadata
    digest: str  # sha256 of the footer's content (row groups, column chunk sizes and statistics)


def read_footer(kind: TableKind, url: str, storage: StorageConfig | None = None) -> Footer:
    """The footer of one Parquet file of ``kind`` (one error naming the file when it is unreadable)."""
    handle, parquet = open_parquet(kind, url, storage)
    try:
        meta = parquet.metadata
        raw = parquet.schema_arrow.metadata or {}
        return Footer(
            [meta.row_group(i).num_rows for i in range(meta.num_row_groups)],
            list(parquet.schema_arrow.names),
            {k.decode(): v.decode() for k, v in raw.items()},
            hashlib.sha256(json.dumps(meta.to_dict(), sort_keys=True, default=str).encode()).hexdigest(),
        )
    finally:
        handle.close()


def read_row_group(
    kind: TableKind, url: str, index: int, columns: Sequence[str], storage: StorageConfig | None = None
) -> Table:
    """Row group ``index`` of one Parquet file of ``kind``: the ``columns`` (all required), checked for nulls."""
    handle, parquet = open_parquet(kind, url, storage)
    where = f"{kind.name} {url}"
    try:
        names = parquet.schema_arrow.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise kind.error(_missing(kind, url, missing, names))
        data = parquet.read_row_group(index, columns=list(columns))
        schema_meta = parquet.schema_arrow.metadata
    except TableError:
        raise
    except Exception as exc:  # noqa: BLE001 - a truncated or damaged file
        raise kind.error(f"{where} is not a readable Parquet file ({_one_line(exc)})") from exc
    finally:
        handle.close()
    offset = sum(parquet.metadata.row_group(i).num_rows for i in range(index))
    _check_nulls(data, kind, where, offset)
    return Table(url, kind, data.replace_schema_metadata(schema_meta).combine_chunks())
