"""Run an export: per-shard work (in this process or spread over Ray workers), a stitch, then a move.

1. Validate everything before writing anything: the dataset is complete (``open_dataset``), the
   metrics file (given or ``<dataset>/metrics.json``) exists and is JSON, every listed shard is
   in the store with the size recorded at write time (one listing; with ``verify_hashes`` each
   shard's SHA-256 is also checked when it is read for export), every shard holds whole
   identities, the output and the dataset do not overlap, the output is one the export may
   write into (:mod:`uiface_ray.export.output`: new, empty, or made by an export) and writable.
2. Claim the output (its marker ``.uiface-export.json``) and plan (:mod:`uiface_ray.export.plan`):
   the staging folder ``<output>/.staging-<key>`` (``key`` a hash of the dataset's shard records
   and the export settings), one task per shard with its global labels, and what that folder
   already holds from an interrupted run (two listings).
3. Export every shard not done yet (:func:`uiface_ray.export.shard.export_shard`): image files,
   the shard's RecordIO part, its card summary, then its done-record.  ``map_shards`` runs the
   tasks: in this process by default, over Ray workers from :mod:`uiface_ray.runtime.export`.
4. Stitch the parts into ``train.rec``/``train.idx`` (streaming), write ``property`` and the card
   (from the shards' summaries: no shard is read again) into the staging folder.
5. List the entries in the marker, then publish (:mod:`uiface_ray.export.publish`): record the
   entries in the staging folder, move each (``images/``, ``train.rec``, ...) to its place under
   ``<output>``, replacing an earlier export's entry of the same name (never an entry no export
   wrote), and remove the staging folder.  Publishing is crash-consistent: a rerun after a kill at
   any point of it completes it, and ends with the tree a clean export gives.

Failures:

* a user error (a truncated or replaced shard, a missing metrics file, any
  :class:`uiface_ray.errors.InputError` but an unreachable or full store) removes the staging
  folder (and the marker of an output this export created): the output holds nothing of this export;
* a crash, an interrupt (Ctrl-C, a killed driver), a store that stays unreachable through every
  write retry or a full disk leaves the staging folder: the same command resumes, skipping every
  shard whose done-record and parts are in place, and redoes the stitch;
* once publishing started, nothing removes the staging folder but the publish itself: any failure
  leaves it, and the same command completes the publish (no shard is exported again);
* an output never holds a part of an export's file: entries reach it only in step 5, whole.

One export per output at a time (two runs of the same command would share a staging folder).
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from uiface_ray import jsonfile, storage
from uiface_ray.config import StorageConfig
from uiface_ray.errors import InputError
from uiface_ray.synth.preview import PREVIEW
from uiface_ray.export.card import ShardSummary, card_from_summaries, generator_record, write_card
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.folders import write_labels
from uiface_ray.export.output import OwnedOutput, check_overlap, entry_names, owned_output
from uiface_ray.export.plan import ExportInputError, ResumeState, plan_tasks, resume_export, staging_url
from uiface_ray.export.publish import PUBLISH, StepHook, pending_publishes, publish, read_publish
from uiface_ray.export.recordio import stitch_recordio
from uiface_ray.export.shard import ShardDone, ShardTask, export_shard
from uiface_ray.progress import Progress
from uiface_ray.storage.fs import check_writable
from uiface_ray.synth.dataset import SyntheticDataset, open_dataset
from uiface_ray.synth.retry import StoreUnavailableError

__all__ = [
    "ExportInputError",
    "ExportResult",
    "ShardMapper",
    "in_process",
    "run_export",
    "validate_export",
]

log = logging.getLogger(__name__)

# map_shards(tasks, storage settings, on_done): run every task, calling on_done(record) as each finishes
ShardMapper = Callable[[list[ShardTask], StorageConfig, Callable[[ShardDone], None]], None]


@dataclass
class ExportResult:
    output: str
    images: int
    identities: int
    written: list[str] = field(default_factory=list)
    shards_run: int = 0
    shards_skipped: int = 0  # done by an interrupted run of the same export
    seconds: float = 0.0
    shards_seconds: float = 0.0  # exporting the shards left to do (the workers' part)
    finish_seconds: float = 0.0  # the stitch, the card and the move into place (the driver's part)


def in_process(tasks: list[ShardTask], storage_cfg: StorageConfig, on_done: Callable[[ShardDone], None]) -> None:
    """The default :data:`ShardMapper`: one shard after another in this process."""
    for task in tasks:
        on_done(export_shard(task, storage_cfg))


def _identity_encoder(job_config: dict, storage_cfg) -> dict:
    """The encoder recorded in the identity table the dataset was made from (empty when unreadable)."""
    from uiface_ray.identities.table import IdentityTableError, read_identity_table

    url = job_config.get("identities")
    if not url:
        return {}
    try:
        return read_identity_table(url, storage_cfg=storage_cfg).encoder
    except (IdentityTableError, storage.StorageError):
        return {"note": f"identity table {url} not readable at export time"}


def _metrics(cfg: ExportConfig) -> dict:
    url = cfg.metrics or storage.join(cfg.dataset, "metrics.json")
    if not storage.exists(url, cfg.storage):
        if cfg.metrics:
            raise ExportInputError(f"metrics file not found: {cfg.metrics}")
        return {}
    try:
        metrics = jsonfile.loads(storage.read_bytes(url, cfg.storage))
    except jsonfile.JSONFileError as exc:
        raise ExportInputError(f"metrics file {url}: {exc}") from None
    if not isinstance(metrics, dict):
        raise ExportInputError(f"metrics file {url} must hold a JSON object, got {type(metrics).__name__}")
    return metrics


def _check_shards(dataset: SyntheticDataset) -> None:
    """Every listed shard present with its recorded size (a listing; nothing read)."""
    listing = storage.list_file_info(storage.join(dataset.url, "shards"), ".parquet", dataset.storage_cfg)
    for record in dataset.manifest.shards:
        info = listing.get(record.name)
        if info is None:
            raise ExportInputError(
                f"{dataset.shard_url(record.name)} is missing; rerun jobs/synthesize.py with "
                "the same config to regenerate it"
            )
        if record.size is not None and info.size != record.size:
            raise ExportInputError(
                f"{dataset.shard_url(record.name)}: {info.size} bytes, the manifest recorded "
                f"{record.size} (truncated or replaced); rerun jobs/synthesize.py with the same "
                "config to regenerate it"
            )


def validate_export(cfg: ExportConfig) -> tuple[SyntheticDataset, dict, OwnedOutput]:
    """Everything an export needs, checked before anything is written; returns (dataset, metrics,
    the output as this export may use it)."""
    check_overlap(cfg.dataset, cfg.output)
    dataset = open_dataset(cfg.dataset, cfg.storage)
    metrics = _metrics(cfg) if "card" in cfg.formats else {}
    _check_shards(dataset)
    owned = owned_output(cfg.output, entry_names(cfg.formats), cfg.storage)
    check_writable(cfg.output, cfg.storage)
    return dataset, metrics, owned


def _progress(tasks: list[ShardTask], state: ResumeState, every_s: float) -> Progress:
    """The export's progress: its images and shards, counting from what an earlier run exported."""
    return Progress(
        sum(t.record.rows for t in tasks),
        sum(d.rows for d in state.done.values()),
        every_s,
        parts_total=len(tasks),
        parts_done=len(state.done),
    )


