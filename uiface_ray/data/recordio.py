"""insightface / MXNet RecordIO (``train.rec`` + ``train.idx``), read and written without mxnet.

Layout (dmlc-core ``recordio``; all integers little-endian):

* A record is one or more chunks.  Each chunk is ``uint32 magic = 0xced7230a``, ``uint32 lrecord``
  (upper 3 bits: continuation flag ``cflag``, lower 29 bits: chunk length), the chunk bytes, and
  zero padding to a multiple of 4 bytes.  ``cflag`` 0 is a whole record; 1, 2, 3 are the first,
  middle and last chunk of a record whose payload contained the magic number at a 4-byte-aligned
  position: the writer cut the payload there and dropped those 4 bytes, the reader puts them back.
* A record's payload starts with the ``IRHeader`` struct ``<IfQQ`` (``flag``, ``label``, ``id``,
  ``id2``; 24 bytes).  ``flag > 0`` means ``flag`` float32 labels follow the header (and ``label``
  is unused); the image bytes (JPEG/PNG) come after.
* ``train.idx`` is text, one ``index<TAB>byte offset of the record`` line per record.
* insightface convention: record 0 is a header with ``flag > 0`` and labels ``(a, b)``: images are
  records ``1 .. a-1``; records ``a .. b-1`` are one per identity, each with labels
  ``(first image, end image)`` (end exclusive) and no image bytes.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from uiface_ray.errors import InputError
from uiface_ray.config import StorageConfig
from uiface_ray.storage import exists, open_url, read_bytes, remove, write_bytes_atomic
from uiface_ray.storage.fs import is_remote, shared_mode, url_to_fs

__all__ = [
    "RECORDIO_MAGIC",
    "IRHeader",
    "RecordIOError",
    "RecordIOReader",
    "RecordIOSummary",
    "RecordItem",
    "encode_record",
    "header_record",
    "header_record_size",
    "identity_record",
    "idx_path_for",
    "pack_record",
    "unpack_record",
    "write_recordio",
]

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_CHUNK_HEAD = struct.Struct("<II")
_IR_HEADER = struct.Struct("<IfQQ")
_LENGTH_MASK = (1 << 29) - 1


class RecordIOError(InputError, ValueError):
    """A .rec/.idx file is malformed; the message names the file and the byte offset."""


@dataclass(frozen=True)
class IRHeader:
    flag: int
    label: float
    id: int
    id2: int
    labels: tuple[float, ...] = ()  # the flag > 0 float labels


class RecordItem(NamedTuple):
    """One face of a RecordIO file: its class label and encoded image bytes."""

    label: float
    image: bytes


def idx_path_for(rec_path: str) -> str:
    return rec_path[: -len(".rec")] + ".idx" if rec_path.endswith(".rec") else rec_path + ".idx"


# --------------------------------------------------------------------------------------------
# Payloads


def pack_record(label: float | Iterable[float], payload: bytes = b"", record_id: int = 0, id2: int = 0) -> bytes:
    """IRHeader + payload; a sequence of labels is stored after the header with ``flag = len``."""
    if isinstance(label, (int, float, np.integer, np.floating)):
        return _IR_HEADER.pack(0, float(label), record_id, id2) + payload
    labels = np.asarray(list(label), dtype="<f4")
    return _IR_HEADER.pack(len(labels), 0.0, record_id, id2) + labels.tobytes() + payload


def unpack_record(data: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    if len(data) < _IR_HEADER.size:
        raise RecordIOError(f"{where}: {len(data)} bytes is shorter than the 24-byte IRHeader")
    flag, label, rid, id2 = _IR_HEADER.unpack_from(data)
    body = data[_IR_HEADER.size :]
    labels: tuple[float, ...] = ()
    if flag > 0:
        if len(body) < 4 * flag:
            raise RecordIOError(f"{where}: header says {flag} labels but only {len(body)} bytes follow")
        labels = tuple(float(v) for v in np.frombuffer(body[: 4 * flag], dtype="<f4"))
        body = body[4 * flag :]
    return IRHeader(flag, label, rid, id2, labels), body


# --------------------------------------------------------------------------------------------
# Chunks


def _encode_chunks(payload: bytes) -> bytes:
    """One record as chunks, splitting where the magic number sits at a 4-byte-aligned offset."""
    parts = []
    start = 0
    i = payload.find(_MAGIC_BYTES)
    while i >= 0:
        if i % 4 == 0:
            parts.append(payload[start:i])
            start = i + 4
            i = payload.find(_MAGIC_BYTES, start)
        else:
            i = payload.find(_MAGIC_BYTES, i + 1)
    parts.append(payload[start:])
    out = bytearray()
    for n, part in enumerate(parts):
        if len(parts) == 1:
            cflag = 0
        else:
            cflag = 1 if n == 0 else (3 if n == len(parts) - 1 else 2)
        out += _CHUNK_HEAD.pack(RECORDIO_MAGIC, (cflag << 29) | len(part)) + part
    out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _read_record_at(fh, offset: int, source: str) -> tuple[bytes, int]:
    """The payload of the record starting at ``offset``, and the offset after it."""
    fh.seek(offset)
    pos = offset
    out = bytearray()
    while True:
        head = fh.read(_CHUNK_HEAD.size)
        if len(head) != _CHUNK_HEAD.size:
            raise RecordIOError(f"{source}: truncated record header at offset {pos}")
        magic, lrecord = _CHUNK_HEAD.unpack(head)
        if magic != RECORDIO_MAGIC:
            raise RecordIOError(
                f"{source}: bad magic number 0x{magic:08x} at offset {pos} (expected 0x{RECORDIO_MAGIC:08x}); "
                "not a RecordIO file, or the .idx offsets do not belong to it"
            )
        cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
        padded = length + (-length % 4)
        body = fh.read(padded)
        if len(body) != padded:
            raise RecordIOError(f"{source}: record at offset {pos} is truncated ({len(body)} of {padded} bytes)")
        out += body[:length]
        pos += _CHUNK_HEAD.size + padded
        if cflag in (0, 3):
            return bytes(out), pos
        out += _MAGIC_BYTES


# --------------------------------------------------------------------------------------------
# Reader


class RecordIOReader:
    """Random access to an indexed RecordIO file: ``len(r)``, ``r[i]`` and iteration give
    :class:`RecordItem` ``(label, image bytes)`` for the image records, in index order.

    With an insightface header (record 0, ``flag > 0``) the images are records ``1 .. a-1`` and
    :attr:`identity_ranges` lists each identity's image records; otherwise every record is an image.
    Without a ``.idx`` file the ``.rec`` is scanned once to find the record offsets.
    """

    def __init__(self, rec_path: str, idx_path: str | None = None, storage: StorageConfig | None = None):
        self.rec_path = rec_path
        self.idx_path = idx_path or idx_path_for(rec_path)
        self.storage = storage
        if not exists(rec_path, storage):
            raise RecordIOError(f"RecordIO file not found: {rec_path}")
        self._fh = open_url(rec_path, "rb", storage)
        try:
            self._load_index()
        except BaseException:
            self._fh.close()
            raise

    def _load_index(self) -> None:
        if exists(self.idx_path, self.storage):
            self._offsets = self._read_idx()
            self._check_covers_rec()
        else:
            self._offsets = self._scan()
        self.header: IRHeader | None = None
        self.identity_ranges: list[tuple[int, int]] = []
        self._image_keys = sorted(self._offsets)
        if 0 in self._offsets:
            head, _ = self.read_record(0)
            if head.flag > 0 and len(head.labels) >= 2:
                self.header = head
                first_identity, end_identity = int(head.labels[0]), int(head.labels[1])
                self._image_keys = list(range(1, first_identity))
                self.identity_ranges = [
                    (int(h.labels[0]), int(h.labels[1]))
                    for h in (self.read_record(k)[0] for k in range(first_identity, end_identity))
                ]

    def _read_idx(self) -> dict[int, int]:
        offsets = {}
        text = read_bytes(self.idx_path, self.storage).decode("ascii", errors="replace")
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            try:
                offsets[int(fields[0])] = int(fields[1])
            except (IndexError, ValueError):
                raise RecordIOError(f"{self.idx_path} line {n}: expected 'index<TAB>offset', got {line!r}") from None
        return offsets

    def _check_covers_rec(self) -> None:
        """The last record the .idx names must end where the .rec ends: a truncated or stale .idx
        would otherwise drop records without a word."""
        self._fh.seek(0, os.SEEK_END)
        size = self._fh.tell()
        if not self._offsets:
            raise RecordIOError(f"{self.idx_path} lists no records (empty or truncated)")
        _, end = _read_record_at(self._fh, max(self._offsets.values()), self.rec_path)
        if end != size:
            raise RecordIOError(
                f"{self.idx_path} indexes {self.rec_path} only up to byte {end} of {size}: the .idx "
                "is truncated or stale (delete it to index the .rec by scanning it)"
            )

    def _scan(self) -> dict[int, int]:
        self._fh.seek(0, os.SEEK_END)
        size = self._fh.tell()
        offsets, pos, n = {}, 0, 0
        while pos < size:
            offsets[n] = pos
            _, pos = _read_record_at(self._fh, pos, self.rec_path)
            n += 1
        return offsets

    def read_record(self, index: int) -> tuple[IRHeader, bytes]:
        """The header and payload of record ``index`` (as numbered in the .idx file)."""
        if index not in self._offsets:
            raise RecordIOError(f"{self.idx_path}: no record with index {index}")
        offset = self._offsets[index]
        data, _ = _read_record_at(self._fh, offset, self.rec_path)
        return unpack_record(data, f"{self.rec_path} record {index} at offset {offset}")

    def record_index(self, i: int) -> int:
        """The RecordIO index of the ``i``-th image."""
        return self._image_keys[i]

    def __len__(self) -> int:
        return len(self._image_keys)

    def __getitem__(self, i: int) -> RecordItem:
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} out of range for {self.rec_path} ({len(self)} images)")
        head, image = self.read_record(self._image_keys[i])
        label = head.labels[0] if head.flag > 0 else head.label
        return RecordItem(float(label), image)

    def __iter__(self) -> Iterator[RecordItem]:
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "RecordIOReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Writer


@dataclass(frozen=True)
class RecordIOSummary:
    rec_path: str
    idx_path: str
    num_images: int
    num_identities: int


class _LabelRuns:
    """Checks that each label's images are one contiguous run and records the runs."""

    def __init__(self, rec_path: str):
        self.rec_path = rec_path
        self.runs: dict[int, tuple[int, int]] = {}
        self.current: int | None = None

    def add(self, label: float, index: int) -> None:
        key = int(label)
        if key != label or key < 0:
            raise RecordIOError(f"{self.rec_path}: image {index} has label {label!r}; expected an integer >= 0")
        if key == self.current:
            self.runs[key] = (self.runs[key][0], index + 1)
            return
        if key in self.runs:
            raise RecordIOError(
                f"{self.rec_path}: image {index} has label {key}, whose images already ended at record "
                f"{self.runs[key][1] - 1}; each identity's images must be consecutive"
            )
        self.runs[key] = (index, index + 1)
        self.current = key


