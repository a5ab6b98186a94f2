"""insightface RecordIO export: per-shard parts stitched into ``train.rec`` + ``train.idx`` + ``property``.

Workers write each shard's image records as a part (:mod:`uiface_ray.export.shard`) with their
final class labels and record ids; :func:`stitch_recordio` then writes, streaming:

* ``train.rec``: record 0 (insightface's header: ``(first identity record, end)``), every part's
  bytes in shard order (copied ``chunk_bytes`` at a time), then one record per identity with its
  image range ``(first image record, end)``: byte for byte what
  :func:`uiface_ray.data.recordio.write_recordio` writes for the same images in one stream;
* ``train.idx``: ``0<TAB>0``, each part's index lines shifted by where the part landed, then the
  identity records' lines;
* ``property``: ``<classes>,<height>,<width>``.

Memory: one chunk, one part's index, and one entry per shard and per identity.  A class label is
the rank of its identity in identity-major order (0..K-1), as insightface expects.
"""

from __future__ import annotations

from dataclasses import dataclass

from uiface_ray import storage
from uiface_ray.data.recordio import header_record, identity_record
from uiface_ray.export.shard import ShardDone, part_urls
from uiface_ray.storage.fs import is_remote
from uiface_ray.synth.dataset import DatasetError

__all__ = ["RecordIOExport", "stitch_recordio"]


@dataclass
class RecordIOExport:
    rec_url: str
    idx_url: str
    property_url: str
    num_images: int
    num_classes: int
    labels: dict[int, int]  # identity id -> class label


def _open_for_write(url: str, storage_cfg):
    """A file to stream into (on S3 a multipart upload, visible once closed)."""
    if not is_remote(url):
        fs, path = storage.url_to_fs(url, storage_cfg)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    return storage.open_url(url, "wb", storage_cfg)


def _labels(parts: list[ShardDone]) -> dict[int, int]:
    labels: dict[int, int] = {}
    for part in parts:
        if part.first_label != len(labels):
            raise AssertionError(f"internal: {part.name} starts at label {part.first_label}, expected {len(labels)}")
        for identity in part.identity_ids:
            if identity in labels:
                raise DatasetError(
                    f"{part.name}: identity {identity} also appears in an earlier shard; each "
                    "identity's images must be in one shard"
                )
            labels[identity] = len(labels)
    return labels


def _write_rec(
    rec_url: str, parts: list[ShardDone], staging: str, num_images: int, num_classes: int, storage_cfg, chunk_bytes: int
) -> list[int]:
    """Write ``train.rec``; returns each part's byte offset in it, then the identity records' offsets."""
    head = header_record(num_images + 1, num_images + 1 + num_classes)
    bases, pos = [], len(head)
    with _open_for_write(rec_url, storage_cfg) as out:
        out.write(head)
        for part in parts:
            bases.append(pos)
            copied = 0
            with storage.open_url(part_urls(staging, part.name)[0], "rb", storage_cfg) as src:
                while chunk := src.read(chunk_bytes):
                    out.write(chunk)
                    copied += len(chunk)
            if copied != part.part_size:
                raise storage.StorageError(
                    f"{part_urls(staging, part.name)[0]}: read {copied} bytes, its record says {part.part_size}"
                )
            pos += copied
        record = num_images + 1
        for part in parts:
            start = part.first_record
            for count in part.counts:
                bases.append(pos)
                blob = identity_record(start, start + count, record_id=record)
                out.write(blob)
                pos += len(blob)
                start += count
                record += 1
    return bases


def _write_idx(
    idx_url: str, parts: list[ShardDone], staging: str, bases: list[int], num_images: int, storage_cfg
) -> None:
    with _open_for_write(idx_url, storage_cfg) as out:
        out.write(b"0\t0\n")
        for part, base in zip(parts, bases):
            text = storage.read_bytes(part_urls(staging, part.name)[1], storage_cfg).decode("ascii")
            lines = []
            for line in text.splitlines():
                index, offset = line.split("\t")
                lines.append(f"{index}\t{int(offset) + base}\n")
            out.write("".join(lines).encode("ascii"))
        out.write(
            "".join(f"{num_images + 1 + k}\t{off}\n" for k, off in enumerate(bases[len(parts) :])).encode("ascii")
        )


def stitch_recordio(
    parts: list[ShardDone], staging: str, out_url: str, storage_cfg=None, chunk_bytes: int = 8 << 20
) -> RecordIOExport:
    """Stitch the parts (in shard order) into ``train.rec``/``train.idx``/``property`` under ``out_url``."""
    labels = _labels(parts)
    num_images = sum(p.rows for p in parts)
    rec_url, idx_url = storage.join(out_url, "train.rec"), storage.join(out_url, "train.idx")
    try:
        bases = _write_rec(rec_url, parts, staging, num_images, len(labels), storage_cfg, chunk_bytes)
        _write_idx(idx_url, parts, staging, bases, num_images, storage_cfg)
    except storage.StorageError:
        raise
    except OSError as exc:  # a streamed write: a full disk, a lost connection
        raise storage.wrap_error(storage.join(out_url, "train.rec/.idx"), "write", exc) from exc
    first = next((p for p in parts if p.rows), None)
    height, width = (first.height, first.width) if first else (0, 0)
    prop_url = storage.join(out_url, "property")
    storage.write_bytes_atomic(prop_url, f"{len(labels)},{height},{width}\n".encode(), storage_cfg)
    return RecordIOExport(rec_url, idx_url, prop_url, num_images, len(labels), labels)
