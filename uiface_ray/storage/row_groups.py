"""Parquet files read a row group at a time: what a streaming loader needs, local or S3.

- :func:`row_group_rows`: the rows of each row group (the footer only);
- :func:`read_key_column`: one small column (a label, an identity id) of every row group, never
  the image column: the driver's metadata pass;
- :func:`read_rows`: given columns of rows ``start:stop`` of one row group.  A row group larger
  than the slice is streamed through a buffered reader (pages, not the whole column chunk, in
  memory), so a piece of a huge row group costs the pages up to its end, never the row group.

Every failure (missing, truncated, not Parquet, a missing column, a file changed since it was
planned) is a :class:`RowGroupError`, an :class:`~uiface_ray.errors.InputError` naming the file.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from uiface_ray.config import StorageConfig
from uiface_ray.errors import InputError
from uiface_ray.storage.fs import url_to_fs

__all__ = ["RowGroupError", "read_key_column", "read_rows", "row_group_rows"]

STREAM_BUFFER = 1 << 20  # bytes a buffered reader holds per column while it streams a large row group


class RowGroupError(InputError, ValueError):
    """A Parquet file a stream reads is missing, truncated, unreadable or not as planned; names the file."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


@contextmanager
def _parquet(url: str, st: StorageConfig | None, buffered: bool = False) -> Iterator[pq.ParquetFile]:
    """The file opened for reading (a local path directly, anything else through fsspec)."""
    try:
        fs, path = url_to_fs(url, st)
        handle = fs.open(path, "rb")
    except InputError:
        raise
    except FileNotFoundError:
        raise RowGroupError(f"{url}: not found (was it moved or removed since the run was planned?)") from None
    except Exception as exc:  # noqa: BLE001 - any storage failure, named
        raise RowGroupError(f"{url}: cannot open: {_one_line(exc)}") from exc
    try:
        try:
            kwargs = {"buffer_size": STREAM_BUFFER, "pre_buffer": False} if buffered else {}
            pf = pq.ParquetFile(handle, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise RowGroupError(f"{url}: not a readable Parquet file (truncated?): {_one_line(exc)}") from exc
        yield pf
    finally:
        handle.close()


def row_group_rows(url: str, st: StorageConfig | None = None) -> list[int]:
    """Rows of each row group of ``url``, from its footer."""
    with _parquet(url, st) as pf:
        meta = pf.metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def _check_columns(url: str, pf: pq.ParquetFile, columns: Sequence[str]) -> None:
    names = pf.schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise RowGroupError(f"{url}: no column {', '.join(missing)} (columns: {', '.join(names)})")


def _values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as numpy: numbers as themselves, binary/strings as an object array."""
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type) or pa.types.is_string(column.type):
        out = np.empty(len(column), dtype=object)
        out[:] = column.to_pylist()
        return out
    return column.to_numpy(zero_copy_only=False)


def read_key_column(
    url: str, column: str, st: StorageConfig | None = None, require: Sequence[str] = ()
) -> list[np.ndarray]:
    """``column`` of each row group of ``url`` (one array per row group): the only column read; the
    columns ``require`` must exist too (checked in the footer)."""
    with _parquet(url, st) as pf:
        _check_columns(url, pf, [column, *require])
        out = []
        for i in range(pf.metadata.num_row_groups):
            try:
                values = pf.read_row_group(i, columns=[column]).column(0)
            except Exception as exc:  # noqa: BLE001
                raise RowGroupError(f"{url}: cannot read column {column} of row group {i}: {_one_line(exc)}") from exc
            if values.null_count:
                raise RowGroupError(f"{url}: column {column} has empty values in row group {i}")
            out.append(_values(values))
        return out


def _slice(url: str, pf: pq.ParquetFile, row_group: int, start: int, stop: int, columns: list[str]) -> pa.Table:
    size = pf.metadata.row_group(row_group).num_rows
    if start == 0 and stop == size:
        return pf.read_row_group(row_group, columns=columns)
    parts, seen = [], 0
    for batch in pf.iter_batches(batch_size=min(stop - start, 1024), row_groups=[row_group], columns=columns):
        lo, hi = max(start - seen, 0), min(stop - seen, batch.num_rows)
        if hi > lo:
            parts.append(batch.slice(lo, hi - lo))
        seen += batch.num_rows
        if seen >= stop:
            break
    return pa.Table.from_batches(parts) if parts else pa.table({c: [] for c in columns})


def read_rows(
    url: str, row_group: int, start: int, stop: int, columns: Sequence[str], st: StorageConfig | None = None
) -> dict[str, np.ndarray]:
    """``columns`` of rows ``start:stop`` of row group ``row_group`` of ``url``, as numpy arrays
    (binary columns as object arrays of bytes)."""
    columns = list(columns)
    with _parquet(url, st, buffered=True) as pf:
        meta = pf.metadata
        if row_group >= meta.num_row_groups or stop > meta.row_group(row_group).num_rows:
            raise RowGroupError(
                f"{url}: has {meta.num_row_groups} row groups, rows {start}:{stop} of row group {row_group} "
                "were planned (the file changed since the run was planned)"
            )
        _check_columns(url, pf, columns)
        try:
            table = _slice(url, pf, row_group, start, stop, columns)
        except Exception as exc:  # noqa: BLE001
            raise RowGroupError(f"{url}: cannot read row group {row_group}: {_one_line(exc)}") from exc
    if table.num_rows != stop - start:
        raise RowGroupError(f"{url}: row group {row_group} gave {table.num_rows} rows, {stop - start} expected")
    out = {}
    for name in columns:
        column = table.column(name)
        if column.null_count:
            raise RowGroupError(f"{url}: column {name} has empty values in row group {row_group}")
        out[name] = _values(column)
    return out