def _shard_done(progress: Progress, done: ShardDone) -> None:
    """``[export] shards 12/63, 192/1000 images (31.0/s, ETA 0:00:26)`` every ``every_s`` seconds
    and at the last shard; the images are this run's."""
    progress.add(done.rows, parts=1)
    if progress.due(force=progress.parts_done == progress.parts_total):
        print(
            f"[export] shards {progress.parts_done}/{progress.parts_total}, {progress.text()}",
            file=sys.stderr,
            flush=True,
        )


def _finish(
    cfg: ExportConfig, dataset: SyntheticDataset, metrics: dict, staging: str, dones: list[ShardDone]
) -> list[str]:
    """Stitch and write the card into ``staging``; returns every name the export writes there."""
    if "folders" in cfg.formats:
        write_labels(dones, staging, cfg.storage)
    if "recordio" in cfg.formats:
        stitch_recordio(dones, staging, staging, cfg.storage, cfg.stitch_chunk_mb << 20)
    if "card" in cfg.formats:
        card = card_from_summaries(
            dataset.url,
            dataset.manifest,
            (ShardSummary.from_json(d.summary) for d in dones),
            _identity_encoder(dataset.manifest.job_config, cfg.storage),
            metrics,
            license=cfg.card.license,
            intended_use=cfg.card.intended_use,
            generator=generator_record(dataset.manifest.job_config.get("model"), cfg.storage),
        )
        write_card(card, staging, cfg.storage)
    names = entry_names(cfg.formats)
    preview = storage.join(dataset.url, PREVIEW)
    if storage.exists(preview, cfg.storage):  # synthesize's grid of a few identities, copied as it is
        storage.write_bytes_atomic(
            storage.join(staging, PREVIEW), storage.read_bytes(preview, cfg.storage), cfg.storage
        )
    else:
        names.remove(PREVIEW)
    return names


