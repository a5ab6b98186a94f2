"""The storage layer: the only place that imports fsspec, s3fs and pyarrow."""

from uiface_ray.storage.fs import (
    FileInfo,
    StorageError,
    absolute_url,
    exists,
    file_info,
    join,
    list_file_info,
    list_files,
    local_copy,
    move,
    open_url,
    read_bytes,
    read_many,
    remove,
    resolve_storage,
    url_to_fs,
    write_bytes_atomic,
)
from uiface_ray.storage.parquet import read_table, write_table

__all__ = [
    "FileInfo",
    "StorageError",
    "absolute_url",
    "exists",
    "file_info",
    "join",
    "list_file_info",
    "list_files",
    "local_copy",
    "move",
    "open_url",
    "read_bytes",
    "read_many",
    "read_table",
    "remove",
    "resolve_storage",
    "url_to_fs",
    "write_bytes_atomic",
    "write_table",
]
