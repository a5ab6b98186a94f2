"""Committing shards at a cost that does not grow with the dataset: a journal plus checkpoints.

Layout under an output::

    manifest.json               the manifest (written first, checkpointed, written complete last)
    journal/00000042.json       a journal segment: records of shards finished since the last one
    shards/shard-00042.parquet  the shards

The driver adds each finished shard's record to the journal; a segment is written every
``journal_every_s`` seconds (a few hundred bytes per shard: O(1) per shard).  The manifest is
rewritten as a checkpoint only when the records since the last checkpoint are as many as the
checkpoint already holds (and at least ``min_checkpoint``), so the manifest bytes written over
a run stay under twice the final manifest's size: linear in the shard count, not quadratic.
Each checkpoint says up to which segment it includes (``journal_upto``).  When every shard is
listed, the complete manifest is written (the commit marker) and the journal is removed.

Crash safety (every write is atomic; nothing is ever rewritten in place):

* killed between a shard write and its record reaching a segment: the shard is in the store but
  in no record; resume adopts it after reading it back (:mod:`uiface_ray.synth.resume`);
* killed during a segment or a checkpoint write: the old manifest and every older segment are
  intact; resume reads the manifest and the segments after its ``journal_upto`` in one pass;
* killed during the final manifest write: the last checkpoint and the journal are intact, the
  rerun finds every shard recorded, runs nothing and writes the final manifest;
* killed after the final manifest, before the journal is removed: the manifest is complete and
  the rerun removes the stale journal;
* the journal removed by another attempt while this one removes it: the final commit goes on.

A record appearing twice (a segment and a checkpoint) is the same record: merged by shard name.
A segment that does not parse (damaged after it was written) is skipped with a warning: its shards
are in the store but in no record, so resume reads them back and adopts them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from typing import Callable

from uiface_ray import jsonfile, storage
from uiface_ray.synth.manifest import Manifest, ShardRecord, manifest_url, read_manifest

__all__ = ["JOURNAL_DIR", "ManifestWriter", "read_committed"]

log = logging.getLogger(__name__)

JOURNAL_DIR = "journal"


def _segment_name(seq: int) -> str:
    return f"{seq:08d}.json"


def journal_url(out_url: str) -> str:
    return storage.join(out_url, JOURNAL_DIR)


def read_committed(out_url: str, storage_cfg=None) -> Manifest | None:
    """The manifest with every journal record after its checkpoint merged in (one listing of the
    journal and one read of each newer segment, fetched together); None when there is none."""
    manifest = read_manifest(out_url, storage_cfg)
    if manifest is None:
        return None
    segments = storage.list_files(journal_url(out_url), ".json", storage_cfg)
    newer = [u for u in segments if int(u.rsplit("/", 1)[-1].split(".")[0]) > manifest.journal_upto]
    by_name = {r.name: r for r in manifest.shards}
    for url, data in zip(newer, storage.read_many(newer, storage_cfg)):
        try:
            records = [ShardRecord(**r) for r in jsonfile.loads(data)["shards"]]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("skipping %s, not a valid journal segment (%s): its shards are read back and adopted", url, exc)
            continue
        for record in records:
            by_name[record.name] = record
    if newer:
        manifest.journal_upto = max(int(u.rsplit("/", 1)[-1].split(".")[0]) for u in segments)
    manifest.shards = sorted(by_name.values(), key=lambda r: r.index)
    return manifest


class ManifestWriter:
    """The driver's side of the journal: :meth:`begin`, :meth:`add` per shard, :meth:`finish`.

    The writer owns the manifest it is given (it keeps its own copy): the driver reads the counts
    through :attr:`num_shards` and :attr:`num_rows`, never through the manifest object."""

    def __init__(
        self,
        out_url: str,
        manifest: Manifest,
        storage_cfg=None,
        *,
        journal_every_s: float = 5.0,
        min_checkpoint: int = 256,
        write: Callable[[str, bytes], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.out_url = out_url
        self.manifest = replace(manifest, shards=list(manifest.shards), generation=dict(manifest.generation))
        self.storage_cfg = storage_cfg
        self.journal_every_s = journal_every_s
        self.min_checkpoint = min_checkpoint
        self._write = write or (lambda url, data: storage.write_bytes_atomic(url, data, storage_cfg))
        self.clock = clock
        self._pending: list[ShardRecord] = []
        self._since_checkpoint = 0
        self._checkpointed = len(manifest.shards)
        self._seq = manifest.journal_upto + 1
        self._last_flush = clock()
        self.bytes_written = 0
        self.writes = 0

    @property
    def num_shards(self) -> int:
        """Shards recorded so far (committed or pending in the journal)."""
        return len(self.manifest.shards)

    @property
    def num_rows(self) -> int:
        return self.manifest.num_rows

    def _put(self, url: str, data: bytes) -> None:
        self._write(url, data)
        self.bytes_written += len(data)
        self.writes += 1

    def checkpoint(self) -> None:
        """Write the manifest with every record so far (the journal up to the last segment)."""
        self.manifest.journal_upto = self._seq - 1
        self._put(manifest_url(self.out_url), self.manifest.to_json().encode())
        self._since_checkpoint = 0
        self._checkpointed = len(self.manifest.shards)

    def begin(self) -> None:
        """Record the job before any shard (the manifest of a fresh output, or a resumed one's
        merged records as a checkpoint)."""
        self.checkpoint()

    def add(self, record: ShardRecord) -> None:
        self.manifest.shards.append(record)
        self._pending.append(record)
        self.flush_if_due()

    def flush_if_due(self) -> None:
        if self.clock() - self._last_flush >= self.journal_every_s:
            self.flush()

    def flush(self) -> None:
        """Write the pending records as one segment; checkpoint when the journal has grown as
        large as the checkpoint (geometric: linear total bytes)."""
        self._last_flush = self.clock()
        if not self._pending:
            return
        body = {"shards": [asdict(r) for r in self._pending]}
        self._put(storage.join(journal_url(self.out_url), _segment_name(self._seq)), json.dumps(body).encode())
        self._seq += 1
        self._since_checkpoint += len(self._pending)
        self._pending = []
        if self._since_checkpoint >= max(self.min_checkpoint, self._checkpointed):
            self.checkpoint()

    def finish(self) -> None:
        """The complete manifest (the commit marker), then the journal removed."""
        if not self.manifest.complete:
            raise RuntimeError(
                f"internal: manifest lists {len(self.manifest.shards)}/{self.manifest.num_shards} shards"
            )
        self.flush()
        self.checkpoint()
        url = journal_url(self.out_url)
        try:
            storage.remove(url, self.storage_cfg, recursive=True)
        except storage.StorageError:
            if storage.exists(url, self.storage_cfg):
                raise  # still there: a real failure (under `ray job submit` on two nodes of one machine
                # it was the driver's removed working directory, which the storage layer no longer asks for)
            log.info("%s was already removed", url)  # removed meanwhile by another run on this output