def encode_record(label: float, image: bytes, record_id: int) -> bytes:
    """The bytes of one image record as it sits in a ``.rec`` file (chunks and padding included)."""
    return _encode_chunks(pack_record(float(label), bytes(image), record_id=record_id))


def identity_record(first_image: int, end_image: int, record_id: int) -> bytes:
    """The record of one identity: labels ``(first image record, end image record)``, no image."""
    return _encode_chunks(pack_record([float(first_image), float(end_image)], record_id=record_id))


def header_record(first_identity: int, end_identity: int) -> bytes:
    """Record 0: labels ``(first identity record, end identity record)``."""
    return _encode_chunks(pack_record([float(first_identity), float(end_identity)]))


def header_record_size() -> int:
    """The size of record 0 whatever its labels (a fixed-size header: 2 float32 labels)."""
    return len(header_record(0, 0))


def _write_stream(fh, records: Iterable[tuple[float, bytes]], rec_path: str) -> tuple[list[int], int]:
    """Write a placeholder header, the images, the identity records; return (offsets, images)."""
    offsets = [0]
    header_size = header_record_size()
    fh.write(b"\0" * header_size)  # record 0, filled in once the counts are known
    runs = _LabelRuns(rec_path)
    pos = header_size
    n = 0
    for n, (label, image) in enumerate(records, start=1):
        runs.add(label, n)
        blob = encode_record(label, image, n)
        offsets.append(pos)
        fh.write(blob)
        pos += len(blob)
    if sorted(runs.runs) != list(range(len(runs.runs))):
        raise RecordIOError(f"{rec_path}: labels must be 0..K-1 with none missing, got {sorted(runs.runs)[:10]}...")
    first_identity = n + 1
    for k in range(len(runs.runs)):
        blob = identity_record(*runs.runs[k], record_id=first_identity + k)
        offsets.append(pos)
        fh.write(blob)
        pos += len(blob)
    fh.seek(0)
    fh.write(header_record(first_identity, first_identity + len(runs.runs)))
    return offsets, n


