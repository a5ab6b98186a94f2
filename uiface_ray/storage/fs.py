"""URLs to filesystems, and writes that are all-or-nothing.

Accepted URLs: plain paths (``out/run1``), ``file:///abs/path``, ``s3://bucket/prefix`` and
``memory://name`` (tests).  S3 endpoint and credentials come from a :class:`StorageConfig` or,
where its fields are empty, from the standard ``AWS_*`` variables (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), or the
instance profile.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import fsspec
from fsspec.spec import AbstractFileSystem

from uiface_ray.errors import InputError
from uiface_ray.config import StorageConfig


class StorageError(InputError, OSError):
    """A storage URL cannot be reached, read or written; the message names the URL."""


class StorageFullError(StorageError):
    """No space left (or the disk quota reached) where a write went; the message names the path."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """The file a read asked for is not there; the message names the URL."""


_FULL = (errno.ENOSPC, errno.EDQUOT)


def _scheme(url: str) -> str:
    if "://" in url:
        return url.split("://", 1)[0].lower()
    return "file"


def is_remote(url: str) -> bool:
    return _scheme(url) not in ("file", "local")


_ENV_FALLBACK = {
    "endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
}


def _from_env(storage: StorageConfig | None, fields) -> StorageConfig:
    """``storage`` with each of ``fields`` that is empty filled from its ``AWS_*`` variables (the one
    reading of the environment's storage settings)."""
    storage = storage or StorageConfig()
    update = {}
    for name in fields:
        if not getattr(storage, name):
            value = next((os.environ[v] for v in _ENV_FALLBACK[name] if os.environ.get(v)), None)
            if value is not None:
                update[name] = value
    return storage.model_copy(update=update) if update else storage


def resolve_storage(storage: StorageConfig | None) -> StorageConfig:
    """The storage settings with every empty field filled from this process's ``AWS_*`` variables.

    Called once at the driver; the result travels to actors and Ray Train workers inside their
    arguments (never through ``runtime_env``, which Ray logs).  Fields still empty after this fall
    back to the worker's own credential chain (instance profile) when used.
    """
    return _from_env(storage, _ENV_FALLBACK)


def s3_options(storage: StorageConfig | None) -> dict:
    """s3fs keyword arguments from a config: its endpoint and region, else this process's ``AWS_*``
    ones; its credentials, else none (boto's own chain finds them).  The listings cache is off: every
    listing, ``exists`` and ``info`` asks the store, so files written by other processes are seen."""
    storage = _from_env(storage, ("endpoint_url", "region"))
    opts: dict = {"client_kwargs": {}, "use_listings_cache": False}
    if storage.endpoint_url:
        opts["client_kwargs"]["endpoint_url"] = storage.endpoint_url
    if storage.region:
        opts["client_kwargs"]["region_name"] = storage.region
    if storage.access_key_id:
        opts["key"] = storage.access_key_id
    if storage.secret_access_key:
        opts["secret"] = storage.secret_access_key
    if storage.session_token:
        opts["token"] = storage.session_token
    return opts


def url_to_fs(url: str, storage: StorageConfig | None = None) -> tuple[AbstractFileSystem, str]:
    """Return ``(filesystem, path within it)`` for a storage URL."""
    if not url:
        raise StorageError("empty storage URL")
    scheme = _scheme(url)
    if scheme in ("file", "local"):
        path = url.split("://", 1)[1] if "://" in url else url
        return fsspec.filesystem("file"), os.path.abspath(os.path.expanduser(path))
    if scheme in ("s3", "s3a"):
        fs = fsspec.filesystem("s3", **s3_options(storage))
        return fs, url.split("://", 1)[1].rstrip("/")
    if scheme == "memory":
        return fsspec.filesystem("memory"), "/" + url.split("://", 1)[1].strip("/")
    raise StorageError(
        f"unsupported storage URL scheme '{scheme}://' in {url!r}: use a path, file://, s3:// or memory://"
    )


def absolute_url(url: str | None) -> str | None:
    """A local path made absolute against this process's working directory; other URLs unchanged.

    Jobs call this at the driver for every path they hand to an actor or a Ray Train worker,
    which run in another working directory."""
    if url is None or url == "" or _scheme(url) not in ("file", "local"):
        return url
    path = url.split("://", 1)[1] if "://" in url else url
    return os.path.abspath(os.path.expanduser(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def shared_mode(fd: int) -> None:
    """Give a file made by ``mkstemp`` (mode 0600) the mode an ordinary write would: 0666 less the umask."""
    os.fchmod(fd, 0o666 & ~_umask())


def join(url: str, *parts: str) -> str:
    out = url.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def _full(exc: BaseException | None) -> bool:
    """True when ``exc`` or an exception it was raised from is a full disk or quota."""
    for _ in range(5):
        if exc is None:
            return False
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def wrap_error(url: str, action: str, exc: Exception) -> StorageError:
    """``exc`` as a :class:`StorageError` naming ``url`` (a :class:`StorageFullError` for a full disk)."""
    if _full(exc):
        return StorageFullError(
            f"no space left on the device (or disk quota exceeded) to {action} {url}: free space there or "
            "choose another output, then rerun the same command to resume"
        )
    return StorageError(f"cannot {action} {url}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _errors(url: str, action: str, not_found: str | None = None) -> Iterator[None]:
    """Raise every error of the block but our own as a :class:`StorageError` naming ``url`` (``cannot
    <action> <url>: ...``, or :class:`StorageFullError`); with ``not_found``, a missing file is a
    :class:`StorageNotFoundError` saying ``not found: <not_found>``."""
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError as exc:
        if not_found is None:
            raise wrap_error(url, action, exc) from exc
        raise StorageNotFoundError(f"not found: {not_found}") from exc
    except Exception as exc:  # noqa: BLE001 - re-raised with the URL named
        raise wrap_error(url, action, exc) from exc


def write_bytes_atomic(url: str, data: bytes, storage: StorageConfig | None = None) -> None:
    """Write ``data`` so that readers see either nothing or the whole file.

    Local: write a temporary sibling, fsync, then ``os.replace``.  S3: one PUT request (S3
    objects appear whole or not at all).  memory://: a single assignment.
    """
    fs, path = url_to_fs(url, storage)
    with _errors(url, "write"):
        if not is_remote(url):
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
            try:
                shared_mode(fd)  # mkstemp's 0600 would hide a shared dataset
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        elif _scheme(url) in ("s3", "s3a"):
            # A single put_object: never a multipart upload, so no partial object is visible.
            fs.call_s3("put_object", Bucket=path.split("/", 1)[0], Key=path.split("/", 1)[1], Body=data)
        else:
            fs.pipe_file(path, data)


def read_bytes(url: str, storage: StorageConfig | None = None) -> bytes:
    fs, path = url_to_fs(url, storage)
    with _errors(url, "read", not_found=url):
        return fs.cat_file(path)


def read_many(urls: list[str], storage: StorageConfig | None = None) -> list[bytes]:
    """The bytes of several files of one store, fetched together (concurrent requests on S3)."""
    if not urls:
        return []
    fs, _ = url_to_fs(urls[0], storage)
    paths = [url_to_fs(u, storage)[1] for u in urls]
    try:
        found = fs.cat(paths, on_error="raise")
    except FileNotFoundError as exc:  # names the one missing, which only the store's error knows
        raise StorageNotFoundError(f"not found: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise wrap_error(urls[0], "read", exc) from exc
    if not isinstance(found, dict):  # one path: fsspec returns its bytes
        found = {paths[0]: found}
    return [found[p] for p in paths]


def exists(url: str, storage: StorageConfig | None = None) -> bool:
    fs, path = url_to_fs(url, storage)
    with _errors(url, "reach"):
        return fs.exists(path)


def _ls(url: str, storage: StorageConfig | None, folder_only: bool) -> list[str]:
    """The names directly under ``url`` (empty when it does not exist); ``folder_only`` refuses a file."""
    fs, path = url_to_fs(url, storage)
    with _errors(url, "list"):
        if not fs.exists(path):
            return []
        if folder_only and not fs.isdir(path):
            raise StorageError(f"{url} is a file, not a folder")
        names = fs.ls(path, detail=False)
    own = path.strip("/")
    return [name.rstrip("/").rsplit("/", 1)[-1] for name in names if name.strip("/") != own]


def list_files(url: str, suffix: str = "", storage: StorageConfig | None = None) -> list[str]:
    """Full URLs of the files directly under ``url`` whose names end with ``suffix``, sorted."""
    names = _ls(url, storage, folder_only=False)
    return sorted(join(url, n) for n in names if n.endswith(suffix) and not n.startswith(".tmp-"))


@dataclass(frozen=True)
class FileInfo:
    """What a listing tells about a file without reading it: its size and a version that changes
    when the file is replaced (the ETag on S3, the modification time locally)."""

    size: int
    version: str | None


def _file_info(entry: dict) -> FileInfo:
    etag = entry.get("ETag") or entry.get("etag")
    if etag:
        return FileInfo(int(entry.get("size") or 0), str(etag).strip('"'))
    mtime = entry.get("mtime") or entry.get("LastModified") or entry.get("created")
    return FileInfo(int(entry.get("size") or 0), None if mtime is None else f"mtime:{mtime}")


def list_file_info(url: str, suffix: str = "", storage: StorageConfig | None = None) -> dict[str, FileInfo]:
    """``{name: FileInfo}`` of the files directly under ``url`` whose names end with ``suffix``,
    from one listing (on S3: one request per 1,000 files, nothing read)."""
    fs, path = url_to_fs(url, storage)
    with _errors(url, "list"):
        if not fs.exists(path):
            return {}
        entries = fs.ls(path, detail=True)
    out = {}
    for entry in entries:
        base = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") != "directory" and base.endswith(suffix) and not base.startswith(".tmp-"):
            out[base] = _file_info(entry)
    return out


def file_info(url: str, storage: StorageConfig | None = None) -> FileInfo:
    """The :class:`FileInfo` of one file (one HEAD request on S3)."""
    fs, path = url_to_fs(url, storage)
    with _errors(url, "stat", not_found=url):
        return _file_info(fs.info(path))


def move(src: str, dst: str, storage: StorageConfig | None = None) -> None:
    """Move a file or folder tree to ``dst`` (a rename locally; :func:`copy` then delete on S3)."""
    fs, src_path = url_to_fs(src, storage)
    _, dst_path = url_to_fs(dst, storage)
    with _errors(src, f"move to {dst}"):
        if not is_remote(src):
            os.makedirs(os.path.dirname(dst_path), exist_ok=True)
            os.replace(src_path, dst_path)
            return
        files = _copy_remote(fs, src_path, dst_path)
        if files:
            fs.rm(files)


def _copy_remote(fs: AbstractFileSystem, src_path: str, dst_path: str) -> list[str]:
    """Server-side copies of every object under ``src_path`` (issued together); the sources."""
    files = fs.find(src_path)
    targets = [dst_path + f[len(src_path.rstrip("/")) :] if f != src_path else dst_path for f in files]
    if files:
        fs.copy(files, targets)
    return files


def copy(src: str, dst: str, storage: StorageConfig | None = None) -> None:
    """Copy a file or folder tree to ``dst``, leaving ``src`` (server-side copies on S3)."""
    fs, src_path = url_to_fs(src, storage)
    _, dst_path = url_to_fs(dst, storage)
    with _errors(src, f"copy to {dst}"):
        if is_remote(src):
            _copy_remote(fs, src_path, dst_path)
            return
        os.makedirs(os.path.dirname(dst_path), exist_ok=True)
        if os.path.isdir(src_path):
            shutil.copytree(src_path, dst_path)
        else:
            shutil.copyfile(src_path, dst_path)


def find_files(url: str, storage: StorageConfig | None = None) -> list[str]:
    """Paths, relative to ``url`` and with ``/`` separators, of every file anywhere under it
    (one listing call on S3), sorted.  Empty when ``url`` does not exist; ``.tmp-`` files skipped."""
    fs, path = url_to_fs(url, storage)
    with _errors(url, "list"):
        if not fs.exists(path) or not fs.isdir(path):
            return []
        found = fs.find(path, withdirs=False)
    base = path.strip("/") + "/"  # memory:// lists with or without the leading slash
    out = []
    for name in found:
        name = name.lstrip("/")
        rel = name[len(base) :] if name.startswith(base) else ""
        if rel and not rel.rsplit("/", 1)[-1].startswith(".tmp-"):
            out.append(rel)
    return sorted(out)


def canonical_url(url: str) -> str:
    """A URL in one spelling per place, to compare two locations: a local path absolute with every
    symbolic link resolved, ``s3a://`` as ``s3://``, no trailing ``/``."""
    scheme = _scheme(url)
    if scheme in ("file", "local"):
        return os.path.realpath(url_to_fs(url)[1])
    rest = url.split("://", 1)[1].strip("/")
    return f"{'s3' if scheme == 's3a' else scheme}://{rest}"


def list_names(url: str, storage: StorageConfig | None = None) -> list[str]:
    """Every entry directly under the folder ``url`` (files and folders, hidden and temporary ones
    too), sorted; empty when ``url`` does not exist.  A file at ``url`` is refused."""
    return sorted(set(_ls(url, storage, folder_only=True)))


def is_link(url: str) -> bool:
    """True when ``url`` is a local symbolic link (object stores have none)."""
    return not is_remote(url) and os.path.islink(url_to_fs(url)[1])


def remove(url: str, storage: StorageConfig | None = None, recursive: bool = False) -> None:
    fs, path = url_to_fs(url, storage)
    with _errors(url, "remove"):
        if not is_remote(url):
            _remove_local(path, recursive)
        elif fs.exists(path):
            fs.rm(path, recursive=recursive)


def _remove_local(path: str, recursive: bool) -> None:
    """Not fsspec's ``rm``, which asks for this process's working directory (``os.getcwd()``): Ray can
    remove a job driver's working directory under it (a second node on the same machine unpacks the
    job's working_dir again into the session folder they share), and the removal then failed with
    FileNotFoundError (issue 34 item 9).  ``path`` is absolute (:func:`url_to_fs`)."""
    if os.path.isdir(path) and not os.path.islink(path):
        if not recursive:
            raise IsADirectoryError(f"{path} is a folder (remove it with recursive=True)")
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def open_url(url: str, mode: str = "rb", storage: StorageConfig | None = None):
    fs, path = url_to_fs(url, storage)
    return fs.open(path, mode)


def check_writable(url: str, storage: StorageConfig | None = None) -> None:
    """Fail early, naming the URL, if nothing can be written under ``url``."""
    probe = join(url, f".probe-{uuid.uuid4().hex}")
    write_bytes_atomic(probe, b"ok", storage)
    remove(probe, storage)


def upload_dir(local_dir: str | Path, url: str, storage: StorageConfig | None = None) -> None:
    """Copy every file of a local folder tree under ``url`` (each file written atomically)."""
    local_dir = Path(local_dir)
    for file in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        write_bytes_atomic(join(url, file.relative_to(local_dir).as_posix()), file.read_bytes(), storage)


def materialize_dir(url: str, storage: StorageConfig | None = None, cache_dir: str | None = None) -> Path:
    """A local folder with the contents of ``url``: the folder itself when local, else a copy."""
    if not is_remote(url):
        path = Path(url_to_fs(url)[1])
        if not path.is_dir():
            raise StorageError(f"not a folder: {url}")
        return path
    target = Path(cache_dir or tempfile.mkdtemp(prefix="uiface-dl-"))
    files = find_files(url, storage)
    if not files:
        raise StorageError(f"nothing found under {url}")
    for rel in files:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(read_bytes(join(url, rel), storage))
    return target


@contextlib.contextmanager
def local_copy(url: str, storage: StorageConfig | None = None) -> Iterator[Path]:
    """A local folder with the contents of ``url`` for the duration of the block: the folder itself
    when local, else a temporary download that is removed when the block ends (or fails)."""
    if not is_remote(url):
        yield materialize_dir(url, storage)
        return
    tmp = tempfile.mkdtemp(prefix="uiface-dl-")
    try:
        yield materialize_dir(url, storage, cache_dir=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
