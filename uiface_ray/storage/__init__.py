"""The storage layer: the only place that imports fsspec, s3fs and pyarrow."""

from uiface_ray.storage.fs import (
    FileInfo,
    StorageError,
    absolute_url,
    exists,
    file_info,
    find_files,
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
from uiface_ray._lazy import lazy_exports

# pyarrow only when a table is read or written
__getattr__ = lazy_exports(__name__, {"read_table": "parquet", "write_table": "parquet"})

__all__ = [
    "FileInfo",
    "StorageError",
    "absolute_url",
    "exists",
    "file_info",
    "find_files",
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
