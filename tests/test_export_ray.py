"""The export on Ray workers: per-shard parts stitched into one train.rec that reads back with every
label right, the same bytes from one worker or several, resume after an interrupt, image folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from uiface_ray import storage
from uiface_ray.data.recordio import RecordIOReader, write_recordio
from uiface_ray.export.config import ExportConfig
from uiface_ray.synth.dataset import DatasetError
from uiface_ray.synth.manifest import Manifest, ShardRecord, read_manifest, write_manifest
from uiface_ray.synth.plan import plan_shards
from uiface_ray.synth.resume import expected_rows
from uiface_ray.synth.shard import ShardRows, encode_image, encode_shard, sha256

IDS = np.array([7, 3, 40, 41, 12, 99, 5, 8, 1000, 2])  # not sorted, not 0..N-1: labels are ranks in shard order
N_IMG, PER_SHARD = 3, 3


def make_dataset(url: str, fmt: str = "jpeg") -> dict[tuple[int, int], bytes]:
    """A dataset of 4 shards (3, 3, 3, 1 identities); returns {(identity, index): image bytes}."""
    plan = plan_shards(len(IDS), PER_SHARD, N_IMG)
    man = Manifest({"model_hash": "abc", "seed": 7}, len(IDS), N_IMG, len(plan), job_config={"identities": ""})
    images = {}
    rng = np.random.default_rng(1)
    for spec in plan:
        ids, idx = expected_rows(spec, IDS)
        data = [encode_image(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), fmt) for _ in ids]
        images.update({(int(i), int(j)): d for i, j, d in zip(ids, idx, data)})
        blob = encode_shard(
            ShardRows(ids, idx, ids * 1000 + idx, data, np.full(len(ids), 400 + spec.index), "uiface", "abc")
        )
        storage.write_bytes_atomic(storage.join(url, "shards", spec.name), blob)
        info = storage.file_info(storage.join(url, "shards", spec.name))
        man.shards.append(ShardRecord(spec.name, spec.index, len(ids), sha256(blob), info.size, info.version))
    write_manifest(url, man)
    return images


def manifest_labels(url: str) -> list[int]:
    """Each image record's label as the manifest and the shards say: shards in index order, each
    identity's rank in that identity-major order (independent of the export's arithmetic)."""
    from uiface_ray.synth.dataset import open_dataset

    order: dict[int, int] = {}
    labels = []
    for rows in open_dataset(url).iter_shards():
        for identity in rows.identity_id:
            labels.append(order.setdefault(int(identity), len(order)))
    return labels


def export(ds: str, out: str, workers: int = 2, **kw):
    from uiface_ray.runtime.export import run_export_on_ray

    return run_export_on_ray(
        ExportConfig(dataset=ds, output=out, workers={"num_workers": workers}, progress_every_s=0.01, **kw)
    )


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_stitched_rec_reads_back_with_every_label_right(tmp_path, ray_local):
    ds, out = str(tmp_path / "ds"), tmp_path / "ex"
    images = make_dataset(ds)
    result = export(ds, str(out))
    assert result.shards_run == 4 and result.images == len(IDS) * N_IMG
    want = manifest_labels(ds)
    order = [(int(i), int(j)) for i, j in zip(np.repeat(IDS, N_IMG), np.tile(np.arange(N_IMG), len(IDS)))]
    with RecordIOReader(str(out / "train.rec")) as reader:
        assert len(reader) == len(want) == len(order)
        for n, item in enumerate(reader):
            assert int(item.label) == want[n]
            assert item.image == images[order[n]]  # JPEG shards: copied unchanged
            assert reader.read_record(reader.record_index(n))[0].id == n + 1
        assert reader.identity_ranges == [(1 + N_IMG * k, 1 + N_IMG * (k + 1)) for k in range(len(IDS))]
    assert (out / "property").read_text() == f"{len(IDS)},16,16\n"
    # byte for byte what the single-stream writer makes of the same records
    write_recordio(str(tmp_path / "ref.rec"), None, [(float(lab), images[key]) for lab, key in zip(want, order)])
    assert (out / "train.rec").read_bytes() == (tmp_path / "ref.rec").read_bytes()
    assert (out / "train.idx").read_bytes() == (tmp_path / "ref.idx").read_bytes()
    # image folders complete, the card counted every image; no staging left
    label = {identity: want[n] for n, (identity, _) in enumerate(order)}  # folders named by class label
    for (identity, index), data in images.items():
        assert (out / "images" / f"{label[identity]}" / f"{index}.jpg").read_bytes() == data
    assert sum(1 for _ in (out / "images").rglob("*.jpg")) == len(images)
    assert sorted(p.name for p in out.iterdir()) == [
        ".uiface-export.json",
        "README.md",
        "dataset_card.json",
        "images",
        "labels.tsv",
        "property",
        "train.idx",
        "train.rec",
    ]


def test_one_worker_or_several_give_the_same_bytes(tmp_path, ray_local):
    ds = str(tmp_path / "ds")
    make_dataset(ds, fmt="png")  # re-encoded as JPEG by the workers
    export(ds, str(tmp_path / "one"), workers=1)
    export(ds, str(tmp_path / "two"), workers=2)
    one, two = tree_digest(tmp_path / "one"), tree_digest(tmp_path / "two")
    assert one == two and "train.rec" in one and len(one) == 7 + len(IDS) * N_IMG


def _interrupted_after(map_shards, shards: int):
    """A ShardMapper that runs ``map_shards`` and is interrupted (Ctrl-C) once ``shards`` are done."""

    def run(tasks, storage_cfg, on_done):
        count = []

        def on_done_then_stop(done):
            on_done(done)
            count.append(done.name)
            if len(count) == shards:
                raise KeyboardInterrupt

        map_shards(tasks, storage_cfg, on_done_then_stop)

    return run


def test_interrupted_export_resumes_without_redoing_finished_shards(tmp_path, ray_local):
    from uiface_ray.export.run import run_export
    from uiface_ray.runtime.export import _mapper

    ds, out = str(tmp_path / "ds"), tmp_path / "ex"
    make_dataset(ds)
    cfg = ExportConfig(dataset=ds, output=str(out), workers={"num_workers": 1, "tasks_per_worker": 1})
    with pytest.raises(KeyboardInterrupt):
        run_export(cfg, map_shards=_interrupted_after(_mapper(cfg), 2))
    staging = [p for p in out.iterdir() if p.name.startswith(".staging-")]
    assert len(staging) == 1 and not (out / "train.rec").exists()  # nothing of the export in place
    done_before = {p.name: p.stat().st_mtime_ns for p in (staging[0] / "done").iterdir()}
    assert 2 <= len(done_before) < 4  # a third may have finished while the interrupt cancelled it
    result = export(ds, str(out), workers=2)
    assert (result.shards_skipped, result.shards_run) == (len(done_before), 4 - len(done_before))
    assert not staging[0].exists()
    run_export(ExportConfig(dataset=ds, output=str(tmp_path / "fresh")))  # one process, no interrupt
    assert tree_digest(out) == tree_digest(tmp_path / "fresh")


def test_a_part_lost_from_staging_is_redone(tmp_path):
    from uiface_ray.export.run import in_process, run_export

    ds, out = str(tmp_path / "ds"), tmp_path / "ex"
    make_dataset(ds)
    cfg = ExportConfig(dataset=ds, output=str(out), formats=("recordio",))
    with pytest.raises(KeyboardInterrupt):
        run_export(cfg, map_shards=_interrupted_after(in_process, 3))
    staging = next(out.glob(".staging-*"))
    part = staging / "parts" / "shard-00001.rec"
    part.write_bytes(part.read_bytes()[:-4])
    result = run_export(cfg)
    assert (result.shards_skipped, result.shards_run) == (2, 2)
    run_export(cfg.model_copy(update={"output": str(tmp_path / "fresh")}))
    assert tree_digest(out) == tree_digest(tmp_path / "fresh")


def test_bad_shard_found_by_a_worker_is_one_error_and_leaves_nothing(tmp_path, ray_local):
    ds, out = tmp_path / "ds", tmp_path / "ex"
    make_dataset(str(ds))
    man = read_manifest(str(ds))  # a shard replaced by other bytes of the same size: only its hash tells
    shard = ds / "shards" / man.shards[2].name
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="shard-00002.parquet: content hash"):
        export(str(ds), str(out))
    assert not out.exists() or list(out.iterdir()) == []


def test_export_on_ray_to_s3(s3_bucket, ray_local):
    ds, out = storage.join(s3_bucket, "ds"), storage.join(s3_bucket, "ex")
    images = make_dataset(ds)
    export(ds, out, formats=("recordio",), stitch_chunk_mb=1)
    want = manifest_labels(ds)
    with RecordIOReader(storage.join(out, "train.rec")) as reader:
        items = list(reader)
    assert [int(it.label) for it in items] == want
    assert sorted(it.image for it in items) == sorted(images.values())
    assert storage.find_files(out) == [".uiface-export.json", "property", "train.idx", "train.rec"]


def test_card_t0_quantiles_from_the_histogram_match_numpy():
    from uiface_ray.export.card import _t0_distribution

    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 100, 1001):
        t0 = rng.integers(200, 800, n)
        values, counts = np.unique(t0, return_counts=True)
        dist = _t0_distribution({int(v): int(c) for v, c in zip(values, counts)})
        for q in ("0.1", "0.5", "0.9"):
            assert dist["quantiles"][q] == float(np.quantile(t0, float(q)))
        assert dist["mean"] == float(t0.mean()) and (dist["min"], dist["max"]) == (t0.min(), t0.max())
