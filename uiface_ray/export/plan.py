"""Planning an export: its staging folder, one task per shard, and what a resumed export skips.

The staging folder is ``<output>/.staging-<key>``, ``key`` a hash of what decides the bytes of
the export's parts: the dataset's shard records (names, rows, SHA-256), its generation config,
the formats and the JPEG quality.  The same command after an interrupt finds the same folder;
another dataset or other settings get another one.

Class labels and RecordIO record ids are global and known before any part is written, from the
manifest alone: shard ``i`` holds ``rows_i / images_per_identity`` identities (a dataset's shards
are consecutive blocks of its identity table, identity-major), so its first identity's label is
the number of identities in the shards before it and its first image is record
``1 + rows before it`` (record 0 is insightface's header).  This is the label the single-stream
export gave: the rank of the identity in identity-major order.

Resume (:func:`resume_export`) lists ``done/`` and ``parts/`` once and reads the done-records
together; a shard is skipped when its record matches its task and, for RecordIO, both its part
files are listed with the sizes the record gives.  Image-folder files are written before the
record, each whole, so a record means they are all there (no listing of ``images/``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

from uiface_ray import storage
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.folders import digits
from uiface_ray.export.shard import ShardDone, ShardTask, done_url, part_urls
from uiface_ray.synth.dataset import DatasetError, SyntheticDataset

__all__ = ["ExportInputError", "ResumeState", "plan_tasks", "resume_export", "staging_url"]

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


class ExportInputError(DatasetError):
    """An input of the export (metrics file, shard) is unusable; the message names it."""


def staging_url(cfg: ExportConfig, dataset: SyntheticDataset) -> str:
    """``<output>/.staging-<key>``: the same for the same dataset content and export settings."""
    m = dataset.manifest
    body = {
        "shards": [(r.name, r.rows, r.sha256) for r in sorted(m.shards, key=lambda r: r.index)],
        "generation": m.generation,
        "formats": sorted(cfg.formats),
        "jpeg_quality": cfg.jpeg_quality,
        "layout": 2,  # 2: zero-padded folders named by class label, labels.tsv
    }
    key = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return storage.join(cfg.output, STAGING_PREFIX + key)


def plan_tasks(cfg: ExportConfig, dataset: SyntheticDataset, staging: str) -> list[ShardTask]:
    """One task per shard, in index order, with its global first label and first record id."""
    m = dataset.manifest
    tasks, labels, records = [], 0, 1
    for record in sorted(m.shards, key=lambda r: r.index):
        if record.rows % m.images_per_identity:
            raise ExportInputError(
                f"{dataset.shard_url(record.name)}: {record.rows} rows is not a whole number of "
                f"identities at {m.images_per_identity} images each (manifest.json)"
            )
        identities = record.rows // m.images_per_identity
        tasks.append(
            ShardTask(
                dataset.url,
                record,
                identities,
                labels,
                records,
                staging,
                tuple(cfg.formats),
                cfg.jpeg_quality,
                cfg.verify_hashes,
                cfg.write_attempts,
                cfg.write_backoff_s,
                digits(m.num_identities),
                digits(m.images_per_identity),
            )
        )
        labels += identities
        records += record.rows
    return tasks


@dataclass
class ResumeState:
    done: dict[str, ShardDone] = field(default_factory=dict)  # shard name -> its record
    todo: list[ShardTask] = field(default_factory=list)
    redo: list[str] = field(default_factory=list)  # recorded, but a part is missing or damaged


def _complete(task: ShardTask, done: ShardDone, parts: dict[str, storage.FileInfo]) -> bool:
    same = (done.name, done.rows, done.first_label, done.first_record, sorted(done.formats)) == (
        task.name,
        task.record.rows,
        task.first_label,
        task.first_record,
        sorted(task.formats),
    )
    if not same:
        return False
    if "recordio" not in task.formats:
        return True
    rec, idx = (u.rsplit("/", 1)[-1] for u in part_urls(task.staging, task.name))
    return (rec in parts and parts[rec].size == done.part_size) and (idx in parts and parts[idx].size == done.idx_size)


def resume_export(tasks: list[ShardTask], staging: str, storage_cfg=None) -> ResumeState:
    """What the staging folder already holds (two listings, the done-records read together)."""
    state = ResumeState()
    listed = storage.list_file_info(storage.join(staging, "done"), ".json", storage_cfg)
    parts = storage.list_file_info(storage.join(staging, "parts"), "", storage_cfg) if listed else {}
    recorded = [t for t in tasks if done_url(staging, t.name).rsplit("/", 1)[-1] in listed]
    urls = [done_url(staging, t.name) for t in recorded]
    found: dict[str, ShardDone] = {}
    for task, url, data in zip(recorded, urls, storage.read_many(urls, storage_cfg)):
        try:
            found[task.name] = ShardDone.from_json(data, url)
        except ValueError as exc:
            log.warning("redoing %s: %s", task.name, exc)
    for task in tasks:
        done = found.get(task.name)
        if done is not None and _complete(task, done, parts):
            state.done[task.name] = done
            continue
        if done is not None:
            state.redo.append(task.name)
        state.todo.append(task)
    return state