def _publishing(staging: str, storage_cfg) -> bool:
    """Whether the export had started publishing (its staging folder is then never removed on error)."""
    try:
        return storage.exists(storage.join(staging, PUBLISH), storage_cfg)
    except storage.StorageError:
        return True  # unreachable: keep whatever is there


def _remove_quietly(url: str, storage_cfg) -> None:
    try:
        storage.remove(url, storage_cfg, recursive=True)
    except storage.StorageError as exc:  # the error being raised says more than this one
        log.warning("could not remove %s: %s", url, exc)


def _stage(
    cfg: ExportConfig,
    dataset: SyntheticDataset,
    metrics: dict,
    staging: str,
    tasks: list[ShardTask],
    map_shards: ShardMapper,
    result: ExportResult,
) -> list[str]:
    """Steps 3-4: every shard not yet exported, then the stitch and the card; returns the entries."""
    state = resume_export(tasks, staging, cfg.storage)
    if state.done or state.redo:
        print(
            f"[export] resuming {staging}: {len(state.done)} of {len(tasks)} shards already exported, skipped; "
            f"{len(state.todo)} to run" + (f" ({len(state.redo)} with a missing part: rerun)" if state.redo else ""),
            file=sys.stderr,
            flush=True,
        )
    done = dict(state.done)
    progress = _progress(tasks, state, cfg.progress_every_s)

    def on_done(record: ShardDone) -> None:
        done[record.name] = record
        _shard_done(progress, record)

    start = time.perf_counter()
    if state.todo:
        map_shards(state.todo, cfg.storage, on_done)
    result.shards_seconds = time.perf_counter() - start
    missing = [t.name for t in tasks if t.name not in done]
    if missing:
        raise AssertionError(f"internal: no export record for {missing[:5]}")
    result.shards_run, result.shards_skipped = len(state.todo), len(state.done)
    return _finish(cfg, dataset, metrics, staging, [done[t.name] for t in tasks])


def _export(
    cfg: ExportConfig,
    staging: str,
    num_tasks: int,
    stage: Callable[[], list[str]],
    result: ExportResult,
    owned: OwnedOutput,
    step: StepHook | None,
) -> None:
    """Steps 3-5; ``stage()`` runs steps 3-4 (:func:`_stage`), skipped when publishing had started."""
    start = time.perf_counter()
    if not owned.created:  # an export with other settings stopped while publishing: complete it first
        for other in pending_publishes(cfg.output, storage.list_names(cfg.output, cfg.storage), staging, cfg.storage):
            print(f"[export] completing the interrupted publish of {other}", file=sys.stderr, flush=True)
            publish(other, cfg.output, [], cfg.storage)
    pending = read_publish(staging, cfg.storage)
    if pending is None:
        names = stage()
        owned.record(names, cfg.storage)  # refuses a name that appeared and is not ours
    else:
        print(f"[export] completing the interrupted publish of {staging}", file=sys.stderr, flush=True)
        names, result.shards_skipped = pending.names, num_tasks
    publish(staging, cfg.output, names, cfg.storage, step)
    result.written = [storage.join(cfg.output, name) for name in names]
    result.finish_seconds = time.perf_counter() - start - result.shards_seconds


def run_export(
    cfg: ExportConfig, map_shards: ShardMapper | None = None, publish_step: StepHook | None = None
) -> ExportResult:
    """Export the dataset of ``cfg`` (see the module docstring); ``map_shards`` runs the per-shard
    tasks (default: :func:`in_process`).  ``publish_step`` is the crash tests' seam into the last
    step (:func:`uiface_ray.export.publish.publish`); production passes none."""
    start = time.perf_counter()
    cfg = storage.resolve_urls(cfg)
    dataset, metrics, owned = validate_export(cfg)
    staging = staging_url(cfg, dataset)
    tasks = plan_tasks(cfg, dataset, staging)
    result = ExportResult(cfg.output, dataset.manifest.num_rows, dataset.manifest.num_identities)
    owned.claim(cfg.storage)
    try:
        stage = functools.partial(_stage, cfg, dataset, metrics, staging, tasks, map_shards or in_process, result)
        _export(cfg, staging, len(tasks), stage, result, owned, publish_step)
    except InputError as exc:
        kept = isinstance(exc, (StoreUnavailableError, storage.StorageFullError)) or _publishing(staging, cfg.storage)
        if not kept:  # a user error before publishing: nothing stays
            _remove_quietly(staging, cfg.storage)
            if owned.created:  # the marker this export wrote into an empty output
                _remove_quietly(owned.marker_url, cfg.storage)
        raise
    result.seconds = time.perf_counter() - start
    return result