def write_recordio(
    rec_path: str, idx_path: str | None, records: Iterable[tuple[float, bytes]], storage: StorageConfig | None = None
) -> RecordIOSummary:
    """Write ``records`` (``(label, image bytes)``, each identity's images consecutive, labels
    0..K-1) as an insightface ``.rec`` + ``.idx`` pair, with the header record 0 and one
    identity-range record per label.

    The .rec is streamed to a local temporary file, then moved (local) or uploaded in one PUT
    (remote); the .idx is written after it.  On any error nothing is left at either path.
    """
    idx_path = idx_path or idx_path_for(rec_path)
    remote = is_remote(rec_path)
    directory = tempfile.gettempdir() if remote else os.path.dirname(url_to_fs(rec_path)[1])
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".rec.part", dir=directory)
    try:
        shared_mode(fd)
        with os.fdopen(fd, "wb") as fh:
            offsets, num_images = _write_stream(fh, records, rec_path)
            fh.flush()
            os.fsync(fh.fileno())
        idx_text = "".join(f"{i}\t{off}\n" for i, off in enumerate(offsets)).encode("ascii")
        if remote:
            with open(tmp, "rb") as fh:
                write_bytes_atomic(rec_path, fh.read(), storage)
        else:
            os.replace(tmp, url_to_fs(rec_path)[1])
        try:
            write_bytes_atomic(idx_path, idx_text, storage)
        except BaseException:
            remove(rec_path, storage)  # no .rec without its .idx
            raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return RecordIOSummary(rec_path, idx_path, num_images, len(offsets) - 1 - num_images)
