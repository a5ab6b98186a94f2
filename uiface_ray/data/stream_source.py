"""A :class:`~uiface_ray.data.stream.StreamSource` from Parquet files: the driver's metadata pass.

Reads every file's footer and one small key column (``label`` of a face table, ``identity_id`` of a
synthetic dataset's shards), never the images: the pieces (``piece_rows`` rows of a row group at
most) and the keys each holds.  A file that cannot be read is a
:class:`~uiface_ray.storage.row_groups.RowGroupError` naming it.
"""

from __future__ import annotations

import numpy as np

from uiface_ray.config import StorageConfig
from uiface_ray.data.stream import Piece, StreamSource
from uiface_ray.storage.fs import list_files
from uiface_ray.storage.row_groups import RowGroupError, read_key_column

__all__ = ["open_source", "parquet_files"]


def parquet_files(url: str, st: StorageConfig | None = None) -> list[str]:
    """``url`` itself (a .parquet file) or the .parquet files of the folder, sorted."""
    if url.endswith(".parquet"):
        return [url]
    files = sorted(list_files(url, ".parquet", st))
    if not files:
        raise RowGroupError(f"{url}: no manifest.json and no .parquet face table found")
    return files


def _pieces(file: int, row_group: int, keys: np.ndarray, piece_rows: int) -> list[Piece]:
    out = []
    for start in range(0, len(keys), piece_rows):
        stop = min(start + piece_rows, len(keys))
        uniq, counts = np.unique(keys[start:stop], return_counts=True)
        out.append(Piece(file, row_group, start, stop, uniq, counts.astype(np.int64)))
    return out


def open_source(
    url: str,
    files: list[str],
    key_column: str,
    st: StorageConfig | None = None,
    piece_rows: int = 1024,
    image_column: str = "image",
) -> StreamSource:
    """Every piece of ``files`` with its keys; every key kept (see ``StreamSource.restrict``)."""
    pieces: list[Piece] = []
    for i, f in enumerate(files):
        for g, keys in enumerate(read_key_column(f, key_column, st, require=[image_column])):
            pieces += _pieces(i, g, keys, piece_rows)
    classes = np.unique(np.concatenate([p.keys for p in pieces])) if pieces else np.zeros(0, dtype=np.int64)
    return StreamSource(url, tuple(files), tuple(pieces), key_column, classes, image_column)
