"""The storage layer: the only place that imports fsspec, s3fs and pyarrow.

``fs``: URLs and bytes; ``parquet``: untyped Parquet files; ``tables``: the face table, identity
table and shards with their schema and checks."""

from uiface_ray.storage.fs import (
    FileInfo,
    StorageError,
    StorageFullError,
    StorageNotFoundError,
    absolute_url,
    canonical_url,
    copy,
    exists,
    file_info,
    find_files,
    is_link,
    join,
    list_file_info,
    list_files,
    list_names,
    local_copy,
    move,
    open_url,
    read_bytes,
    read_many,
    remove,
    resolve_storage,
    url_to_fs,
    wrap_error,
    write_bytes_atomic,
)
from uiface_ray.storage.resolve import resolve_urls
from uiface_ray._lazy import lazy_exports

# pyarrow only when a table is read or written
__getattr__ = lazy_exports(
    __name__,
    {
        "read_table": "parquet",
        "write_table": "parquet",
        "FaceTableError": "tables",
        "IdentityTableError": "tables",
        "ShardError": "tables",
        "TableError": "tables",
        "read_face_table": "tables",
        "read_typed": "tables",
        "write_typed": "tables",
    },
)

__all__ = [
    "FaceTableError",
    "FileInfo",
    "IdentityTableError",
    "ShardError",
    "StorageError",
    "StorageFullError",
    "StorageNotFoundError",
    "TableError",
    "absolute_url",
    "canonical_url",
    "copy",
    "exists",
    "file_info",
    "find_files",
    "is_link",
    "join",
    "list_file_info",
    "list_files",
    "list_names",
    "local_copy",
    "move",
    "open_url",
    "read_bytes",
    "read_face_table",
    "read_many",
    "read_table",
    "read_typed",
    "remove",
    "resolve_storage",
    "resolve_urls",
    "url_to_fs",
    "wrap_error",
    "write_bytes_atomic",
    "write_table",
    "write_typed",
]
