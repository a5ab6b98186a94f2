"""Storage round trips on a temporary folder, memory:// and the loopback S3 server."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from uiface_ray.config import StorageConfig
from uiface_ray.storage import (
    StorageError,
    exists,
    list_files,
    read_bytes,
    read_table,
    remove,
    url_to_fs,
    write_bytes_atomic,
    write_table,
)
from uiface_ray.storage.fs import check_writable, materialize_dir, upload_dir


def _roundtrip(base: str) -> None:
    write_bytes_atomic(f"{base}/a/one.bin", b"hello")
    assert read_bytes(f"{base}/a/one.bin") == b"hello"
    write_bytes_atomic(f"{base}/a/one.bin", b"again")  # overwrite is whole
    assert read_bytes(f"{base}/a/one.bin") == b"again"
    table = pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    write_table(f"{base}/a/t.parquet", table, metadata={"k": "v"})
    back = read_table(f"{base}/a/t.parquet")
    assert back.to_pydict() == table.to_pydict()
    assert back.schema.metadata[b"k"] == b"v"
    assert list_files(f"{base}/a", ".parquet") == [f"{base}/a/t.parquet"]
    assert exists(f"{base}/a/t.parquet")
    remove(f"{base}/a/t.parquet")
    assert not exists(f"{base}/a/t.parquet")
    with pytest.raises(StorageError, match="not found"):
        read_bytes(f"{base}/a/missing.bin")


def test_local_path_roundtrip(tmp_path):
    _roundtrip(str(tmp_path))
    _roundtrip(f"file://{tmp_path}/f")


def test_memory_roundtrip():
    _roundtrip("memory://uiface-test")


def test_local_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    write_bytes_atomic(str(target), b"old")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(StorageError, match="disk full"):
        write_bytes_atomic(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_unsupported_scheme():
    with pytest.raises(StorageError, match="gs://"):
        url_to_fs("gs://bucket/x")


def test_unreadable_parquet_names_url(tmp_path):
    write_bytes_atomic(str(tmp_path / "bad.parquet"), b"not parquet")
    with pytest.raises(StorageError, match="bad.parquet"):
        read_table(str(tmp_path / "bad.parquet"))


def test_s3_roundtrip_env(s3_bucket):
    _roundtrip(f"{s3_bucket}/prefix")


def test_s3_endpoint_from_config(s3_server, s3_bucket, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    storage = StorageConfig(endpoint_url=s3_server, access_key_id="testing", secret_access_key="testing")
    write_bytes_atomic(f"{s3_bucket}/cfg.bin", b"via config", storage)
    assert read_bytes(f"{s3_bucket}/cfg.bin", storage) == b"via config"


def test_s3_dirs(tmp_path, s3_bucket):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    upload_dir(src, f"{s3_bucket}/tree")
    local = materialize_dir(f"{s3_bucket}/tree", cache_dir=str(tmp_path / "dl"))
    assert (local / "a.txt").read_text() == "A" and (local / "sub" / "b.txt").read_text() == "B"
    check_writable(f"{s3_bucket}/tree")
    with pytest.raises(StorageError):
        check_writable("s3://no-such-bucket-here/x")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_missing_file_is_a_typed_not_found_error(where, tmp_path, request):
    from uiface_ray.storage import StorageNotFoundError, file_info

    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    for read in (read_bytes, file_info):
        with pytest.raises(StorageNotFoundError, match=f"^not found: {base}/nope.bin$") as caught:
            read(f"{base}/nope.bin")
        assert isinstance(caught.value, StorageError) and isinstance(caught.value, FileNotFoundError)


def test_s3_listings_see_what_another_writer_did(s3_server, s3_bucket):
    """Every listing, exists and file_info asks the store: nothing is served from an earlier answer."""
    import boto3

    from uiface_ray.storage import file_info, find_files, list_file_info

    other = boto3.client("s3", endpoint_url=s3_server)  # a writer that is not this process's filesystem
    bucket, folder = s3_bucket.removeprefix("s3://"), f"{s3_bucket}/d"
    write_bytes_atomic(f"{folder}/a.bin", b"a")
    assert list_files(folder) == [f"{folder}/a.bin"] and find_files(folder) == ["a.bin"]
    assert not exists(f"{folder}/b.bin") and file_info(f"{folder}/a.bin").size == 1
    other.put_object(Bucket=bucket, Key="d/b.bin", Body=b"bb")
    other.put_object(Bucket=bucket, Key="d/a.bin", Body=b"aaa")
    assert list_files(folder) == [f"{folder}/a.bin", f"{folder}/b.bin"] and find_files(folder) == ["a.bin", "b.bin"]
    assert exists(f"{folder}/b.bin") and file_info(f"{folder}/a.bin").size == 3
    assert {name: info.size for name, info in list_file_info(folder).items()} == {"a.bin": 3, "b.bin": 2}
    other.delete_object(Bucket=bucket, Key="d/b.bin")
    assert not exists(f"{folder}/b.bin") and list_files(folder) == [f"{folder}/a.bin"]


def test_written_files_follow_the_umask(tmp_path):
    import os

    from uiface_ray.data.recordio import write_recordio

    old = os.umask(0o022)
    try:
        write_bytes_atomic(str(tmp_path / "a" / "x.bin"), b"data")
        write_recordio(str(tmp_path / "r" / "train.rec"), None, [(0.0, b"\xff\xd8img")])
    finally:
        os.umask(old)
    for path in (tmp_path / "a" / "x.bin", tmp_path / "r" / "train.rec", tmp_path / "r" / "train.idx"):
        assert (path.stat().st_mode & 0o777) == 0o644, (path, oct(path.stat().st_mode))
