"""The storage layer: the only place that imports fsspec, s3fs and pyarrow."""

from uiface_ray.storage.fs import (
    StorageError,
    exists,
    join,
    list_files,
    open_url,
    read_bytes,
    remove,
    url_to_fs,
    write_bytes_atomic,
)
from uiface_ray.storage.parquet import read_table, write_table

__all__ = [
    "StorageError",
    "exists",
    "join",
    "list_files",
    "open_url",
    "read_bytes",
    "read_table",
    "remove",
    "url_to_fs",
    "write_bytes_atomic",
    "write_table",
]
