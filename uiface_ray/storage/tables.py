"""Typed tables: the face table, the identity table and synthetic shards, read and written with
their schema and their checks in one place.

Schemas (docs/ARCHITECTURE.md, "Contracts between layers"); writing uses exactly these types:

- face table: ``image`` binary, ``label`` int64, ``identity`` string, ``source`` string, ``width``
  and ``height`` int32, and after ``jobs/embed.py`` ``embedding`` list<float32> (schema metadata
  ``uiface.face_table``, ``uiface.encoder``);
- identity table: ``identity_id`` int64, ``embedding`` list<float32>, ``seed`` int64,
  ``nn_similarity`` float32 (metadata ``uiface.encoder``, ``uiface.identities``);
- shard: ``identity_id`` int64, ``image_index`` int32, ``seed`` int64, ``image`` binary, ``t0``
  int32, ``mode`` string, ``model_hash`` string (metadata ``uiface.*``; may hold no rows).

Reading accepts the same family of type that other tools write (any integer width, large strings
and binaries, a list of any float width for ``embedding``) and converts to the types above.

Every problem is raised as the table kind's one error class (:class:`FaceTableError`,
:class:`IdentityTableError`, :class:`ShardError`), in one line that names the file and the
problem: not found, not Parquet (a truncated file), a missing column, a column of another type,
null rows, no rows; and for an embedding column (:func:`embedding_matrix`, the one reader of
every embedding column): rows without an embedding, rows of different lengths, NaN or infinite
values, and a dimension other than the one expected.  Writers check the same before writing,
so a bad table is never written.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from uiface_ray import jsonfile
from uiface_ray.config import StorageConfig
from uiface_ray.errors import InputError
from uiface_ray.storage.fs import StorageError, StorageNotFoundError, read_bytes, write_bytes_atomic

__all__ = [
    "FACE_TABLE",
    "IDENTITY_TABLE",
    "SHARD",
    "FaceTableError",
    "IdentityTableError",
    "ShardError",
    "Table",
    "TableError",
    "TableKind",
    "check_embeddings",
    "embedding_matrix",
    "read_face_table",
    "read_typed",
    "table_bytes",
    "write_typed",
]

EMBEDDING = pa.list_(pa.float32())


class TableError(InputError, ValueError):
    """A table is missing, unreadable or malformed; the message names the file and the problem."""


class FaceTableError(TableError):
    """A face table is missing, unreadable or malformed; the message names the file and the problem."""


class IdentityTableError(TableError):
    """An identity table is missing, empty or malformed; the message names the file and the problem."""


class ShardError(TableError):
    """A shard of a synthetic dataset is unreadable or malformed; the message names the file."""


@dataclass(frozen=True)
class TableKind:
    """One kind of table: its name in messages, its error class and its schema."""

    name: str
    error: type[TableError]
    schema: pa.Schema  # every known column with the type it is written with
    required: tuple[str, ...]  # columns every file of this kind has (more may be asked for on reading)
    allow_empty: bool = False
    hints: Mapping[str, str] = field(default_factory=dict)  # what to do about a missing column


FACE_TABLE = TableKind(
    "face table",
    FaceTableError,
    pa.schema(
        [
            ("image", pa.binary()),
            ("label", pa.int64()),
            ("identity", pa.string()),
            ("source", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("embedding", EMBEDDING),
        ]
    ),
    required=(),
    hints={"embedding": "add identity embeddings with jobs/embed.py first"},
)
IDENTITY_TABLE = TableKind(
    "identity table",
    IdentityTableError,
    pa.schema(
        [("identity_id", pa.int64()), ("embedding", EMBEDDING), ("seed", pa.int64()), ("nn_similarity", pa.float32())]
    ),
    required=("identity_id", "embedding", "seed", "nn_similarity"),
)
SHARD = TableKind(
    "shard",
    ShardError,
    pa.schema(
        [
            ("identity_id", pa.int64()),
            ("image_index", pa.int32()),
            ("seed", pa.int64()),
            ("image", pa.binary()),
            ("t0", pa.int32()),
            ("mode", pa.string()),
            ("model_hash", pa.string()),
        ]
    ),
    required=("identity_id", "image_index", "seed", "image", "t0", "mode", "model_hash"),
    allow_empty=True,
)


def _family(t: pa.DataType) -> str:
    """The kind of values a type holds, as messages name it; types of one family convert losslessly
    enough for our columns (an int32 label, a large_binary image, a list<double> embedding)."""
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and pa.types.is_floating(
        t.value_type
    ):
        return "list of floats"
    return str(t)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


# --- the embedding column ---------------------------------------------------------------------


def check_embeddings(
    emb: np.ndarray,
    where: str,
    error: type[InputError],
    expected_dim: int | None = None,
    expected_by: str = "the model",
) -> np.ndarray:
    """``emb`` as float32 ``(N, E)``: non-empty, of ``expected_dim`` (when given), finite."""
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise error(f"{where}: expected a non-empty (N, E) array of embeddings, got shape {emb.shape}")
    dim = int(emb.shape[1])
    if expected_dim is not None and dim != expected_dim:
        raise error(f"{where}: embeddings have dim {dim}, but {expected_by} expects {expected_dim}")
    emb = np.asarray(emb, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if len(bad):
        raise error(f"{where}: {len(bad)} embedding(s) hold NaN or infinite values (first at row {bad[0]})")
    return emb


def embedding_matrix(
    column: pa.Array | pa.ChunkedArray,
    where: str,
    error: type[InputError],
    expected_dim: int | None = None,
    expected_by: str = "the model",
) -> np.ndarray:
    """An embedding column as float32 ``(N, E)``: every row present, all of one length (not ragged),
    of ``expected_dim`` when given, finite.  ``where`` starts each message ("face table x.parquet")."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if _family(col.type) != "list of floats":
        raise error(f"{where}: column 'embedding' is {col.type}, expected a list of floats")
    if len(col) == 0:
        raise error(f"{where} is empty: it has no rows")
    if col.null_count:
        first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise error(f"{where}: {col.null_count} row(s) have no embedding (first at row {first})")
    if pa.types.is_fixed_size_list(col.type):
        lengths = np.full(len(col), col.type.list_size, dtype=np.int64)
    else:
        lengths = np.asarray(col.value_lengths().to_numpy(zero_copy_only=False), dtype=np.int64)
    if (lengths != lengths[0]).any():
        first = int(np.flatnonzero(lengths != lengths[0])[0])
        raise error(
            f"{where}: embeddings have mixed lengths {sorted(set(lengths.tolist()))[:5]} "
            f"(row 0 has {lengths[0]}, row {first} has {lengths[first]})"
        )
    values = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)  # nulls inside -> NaN
    return check_embeddings(
        values.reshape(len(col), int(lengths[0])),
        where,
        error,
        expected_dim,  # (N, E)
        expected_by,
    )


