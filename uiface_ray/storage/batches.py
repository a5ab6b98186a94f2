"""Typed tables read and written in blocks of rows, so that a table of millions of rows is never
in memory at once (``jobs/embed.py`` on a face table of 10^6 rows held 0.85-2.5 GB before).

- :func:`open_typed` checks a file from its footer (columns, their types, rows) and
  :meth:`TableReader.blocks` yields checked :class:`~uiface_ray.storage.tables.Table` blocks of
  exactly ``rows`` rows (the last may be shorter), read from the file row group by row group;
- :class:`TableWriter` checks each block as ``write_typed`` checks a whole table and writes it
  into row groups of a temporary file; :meth:`TableWriter.commit` puts the file in place at once
  (local: a temporary sibling renamed; remote: one upload of the finished file), so readers see the
  old file or the whole new one, and a failure before the commit leaves nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from uiface_ray.config import StorageConfig
from uiface_ray.storage.fs import is_remote, open_url, shared_mode, url_to_fs, write_bytes_atomic
from uiface_ray.storage.tables import (
    Table,
    TableError,
    TableKind,
    _arrow_table,
    _check_nulls,
    _check_types,
    _missing,
    _one_line,
)

__all__ = ["TableReader", "TableWriter", "open_parquet", "open_typed"]


class TableReader:
    """One checked Parquet file of a kind, open for reading in blocks (a context manager)."""

    def __init__(self, kind: TableKind, url: str, handle: Any, parquet: pq.ParquetFile, columns: list[str] | None):
        self.kind, self.url, self._handle, self._parquet, self._columns = kind, url, handle, parquet, columns
        self.num_rows = parquet.metadata.num_rows
        raw = parquet.schema_arrow.metadata or {}
        self.metadata = {k.decode(): v.decode() for k, v in raw.items()}

    @property
    def where(self) -> str:
        return f"{self.kind.name} {self.url}"

    def blocks(self, rows: int) -> Iterator[Table]:
        """Consecutive checked blocks of ``rows`` rows in file order (the last may be shorter)."""
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        buffered: pa.Table | None = None
        offset = 0
        try:
            for batch in self._parquet.iter_batches(batch_size=rows, columns=self._columns):
                part = pa.Table.from_batches([batch])
                buffered = part if buffered is None else pa.concat_tables([buffered, part])
                while buffered.num_rows >= rows:
                    yield self._block(buffered.slice(0, rows), offset)
                    offset += rows
                    buffered = buffered.slice(rows)
        except TableError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise self.kind.error(f"{self.where} is not a readable Parquet file ({_one_line(exc)})") from exc
        if buffered is not None and buffered.num_rows:
            yield self._block(buffered, offset)

    def _block(self, data: pa.Table, offset: int) -> Table:
        _check_nulls(data, self.kind, self.where, offset)
        return Table(self.url, self.kind, data.combine_chunks())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "TableReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_parquet(kind: TableKind, url: str, storage: StorageConfig | None = None):
    """``(open file, pq.ParquetFile)`` of one Parquet file of ``kind``; a missing, unreadable or
    damaged file is ``kind``'s error naming it (the file is closed then)."""
    try:
        handle = open_url(url, "rb", storage)
    except FileNotFoundError as exc:
        raise kind.error(f"{kind.name} not found: {url}") from exc
    except Exception as exc:  # noqa: BLE001 - the store's errors, named with the URL
        raise kind.error(f"{kind.name} {url} cannot be read: {_one_line(exc)}") from exc
    try:
        return handle, pq.ParquetFile(handle)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        handle.close()
        raise kind.error(f"{kind.name} {url} is not a readable Parquet file ({_one_line(exc)})") from exc


def open_typed(
    kind: TableKind,
    url: str,
    storage: StorageConfig | None = None,
    required: Sequence[str] = (),
    columns: Sequence[str] | None = None,
) -> TableReader:
    """Open one Parquet file of ``kind`` and check what its footer tells (the ``required`` columns
    besides the kind's own, their types, rows); the rows' own checks come with each block."""
    where = f"{kind.name} {url}"
    handle, parquet = open_parquet(kind, url, storage)
    try:
        names = parquet.schema_arrow.names
        need = list(dict.fromkeys([*kind.required, *required]))
        missing = [c for c in need if c not in names]
        if missing:
            raise kind.error(_missing(kind, url, missing, names))
        wanted = None if columns is None else [c for c in dict.fromkeys([*need, *columns]) if c in names]
        schema = parquet.schema_arrow
        if wanted is not None:
            schema = pa.schema([schema.field(c) for c in wanted])
        if parquet.metadata.num_rows == 0 and not kind.allow_empty:
            raise kind.error(f"{where} is empty: it has no rows")
        _check_types(schema, kind, where, parquet.metadata.num_rows)
        return TableReader(kind, url, handle, parquet, wanted)
    except BaseException as exc:
        handle.close()
        if isinstance(exc, TableError) or not isinstance(exc, Exception):
            raise
        raise kind.error(f"{where} is not a readable Parquet file ({_one_line(exc)})") from exc


class TableWriter:
    """Write one table of ``kind`` block by block into row groups of ``row_group_rows`` rows; nothing
    is at ``url`` until :meth:`commit` (a ``with`` block commits when it ends without an error)."""

    def __init__(
        self,
        kind: TableKind,
        url: str,
        storage: StorageConfig | None = None,
        metadata: Mapping[str, str] | None = None,
        compression: str = "zstd",
        row_group_rows: int = 65536,
    ):
        self.kind, self.url, self.storage = kind, url, storage
        self.metadata = {k.encode(): v.encode() for k, v in (metadata or {}).items()}
        self.compression, self.row_group_rows = compression, row_group_rows
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._writer: pq.ParquetWriter | None = None
        if is_remote(url):  # built locally, uploaded in one write by commit()
            fd, self._tmp = tempfile.mkstemp(prefix="uiface-", suffix=".parquet")
        else:  # a sibling, renamed into place by commit()
            directory = os.path.dirname(url_to_fs(url, storage)[1])
            os.makedirs(directory, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
            shared_mode(fd)  # mkstemp's 0600 would hide a shared table
        self._file = os.fdopen(fd, "wb")

    def write(self, columns: Mapping[str, Any] | Table) -> None:
        """Check one block (types, nulls, embeddings) and queue it for the next row group."""
        table = _arrow_table(self.kind, columns, None, f"{self.kind.name} {self.url}")
        self._pending.append(table.replace_schema_metadata(self.metadata))
        self.rows += table.num_rows
        if sum(t.num_rows for t in self._pending) >= self.row_group_rows:
            self._flush(whole_groups_only=True)

    def _flush(self, whole_groups_only: bool = False) -> None:
        """Write the queued rows as row groups of ``row_group_rows`` (keeping a partial one queued)."""
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        cut = table.num_rows - table.num_rows % self.row_group_rows if whole_groups_only else table.num_rows
        self._pending = [table.slice(cut)] if cut < table.num_rows else []
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._file, table.schema, compression=self.compression)
        self._writer.write_table(table.slice(0, cut), row_group_size=self.row_group_rows)

    def commit(self) -> None:
        """Finish the file and put it at ``url`` in one step."""
        try:
            self._flush()
            if self._writer is None:
                raise self.kind.error(f"{self.kind.name} {self.url}: refusing to write a table of no blocks")
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if is_remote(self.url):
                write_bytes_atomic(self.url, Path(self._tmp).read_bytes(), self.storage)
            else:
                os.replace(self._tmp, url_to_fs(self.url, self.storage)[1])
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop what was written (nothing reaches ``url``)."""
        if not self._file.closed:
            self._file.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
