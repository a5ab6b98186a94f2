"""One shard's export, Ray-free: what a worker does with one shard of a synthetic dataset.

:func:`export_shard` reads the shard once (hash-checked with ``verify_hashes``, as
:meth:`SyntheticDataset.iter_shards` does) and writes, under the export's staging folder:

* ``images/<label>/<image_index>.jpg`` (format ``folders``; names zero-padded, see
  :mod:`uiface_ray.export.folders`);
* ``parts/shard-NNNNN.rec`` and ``parts/shard-NNNNN.idx`` (format ``recordio``): the shard's image
  records exactly as they sit in the final ``train.rec`` (global class labels and record ids,
  known before the part is written: see :func:`uiface_ray.export.plan.plan_tasks`), and one
  ``record index<TAB>offset within the part`` line per image;
* ``done/shard-NNNNN.json`` last: the shard's :class:`ShardDone` record, the commit marker a
  resumed export trusts (with the part sizes it checks against one listing).

Every file is written whole (``write_bytes_atomic``, retried as a write); rerunning a shard
rewrites the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from uiface_ray import jsonfile, storage
from uiface_ray.data.recordio import encode_record
from uiface_ray.export.card import summarize_shard
from uiface_ray.export.folders import as_jpeg, folder_name, image_name
from uiface_ray.synth.dataset import DatasetError, SyntheticDataset
from uiface_ray.synth.manifest import Manifest, ShardRecord
from uiface_ray.synth.retry import write_with_retries
from uiface_ray.synth.shard import ShardRows, decode_image

__all__ = ["ShardDone", "ShardTask", "done_url", "export_shard", "part_urls"]


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs for one shard; every URL already resolved at the driver."""

    dataset: str
    record: ShardRecord  # the manifest's record: name, rows, SHA-256
    identities: int  # identities in the shard (rows / images per identity)
    first_label: int  # class label of the shard's first identity
    first_record: int  # RecordIO index of the shard's first image
    staging: str
    formats: tuple[str, ...]
    jpeg_quality: int = 95
    verify: bool = True
    write_attempts: int = 5
    write_backoff_s: float = 2.0
    label_width: int = 1  # digits of the dataset's largest class label (folder names)
    index_width: int = 1  # digits of the largest image index (file names)

    @property
    def name(self) -> str:
        return self.record.name


@dataclass
class ShardDone:
    """What exporting one shard produced (also its ``done/`` record)."""

    name: str
    index: int
    rows: int
    first_label: int
    first_record: int
    formats: list[str]
    identity_ids: list[int] = field(default_factory=list)  # the shard's identities, in order
    counts: list[int] = field(default_factory=list)  # images of each
    height: int = 0
    width: int = 0
    part_size: int | None = None  # bytes of parts/<stem>.rec
    idx_size: int | None = None  # bytes of parts/<stem>.idx
    summary: dict[str, Any] | None = None  # the card's ShardSummary as JSON

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "ShardDone":
        try:
            return cls(**jsonfile.loads(data))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where} is not a shard export record: {exc}") from exc


def _stem(name: str) -> str:
    return name[: -len(".parquet")] if name.endswith(".parquet") else name


def done_url(staging: str, name: str) -> str:
    return storage.join(staging, "done", f"{_stem(name)}.json")


def part_urls(staging: str, name: str) -> tuple[str, str]:
    """``(parts/<stem>.rec, parts/<stem>.idx)`` of one shard."""
    stem = _stem(name)
    return storage.join(staging, "parts", f"{stem}.rec"), storage.join(staging, "parts", f"{stem}.idx")


def _read(task: ShardTask, storage_cfg) -> ShardRows:
    """The shard's rows, checked against its manifest record as every dataset read is."""
    one = SyntheticDataset(task.dataset, Manifest({}, 0, 0, 1, shards=[task.record]), storage_cfg)
    return next(one.iter_shards(task.verify))


def _identity_runs(rows: ShardRows, task: ShardTask, url: str) -> tuple[np.ndarray, np.ndarray]:
    """``(identity ids, images of each)``, one run per identity; refuses a shard whose identities
    are interleaved or fewer/more than the manifest implies (the labels would be wrong)."""
    ids = np.asarray(rows.identity_id, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # (runs,)
    run_ids = ids[starts]
    counts = np.diff(np.r_[starts, len(ids)])
    if len(np.unique(run_ids)) != len(run_ids):
        raise DatasetError(f"{url}: an identity's images are not consecutive (identity-major order expected)")
    if len(run_ids) != task.identities:
        raise DatasetError(f"{url}: {len(run_ids)} identities, the manifest implies {task.identities}")
    return run_ids, counts


def export_shard(task: ShardTask, storage_cfg=None) -> ShardDone:
    """Export one shard into ``task.staging`` (see the module docstring); returns its record."""
    url = storage.join(task.dataset, "shards", task.name)
    rows = _read(task, storage_cfg)
    done = ShardDone(task.name, task.record.index, len(rows), task.first_label, task.first_record, list(task.formats))

    def put(target: str, data: bytes) -> None:
        write_with_retries(
            lambda: storage.write_bytes_atomic(target, data, storage_cfg),
            target,
            attempts=task.write_attempts,
            backoff_s=task.write_backoff_s,
        )

    if "folders" in task.formats or "recordio" in task.formats:
        jpegs = [as_jpeg(image, task.jpeg_quality) for image in rows.image]
    if "folders" in task.formats or "recordio" in task.formats:
        run_ids, counts = _identity_runs(rows, task, url)
        done.identity_ids, done.counts = [int(i) for i in run_ids], [int(c) for c in counts]
        labels = task.first_label + np.repeat(np.arange(len(run_ids)), counts)  # (rows,)
    if "folders" in task.formats:
        for label, index, jpeg in zip(labels, rows.image_index, jpegs):
            folder = folder_name(int(label), task.label_width)
            put(storage.join(task.staging, "images", folder, image_name(int(index), task.index_width)), jpeg)
    if "recordio" in task.formats:
        done.height, done.width = decode_image(rows.image[0]).shape[:2] if len(rows) else (0, 0)
        blobs, lines, pos = [], [], 0
        for i, (label, jpeg) in enumerate(zip(labels, jpegs)):
            blobs.append(encode_record(float(label), jpeg, task.first_record + i))
            lines.append(f"{task.first_record + i}\t{pos}\n")
            pos += len(blobs[-1])
        rec_url, idx_url = part_urls(task.staging, task.name)
        part, idx = b"".join(blobs), "".join(lines).encode("ascii")
        put(rec_url, part)
        put(idx_url, idx)
        done.part_size, done.idx_size = len(part), len(idx)
    if "card" in task.formats:
        done.summary = summarize_shard(rows).to_json()
    put(done_url(task.staging, task.name), done.to_json())
    return done