def _embedding_array(values: Any) -> pa.Array:
    """(N, E) numbers (an array or a list of rows) -> list<float32>."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        n, e = values.shape
        offsets = pa.array(np.arange(0, n * e + 1, e, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1).astype(np.float32)))  # (N,) of (E,)
    return pa.array([np.asarray(v, dtype=np.float32) for v in values], EMBEDDING)


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """One checked table of a kind; :meth:`column` gives each column with its schema's type."""

    url: str
    kind: TableKind
    data: pa.Table

    def __len__(self) -> int:
        return self.data.num_rows

    @property
    def where(self) -> str:
        return f"{self.kind.name} {self.url}"

    @property
    def column_names(self) -> list[str]:
        return list(self.data.column_names)

    @property
    def metadata(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in (self.data.schema.metadata or {}).items()}

    def has(self, name: str) -> bool:
        return name in self.data.column_names

    def column(self, name: str) -> np.ndarray | list:
        """Integers and floats as numpy arrays of the schema's type, strings and bytes as lists,
        ``embedding`` as float32 ``(N, E)`` (checked, see :func:`embedding_matrix`)."""
        if name not in self.data.column_names:
            raise self.kind.error(_missing(self.kind, self.url, [name], self.column_names))
        if name == "embedding":
            return self.embeddings()
        col = self.data.column(name)
        want = self.kind.schema.field(name).type if name in self.kind.schema.names else col.type
        if pa.types.is_integer(want) or pa.types.is_floating(want):
            return np.asarray(col.to_numpy(), dtype=want.to_pandas_dtype())
        return col.to_pylist()

    def embeddings(self, expected_dim: int | None = None, expected_by: str = "the model") -> np.ndarray:
        if "embedding" not in self.data.column_names:
            raise self.kind.error(_missing(self.kind, self.url, ["embedding"], self.column_names))
        return embedding_matrix(self.data.column("embedding"), self.where, self.kind.error, expected_dim, expected_by)

    def json_metadata(self, key: str) -> dict | None:
        """The schema metadata ``key`` parsed as a JSON object; None when absent."""
        raw = self.metadata.get(key)
        if raw is None:
            return None
        try:
            value = jsonfile.loads(raw)
        except jsonfile.JSONFileError as exc:
            raise self.kind.error(f"{self.where}: schema metadata {key} is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise self.kind.error(f"{self.where}: schema metadata {key} is not a JSON object")
        return value

    def columns(self) -> dict[str, pa.ChunkedArray]:
        """Every column as stored."""
        return {name: self.data.column(name) for name in self.data.column_names}

    def with_column(self, name: str, values: Any) -> "Table":
        """This table (metadata kept) with column ``name`` added last or replaced, in the kind's type;
        checked when written."""
        data = self.data.drop_columns([name]) if name in self.data.column_names else self.data
        return Table(self.url, self.kind, data.append_column(name, _array(self.kind, name, values)))


def _missing(kind: TableKind, url: str, missing: list[str], present: list[str]) -> str:
    names = ", ".join(repr(c) for c in missing)
    hint = "; ".join(kind.hints[c] for c in missing if c in kind.hints)
    return f"{kind.name} {url} has no {names} column{'s' if len(missing) > 1 else ''} (it has {present})" + (
        f"; {hint}" if hint else ""
    )


def _check(table: pa.Table, kind: TableKind, where: str) -> None:
    """Rows, types of the known columns, no null rows (the embedding's own checks come on reading it)."""
    if table.num_rows == 0 and not kind.allow_empty:
        raise kind.error(f"{where} is empty: it has no rows")
    _check_types(table.schema, kind, where, table.num_rows)
    _check_nulls(table, kind, where)


def _check_types(schema: pa.Schema, kind: TableKind, where: str, num_rows: int) -> None:
    for name in schema.names:
        if name not in kind.schema.names:
            continue
        have, want = schema.field(name).type, kind.schema.field(name).type
        if pa.types.is_null(have) and num_rows == 0:  # what Arrow infers for an empty list
            continue
        if _family(have) != _family(want):
            raise kind.error(f"{where}: column '{name}' is {have}, expected {_family(want)} ({want})")


def _check_nulls(table: pa.Table, kind: TableKind, where: str, offset: int = 0) -> None:
    """No null rows in the known columns; ``offset``: the row number of the table's first row."""
    for name in table.column_names:
        col = table.column(name)
        if name in kind.schema.names and name != "embedding" and col.null_count:
            first = offset + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise kind.error(f"{where}: column '{name}' has {col.null_count} null row(s) (first at row {first})")


def read_typed(
    kind: TableKind,
    url: str,
    storage: StorageConfig | None = None,
    required: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    data: bytes | None = None,
) -> Table:
    """Read and check one Parquet file of ``kind``; ``required`` columns (besides the kind's own) must be
    there; ``columns`` limits what is read (default: every column).  ``data``: the file's bytes, when
    already read (nothing is read again)."""
    where = f"{kind.name} {url}"
    if data is None:
        try:
            data = read_bytes(url, storage)
        except StorageNotFoundError as exc:
            raise kind.error(f"{kind.name} not found: {url}") from exc
        except StorageError as exc:
            raise kind.error(f"{where} cannot be read: {exc}") from exc
    need = list(dict.fromkeys([*kind.required, *required]))
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        names = parquet.schema_arrow.names
        missing = [c for c in need if c not in names]
        if missing:
            raise kind.error(_missing(kind, url, missing, names))
        wanted = None if columns is None else [c for c in dict.fromkeys([*need, *columns]) if c in names]
        table = parquet.read(columns=wanted)
    except TableError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise kind.error(f"{where} is not a readable Parquet file ({_one_line(exc)})") from exc
    _check(table, kind, where)
    return Table(url, kind, table)


def read_face_table(
    url: str,
    storage: StorageConfig | None = None,
    required: Sequence[str] = ("image", "label"),
    columns: Sequence[str] | None = None,
) -> Table:
    """One face table file, with the ``required`` columns (``columns``: read only these and the required)."""
    return read_typed(FACE_TABLE, url, storage, required, columns)


# --- writing ----------------------------------------------------------------------------------


def _array(kind: TableKind, name: str, values: Any) -> pa.Array | pa.ChunkedArray:
    """One column's values (a list, a numpy array, an Arrow array) in the kind's type for ``name``."""
    want = kind.schema.field(name).type if name in kind.schema.names else None
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values if want is None or values.type == want else values.cast(want)
    if want is not None and pa.types.is_list(want):
        return _embedding_array(values)
    return pa.array(values, type=want)


def _arrow_table(
    kind: TableKind, columns: Mapping[str, Any] | Table, metadata: Mapping[str, str] | None, where: str
) -> pa.Table:
    """Columns (lists, numpy arrays, Arrow arrays) in the kind's types, checked, with ``metadata`` merged
    into the table's own (a :class:`Table`'s metadata is kept)."""
    old_meta = {}
    if isinstance(columns, Table):
        old_meta, columns = columns.metadata, columns.columns()
    missing = [c for c in kind.required if c not in columns]
    if missing:
        raise kind.error(f"{where}: refusing to write a {kind.name} without column(s) {missing}")
    arrays = [_array(kind, name, values) for name, values in columns.items()]
    fields = [pa.field(name, arr.type) for name, arr in zip(columns, arrays)]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise kind.error(
            f"{where}: columns have different lengths { {f.name: len(a) for f, a in zip(fields, arrays)} }"
        )
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    _check(table, kind, where)
    if "embedding" in table.column_names:
        embedding_matrix(table.column("embedding"), where, kind.error)
    merged = {**old_meta, **(metadata or {})}
    return table.replace_schema_metadata({k.encode(): v.encode() for k, v in merged.items()}) if merged else table


def table_bytes(
    kind: TableKind,
    columns: Mapping[str, Any] | Table,
    metadata: Mapping[str, str] | None = None,
    compression: str = "zstd",
    url: str = "(in memory)",
) -> bytes:
    """The Parquet bytes of a checked table of ``kind`` (``url`` only names it in errors)."""
    table = _arrow_table(kind, columns, metadata, f"{kind.name} {url}")
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression, row_group_size=1024)  # pieces a stream reads alone
    return sink.getvalue()


def write_typed(
    kind: TableKind,
    url: str,
    columns: Mapping[str, Any] | Table,
    storage: StorageConfig | None = None,
    metadata: Mapping[str, str] | None = None,
    compression: str = "zstd",
) -> bytes:
    """Check and write one table of ``kind`` atomically (nothing at ``url`` when a check fails);
    returns the bytes written (for hashing)."""
    data = table_bytes(kind, columns, metadata, compression, url)
    write_bytes_atomic(url, data, storage)
    return data
