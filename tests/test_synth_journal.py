"""The commit design of issue 13 (no Ray, no model): journal segments + geometric manifest
checkpoints, crash safety at each write, resume in one pass trusting the listing, progress."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from uiface_ray import storage
from uiface_ray.synth.journal import JOURNAL_DIR, ManifestWriter, read_committed
from uiface_ray.synth.manifest import Manifest, ShardRecord, read_manifest
from uiface_ray.synth.plan import plan_shards
from uiface_ray.progress import Progress
from uiface_ray.synth.progress import show_progress
from uiface_ray.synth.resume import expected_rows, resume_state
from uiface_ray.synth.shard import ShardRows, encode_image, encode_shard, read_shard, sha256, shard_metadata

GEN = {"model_hash": "m" * 8, "seed": 3}
N_ID, PER_SHARD, N_IMG = 12, 1, 2


class Killed(Exception):
    """The driver dies here."""


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _write_shard(out: str, spec, ids) -> ShardRecord:
    idn, idx = expected_rows(spec, ids)
    rng = np.random.default_rng(spec.index)
    imgs = [encode_image(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in idn]
    data = encode_shard(
        ShardRows(
            idn,
            idx,
            idn * 10 + idx,
            imgs,
            np.zeros(len(idn)),
            "uiface",
            GEN["model_hash"],
            shard_metadata("png", 8, 8, "uiface", GEN["model_hash"]),
        )
    )
    url = storage.join(out, "shards", spec.name)
    storage.write_bytes_atomic(url, data)
    info = storage.file_info(url)
    return ShardRecord(spec.name, spec.index, len(idn), sha256(data), info.size, info.version)


def _run(out: str, *, die_at=None, journal_every_s=0.0, min_checkpoint=2):
    """What the driver does, with a write that raises :class:`Killed` at the named point.

    ``die_at``: ("shard", k) after shard k is written but before its record; ("segment", k),
    ("checkpoint", k) at the k-th such write; ("final", 0) at the final manifest."""
    ids = np.arange(N_ID)
    plan = plan_shards(N_ID, PER_SHARD, N_IMG)
    state = resume_state(out, GEN, plan, ids)
    man = Manifest(
        GEN,
        N_ID,
        N_IMG,
        len(plan),
        shards=sorted(state.done.values(), key=lambda r: r.index),
        journal_upto=state.journal_upto,
    )
    counts = {"segment": 0, "checkpoint": 0}
    final = [False]

    def write(url: str, data: bytes) -> None:
        kind = "segment" if f"/{JOURNAL_DIR}/" in url else "checkpoint"
        if kind == "checkpoint" and final[0]:
            kind = "final"
        if die_at is not None and die_at[0] == kind and (kind == "final" or counts[kind] == die_at[1]):
            raise Killed(kind)
        if kind in counts:
            counts[kind] += 1
        storage.write_bytes_atomic(url, data)

    clock = Clock()
    writer = ManifestWriter(
        out, man, journal_every_s=journal_every_s, min_checkpoint=min_checkpoint, write=write, clock=clock
    )
    writer.begin()
    for spec in state.todo:
        record = _write_shard(out, spec, ids)
        if die_at == ("shard", spec.index):
            raise Killed("shard")
        clock.t += 1.0
        writer.add(record)
    final[0] = True
    writer.finish()
    return state, writer


def _bytes_of(out: str) -> dict[str, bytes]:
    return {u.rsplit("/", 1)[-1]: storage.read_bytes(u) for u in storage.list_files(storage.join(out, "shards"))}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("clean") / "ds")
    _, writer = _run(out)
    return out, _bytes_of(out), writer


def test_commit_cost_is_linear(clean):
    out, shards, writer = clean
    manifest = read_manifest(out)
    assert manifest.complete and len(manifest.shards) == N_ID and not storage.exists(storage.join(out, JOURNAL_DIR))
    final = len(manifest.to_json())
    # segments + geometric checkpoints: well under 3 final manifests, not N_ID / 2 of them
    assert writer.bytes_written < 3 * final + 400 * N_ID
    assert writer.writes < N_ID + 2 * np.log2(N_ID) + 4


@pytest.mark.parametrize("die_at", [("shard", 5), ("segment", 4), ("checkpoint", 2), ("checkpoint", 3), ("final", 0)])
def test_driver_killed_at_each_write_then_rerun(clean, tmp_path, die_at):
    _, want, _ = clean
    out = str(tmp_path / "ds")
    with pytest.raises(Killed):
        _run(out, die_at=die_at)
    assert not read_manifest(out).complete  # readers (open_dataset) see no finished dataset
    state, _ = _run(out)
    manifest = read_manifest(out)
    names = [r.name for r in manifest.shards]
    assert manifest.complete and names == sorted(set(names)) and len(names) == N_ID  # no duplicate, no loss
    assert _bytes_of(out) == want
    assert all(r.size == len(want[r.name]) and r.sha256 == sha256(want[r.name]) for r in manifest.shards)
    if die_at == ("shard", 5):
        assert state.adopted == ["shard-00005.parquet"]  # written but never recorded: read back, adopted
    if die_at == ("final", 0):
        assert state.todo == [] and len(state.done) == N_ID  # everything recorded already


def test_resume_reads_the_journal_after_the_checkpoint(tmp_path):
    out = str(tmp_path / "ds")
    with pytest.raises(Killed):
        _run(out, die_at=("shard", 9), min_checkpoint=100)  # no checkpoint after begin: all in segments
    assert read_manifest(out).shards == [] and len(storage.list_files(storage.join(out, JOURNAL_DIR))) == 9
    committed = read_committed(out)
    assert [r.index for r in committed.shards] == list(range(9)) and committed.journal_upto == 8


def test_a_damaged_journal_segment_is_skipped_and_its_shards_adopted(clean, tmp_path):
    _, want, _ = clean
    out = str(tmp_path / "ds")
    with pytest.raises(Killed):
        _run(out, die_at=("shard", 9), min_checkpoint=100)  # shards 0-8 recorded in segments only
    segment = tmp_path / "ds" / JOURNAL_DIR / "00000004.json"
    segment.write_bytes(segment.read_bytes()[:-7])  # damaged after it was written (was a traceback)
    state, _ = _run(out)
    assert state.adopted == ["shard-00004.parquet", "shard-00009.parquet"]  # read back, its rows checked
    assert read_manifest(out).complete and _bytes_of(out) == want


def test_a_resume_with_another_batch_size_is_refused_by_the_manifest_alone(tmp_path):
    """A manifest written before batch_size joined the generation config: its job config names it."""
    from uiface_ray.synth.resume import ResumeError

    out = str(tmp_path / "ds")
    _run(out)
    man = read_manifest(out)
    man.job_config = {"batch_size": 4}
    storage.write_bytes_atomic(storage.join(out, "manifest.json"), man.to_json().encode())
    ids, plan = np.arange(N_ID), plan_shards(N_ID, PER_SHARD, N_IMG)
    assert resume_state(out, {**GEN, "batch_size": 4}, plan, ids).todo == []
    with pytest.raises(ResumeError, match="batch_size: 4 -> 3"):
        resume_state(out, {**GEN, "batch_size": 3}, plan, ids)


def test_resume_trusts_the_listing_and_catches_truncated_or_replaced(tmp_path):
    out = str(tmp_path / "ds")
    _run(out)
    ids, plan = np.arange(N_ID), plan_shards(N_ID, PER_SHARD, N_IMG)
    assert resume_state(out, GEN, plan, ids).todo == []
    shards = tmp_path / "ds" / "shards"
    # truncated: the size differs from the record
    data = (shards / "shard-00002.parquet").read_bytes()
    (shards / "shard-00002.parquet").write_bytes(data[:-10])
    # replaced by another of the same size: the store's version (mtime here, ETag on S3) differs
    other = (shards / "shard-00004.parquet").read_bytes()
    forged = bytearray(other)
    forged[-20] ^= 0xFF
    (shards / "shard-00004.parquet").write_bytes(bytes(forged))
    state = resume_state(out, GEN, plan, ids)
    assert sorted(state.redo) == ["shard-00002.parquet", "shard-00004.parquet"]
    # a full re-hash on request catches a replacement the listing cannot see (same size, version kept)
    man = read_manifest(out)
    man.shards = [ShardRecord(r.name, r.index, r.rows, r.sha256, r.size, None) for r in man.shards]
    storage.write_bytes_atomic(storage.join(out, "manifest.json"), man.to_json().encode())
    assert "shard-00004.parquet" not in resume_state(out, GEN, plan, ids).redo
    assert "shard-00004.parquet" in resume_state(out, GEN, plan, ids, verify_hashes=True).redo


def test_shard_schema_metadata_roundtrip(clean):
    out, _, _ = clean
    rows = read_shard(storage.join(out, "shards", "shard-00000.parquet"))
    assert rows.metadata == {
        "uiface.image_format": "png",
        "uiface.image_size": "8x8",
        "uiface.mode": "uiface",
        "uiface.model_hash": GEN["model_hash"],
    }


def test_progress_moves_inside_a_shard():
    lines = []

    class Sink:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    progress = Progress(400, every_s=0.0, parts_total=4)
    progress.pending = 30  # 30 images of unfinished shards, reported per batch
    show_progress(progress, stream=Sink())
    # only what has landed counts (issue 26 item 7); images inside unfinished shards are shown apart
    assert "shards 0/4  images 0/400 landed (+30 in unfinished shards)" in lines[0] and "ETA ?" in lines[0]
    progress.pending = 0
    progress.add(100, parts=1)
    show_progress(progress, stream=Sink())
    assert "shards 1/4  images 100/400 landed  " in lines[-2] and "ETA ?" not in lines[-2]
    json.dumps(lines)


def test_the_final_commit_needs_no_working_directory(tmp_path):
    """Issue 34 item 9, the fast half (tests/test_node_loss.py runs the real two-node cluster): a driver
    whose working directory was removed under it (Ray's runtime-env agent of a second node on the same
    machine unpacks the job's working_dir again) commits and removes the journal; before, the removal
    asked for the working directory and failed with FileNotFoundError, the journal still there."""
    out, gone = tmp_path / "ds", tmp_path / "workdir"
    gone.mkdir()
    script = f"""
import os, shutil
from uiface_ray.synth.journal import ManifestWriter
from uiface_ray.synth.manifest import Manifest, ShardRecord
os.chdir({str(gone)!r})
shutil.rmtree({str(gone)!r})  # as the second node's agent does
writer = ManifestWriter({str(out)!r}, Manifest({{"seed": 0}}, 1, 1, 1), journal_every_s=0)
writer.begin()
writer.add(ShardRecord("shard-00000.parquet", 0, 1, "0" * 64, 10, None))
writer.finish()
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((out / "manifest.json").read_text())["complete"] is True and not (out / "journal").exists()
