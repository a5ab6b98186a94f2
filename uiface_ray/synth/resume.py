"""Resume: what is already done under an output, verified, and what is left to run.

Rules (the manifest is the commit marker):

* no manifest and no shards: a fresh output, everything is to run;
* no manifest but shard files: refused (not ours, or written by another tool);
* a manifest with a different generation config (``batch_size`` included: float32 images depend
  on it): refused, naming every differing key; a manifest written before ``batch_size`` joined the
  generation config is compared with the batch size its recorded job config names;
* a damaged manifest, or one that is a symbolic link: refused (:class:`ManifestError`, one line);
* a listed shard that is missing, or whose size or store version (S3 ETag, local mtime) in the
  listing differs from what was recorded at write time: rerun (logged); with ``verify_hashes``
  every listed shard is also read back and its SHA-256 compared (a full read of the dataset);
* an unlisted planned shard (the driver died between the shard and the manifest update): adopted
  when it reads back with exactly its planned identities and image indices, else rerun;
* an unplanned shard file: refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from uiface_ray.errors import InputError
from uiface_ray import storage
from uiface_ray.synth.journal import read_committed
from uiface_ray.synth.manifest import Manifest, ShardRecord, config_differences
from uiface_ray.synth.plan import ShardSpec
from uiface_ray.synth.shard import read_shard, sha256

__all__ = ["ResumeError", "ResumeState", "expected_rows", "resume_state"]

log = logging.getLogger(__name__)


class ResumeError(InputError, ValueError):
    """The output holds a different or foreign dataset; the message says what differs."""


@dataclass
class ResumeState:
    done: dict[int, ShardRecord] = field(default_factory=dict)
    todo: list[ShardSpec] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    redo: list[str] = field(default_factory=list)
    fresh: bool = True
    journal_upto: int = -1  # the last journal segment already read (the next run writes after it)


def expected_rows(spec: ShardSpec, identity_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(identity_id, image_index)`` of a shard's rows, identity-major."""
    ids = identity_ids[spec.row_start : spec.row_stop]
    return (
        np.repeat(ids, spec.images_per_identity).astype(np.int64),
        np.tile(np.arange(spec.images_per_identity), len(ids)).astype(np.int32),
    )


def _adoptable(
    url: str, info: storage.FileInfo, spec: ShardSpec, identity_ids: np.ndarray, model_hash: str, storage_cfg
) -> ShardRecord | None:
    try:
        data = storage.read_bytes(url, storage_cfg)
        rows = read_shard(url, storage_cfg, data=data)
    except (storage.StorageError, ValueError) as exc:
        log.warning("rerunning %s: unreadable (%s)", url, exc)
        return None
    want_ids, want_idx = expected_rows(spec, identity_ids)
    if (
        len(rows) != spec.num_images
        or not np.array_equal(rows.identity_id, want_ids)
        or not np.array_equal(rows.image_index, want_idx)
        or rows.model_hash != model_hash
    ):
        log.warning("rerunning %s: its rows are not the planned ones", url)
        return None
    return ShardRecord(spec.name, spec.index, len(rows), sha256(data), len(data), info.version)


def _differs(
    record: ShardRecord, info: storage.FileInfo, url: str, spec: ShardSpec, storage_cfg, verify_hashes: bool
) -> str | None:
    """Why a listed shard cannot be trusted, or None when it can."""
    if record.rows != spec.num_images:
        return f"the manifest lists {record.rows} rows, the plan {spec.num_images}"
    if record.size is not None and record.size != info.size:
        return f"{info.size} bytes in the store, {record.size} recorded (truncated or replaced)"
    if record.version is not None and info.version is not None and record.version != info.version:
        return f"the store's version changed since it was written ({record.version} -> {info.version}): replaced"
    if verify_hashes or record.size is None:
        if sha256(storage.read_bytes(url, storage_cfg)) != record.sha256:
            return "its content hash differs from the manifest"
    return None


def _with_batch_size(manifest: Manifest) -> dict:
    """The manifest's generation config; an older one without ``batch_size`` gets the one its
    recorded job config ran with."""
    old = dict(manifest.generation)
    if "batch_size" not in old and "batch_size" in manifest.job_config:
        old["batch_size"] = manifest.job_config["batch_size"]
    return old


def resume_state(
    out_url: str,
    generation: dict,
    plan: list[ShardSpec],
    identity_ids: np.ndarray,
    storage_cfg=None,
    verify_hashes: bool = False,
) -> ResumeState:
    """Compare ``out_url`` with the planned job; raise :class:`ResumeError` when it is foreign."""
    shards_url = storage.join(out_url, "shards")
    listing = storage.list_file_info(shards_url, ".parquet", storage_cfg)
    present = {name: storage.join(shards_url, name) for name in listing}
    manifest: Manifest | None = read_committed(out_url, storage_cfg)
    by_name = {s.name: s for s in plan}
    if manifest is None:
        if present:
            raise ResumeError(
                f"{out_url} holds {len(present)} shard file(s) but no manifest.json: "
                "not a dataset this job wrote; choose an empty output"
            )
        return ResumeState(todo=list(plan))
    diffs = config_differences(_with_batch_size(manifest), generation)
    if diffs:
        raise ResumeError(
            f"{out_url} holds a dataset made with a different config; refusing to mix them. "
            "Differences (existing -> this run):\n  " + "\n  ".join(diffs)
        )
    stray = sorted(set(present) - set(by_name))
    if stray:
        raise ResumeError(f"{out_url}/shards holds file(s) outside this job's plan: {stray[:5]}")
    state = ResumeState(fresh=False, journal_upto=manifest.journal_upto)
    listed = {r.name: r for r in manifest.shards}
    for spec in plan:
        record = listed.get(spec.name)
        if record is not None and spec.name in present:
            why = _differs(record, listing[spec.name], present[spec.name], spec, storage_cfg, verify_hashes)
            if why is None:
                state.done[spec.index] = record
                continue
            log.warning("rerunning %s: %s", spec.name, why)
        elif spec.name in present:
            adopted = _adoptable(
                present[spec.name], listing[spec.name], spec, identity_ids, manifest.model_hash, storage_cfg
            )
            if adopted is not None:
                state.done[spec.index] = adopted
                state.adopted.append(spec.name)
                continue
        if record is not None:
            state.redo.append(spec.name)
        state.todo.append(spec)
    return state
