"""FR training on the stream, through real Ray: Ray Data gives each rank the rows the plan fixes (the
same as the local runner), a run stopped at step k and resumed equals one that never stopped (1 and 2
workers), a lost training worker or loader process changes nothing, a damaged table met mid-epoch is
one error line naming it, and no worker holds the dataset."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tiny_assets import descendants
from PIL import Image

from uiface_ray import storage

ROOT = Path(__file__).resolve().parents[1]


def _table(url: str, classes: int = 4, per_class: int = 12, side: int = 32, seed: int = 0) -> None:
    """Each class a fixed random pattern plus per-image noise; written in row groups of 10 rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    rows = {"image": [], "label": []}
    for c in range(classes):
        pattern = np.kron(rng.integers(0, 256, (side // 8, side // 8, 3)), np.ones((8, 8, 1)))
        for _ in range(per_class):
            buf = io.BytesIO()
            Image.fromarray(np.clip(pattern + rng.normal(0, 20, pattern.shape), 0, 255).astype(np.uint8)).save(
                buf, format="PNG"
            )
            rows["image"].append(buf.getvalue())
            rows["label"].append(c)
    order = rng.permutation(len(rows["label"]))
    table = pa.table({k: [v[i] for i in order] for k, v in rows.items()})
    pq.write_table(table, url, row_group_size=10)


def _cfg(data: str, out: str, **kw):
    from uiface_ray.fr.config import FRTrainConfig

    base = dict(
        data=data,
        out=out,
        depth=18,
        width=0.25,
        input_size=32,
        embedding_dim=16,
        epochs=50,
        max_steps=6,
        batch_size=4,
        lr=0.05,
        lr_schedule="constant",  # the stopped run's schedule equals the full run's
        ema_decay=0.9,
        augment_p=0.5,
        num_workers=2,
        checkpoint_every=2,
        stream={"shuffle_window": 8, "piece_rows": 5, "prefetch_batches": 2},
        run_name=f"stream-{uuid.uuid4().hex[:8]}",
    )
    base.update(kw)
    return FRTrainConfig(**base)


def _weights(url: str) -> dict:
    import torch

    return torch.load(url, map_location="cpu", weights_only=True)


def _same(a, b) -> bool:
    import torch

    wa, wb = _weights(a.backbone_url), _weights(b.backbone_url)
    return a.losses == b.losses and list(wa) == list(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_ray_data_gives_each_rank_the_rows_of_the_local_stream(ray_local, tmp_path):
    """The per-rank Ray Data datasets (what the Ray Train workers iterate) yield, batch for batch, the
    local runner's rows, labels and decoded images, from step 0 and from a resumed step."""
    from uiface_ray.data.stream import make_plan
    from uiface_ray.config import StreamConfig
    from uiface_ray.data.stream_read import DecodeImages, ReadSpec, iter_local
    from uiface_ray.data.stream_source import open_source, parquet_files
    from uiface_ray.runtime import ingest

    data = str(tmp_path / "faces.parquet")
    _table(data)
    src = open_source(data, parquet_files(data), "label", piece_rows=5)
    ingest.quiet_ray_data()
    resources = ingest.loader_resources(StreamConfig(), 2.0)
    assert resources["num_cpus"] == 0.0  # ray_local has 2 CPUs, both for the 2 training workers
    for world, rank, start in ((2, 1, 3),):
        plan = make_plan(src, 11, 8, 4, world)
        spec = ReadSpec.of(plan, src, None)
        stop = start + plan.steps_per_epoch + 2  # across an epoch boundary
        got = list(ingest.iter_batches(ingest.rank_dataset(spec, rank, start, stop, DecodeImages(32), resources), 4, 2))
        want = list(iter_local(spec, rank, start, stop, DecodeImages(32), 2))
        assert len(got) == len(want) == stop - start
        for g, w in zip(got, want):
            assert np.array_equal(g["row"], w["row"]) and np.array_equal(g["label"], w["label"])
            assert np.array_equal(g["image"], w["image"])


def test_a_stream_of_one_unit_starts_no_more_loader_tasks_than_it_has_units(ray_local, tmp_path):
    """A short run reads one unit: Ray Data is asked for one loader task, not ``loader_concurrency``
    (more than its inputs, which Ray Data reports with a UserWarning on the worker's stderr)."""
    import warnings

    from uiface_ray.config import StreamConfig
    from uiface_ray.data.stream import make_plan
    from uiface_ray.data.stream_read import DecodeImages, ReadSpec
    from uiface_ray.data.stream_source import open_source, parquet_files
    from uiface_ray.runtime import ingest

    data = str(tmp_path / "faces.parquet")
    _table(data)
    src = open_source(data, parquet_files(data), "label", piece_rows=5)
    ingest.quiet_ray_data()
    resources = ingest.loader_resources(StreamConfig(loader_concurrency=2), 2.0)
    spec = ReadSpec.of(make_plan(src, 11, 8, 4, 1), src, None)
    assert len(list(spec.plan.units(0, 0, 1))) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(ingest.iter_batches(ingest.rank_dataset(spec, 0, 0, 1, DecodeImages(32), resources), 4, 2))
    assert len(got) == 1
    told = [str(w.message) for w in caught if "concurrent tasks" in str(w.message)]
    assert not told, told


def test_the_local_runner_never_holds_the_dataset(tmp_path, monkeypatch):
    """Images decoded by a 3-step local run on 240 rows: the batches trained on and the few prefetched,
    not the dataset (the whole-dataset reader decoded all 240 before step 1)."""
    from uiface_ray.data import images
    from uiface_ray.fr.loop import fit_fr_local
    from uiface_ray.storage import row_groups

    data = str(tmp_path / "faces.parquet")
    _table(data, classes=8, per_class=30)
    decoded, read = [], []
    open_rgb, read_rows = images._open_rgb, row_groups.read_rows
    monkeypatch.setattr(images, "_open_rgb", lambda *a: decoded.append(1) or open_rgb(*a))

    def counting_read(url, g, start, stop, *a, **kw):
        read.append(stop - start)
        return read_rows(url, g, start, stop, *a, **kw)

    monkeypatch.setattr(row_groups, "read_rows", counting_read)
    monkeypatch.setattr("uiface_ray.data.stream_read.read_rows", counting_read)
    cfg = _cfg(data, str(tmp_path / "fr"), runner="local", max_steps=3)
    res = fit_fr_local(cfg)
    assert res.steps == 3 and res.num_images == 240
    prefetch = cfg.stream.prefetch_batches
    assert len(decoded) <= 1 + (3 + prefetch + 2) * cfg.batch_size, len(decoded)
    assert max(read) <= cfg.stream.piece_rows and sum(read) < 240 // 2, read


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_fr_stopped_at_step_k_and_resumed_equals_the_uninterrupted_run(ray_local, tmp_path, workers):
    """Through Ray Train: 6 straight steps vs 2 steps, then a rerun (same run_name and ray_storage) to 6:
    the same losses and, bit for bit, the same weights (the stream resumes at step 2 of the plan)."""
    from uiface_ray.runtime.train_fr import fit_fr

    data = str(tmp_path / "faces.parquet")
    _table(data)
    straight = fit_fr(_cfg(data, str(tmp_path / "a"), num_workers=workers, ray_storage=str(tmp_path / "ra")))
    cfg = _cfg(data, str(tmp_path / "b"), num_workers=workers, ray_storage=str(tmp_path / "rb"))
    first = fit_fr(cfg.model_copy(update={"max_steps": 2}))
    resumed = fit_fr(cfg)
    assert first.steps == 2 and resumed.steps == straight.steps == 6
    assert resumed.losses[:2] == first.losses
    assert _same(straight, resumed)
    # the local runner trains on the same stream as one Ray Train worker: the same weights
    if workers == 1:
        local = fit_fr(_cfg(data, str(tmp_path / "c"), runner="local"))
        assert _same(straight, local)


def _kill_during(run, cfg, match: str, when) -> tuple:
    """Run ``run(cfg)`` in a thread; once ``when()`` holds, SIGKILL the first process of this test's Ray
    whose command line contains ``match``; returns (result, killed pid or None, whether it was mid-run)."""
    box, killed, mid_run = {}, None, False
    thread = threading.Thread(target=lambda: box.update(res=run(cfg)) if True else None, daemon=True)
    thread.start()
    deadline = time.time() + 600
    while thread.is_alive() and killed is None and time.time() < deadline:
        if when():
            for pid, cmd in descendants(os.getpid()):
                if match in cmd:
                    os.kill(pid, signal.SIGKILL)
                    killed, mid_run = pid, thread.is_alive()
                    break
        time.sleep(0.01)
    thread.join(timeout=600)
    return box.get("res"), killed, mid_run


@pytest.mark.slow
def test_a_training_worker_killed_mid_epoch_resumes_exactly(ray_local, tmp_path):
    """kill -9 of a Ray Train worker after its step-2 checkpoint: Ray Train restarts the group
    (max_failures=1), the streams restart at step 2, and the weights equal an uninterrupted run's."""
    from uiface_ray.runtime.train_fr import fit_fr

    data = str(tmp_path / "faces.parquet")
    _table(data)
    straight = fit_fr(_cfg(data, str(tmp_path / "a"), ray_storage=str(tmp_path / "ra"), max_steps=8))
    cfg = _cfg(data, str(tmp_path / "b"), ray_storage=str(tmp_path / "rb"), max_steps=8, max_failures=1)
    checkpoint = tmp_path / "rb" / cfg.run_name / "step-000000002"
    res, killed, mid_run = _kill_during(fit_fr, cfg, "RayTrainWorker", checkpoint.exists)
    assert killed and mid_run, "no training worker was killed while the run was going"
    assert not (tmp_path / "rb" / cfg.run_name / "step-000000008").exists() or res is not None
    assert res is not None and res.steps == 8 and _same(straight, res)


@pytest.mark.slow
def test_a_lost_loader_process_is_retried_and_changes_nothing(ray_local, tmp_path):
    """kill -9 of a process running a Ray Data loader task (read + decode): Ray Data runs the task again
    and the run finishes with the weights of an undisturbed run."""
    from uiface_ray.runtime.train_fr import fit_fr

    data = str(tmp_path / "faces.parquet")
    _table(data, classes=8, per_class=30, side=112)
    kw = dict(max_steps=10, input_size=32, stream={"shuffle_window": 4, "piece_rows": 4, "prefetch_batches": 1})
    straight = fit_fr(_cfg(data, str(tmp_path / "a"), ray_storage=str(tmp_path / "ra"), **kw))
    cfg = _cfg(data, str(tmp_path / "b"), ray_storage=str(tmp_path / "rb"), **kw)
    res, killed, mid_run = _kill_during(fit_fr, cfg, "MapBatches(_read_units)", lambda: True)
    assert killed and mid_run, "no loader task was caught running"
    assert res is not None and res.steps == 10 and _same(straight, res)


@pytest.mark.slow
def test_a_damaged_table_met_mid_epoch_is_one_error_line_naming_it(tmp_path):
    """The job, as a user runs it (2 Ray Train workers): the footer and labels of part-1 read well, so
    the run starts; an image page of it does not: one error: line naming the file, exit 2."""
    import pyarrow.parquet as pq

    folder = tmp_path / "faces"
    folder.mkdir()
    _table(str(folder / "part-0.parquet"), seed=0)
    _table(str(folder / "part-1.parquet"), seed=1)
    path = folder / "part-1.parquet"
    meta = pq.ParquetFile(path).metadata.row_group(2).column(0)  # images of its third row group
    data = bytearray(path.read_bytes())
    at = (meta.dictionary_page_offset if meta.has_dictionary_page else meta.data_page_offset) + 100
    data[at : at + 200] = bytes(range(200))
    path.write_bytes(bytes(data))
    args = [
        sys.executable,
        str(ROOT / "jobs" / "train_fr.py"),
        f"--data={folder}",
        f"--out={tmp_path / 'fr'}",
        "--depth=18",
        "--width=0.25",
        "--input_size=32",
        "--embedding_dim=16",
        "--batch_size=4",
        "--epochs=1",
        "--num_workers=2",
        "--stream.shuffle_window=8",
        "--ray.num_cpus=2",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(errors) == 1 and "part-1.parquet" in errors[0] and "row group 2" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "fr" / "backbone.pth").exists()
    assert storage.exists(str(path))


def test_the_loaders_augmentation_does_not_depend_on_how_rows_are_batched(tmp_path):
    """Each row is augmented from its own generator (seed, epoch, row): one batch of 8 rows or two of 4
    (a loader task's cut) give the same images; another epoch gives other choices."""
    from uiface_ray.fr.loop import prepare_data

    data = str(tmp_path / "faces.parquet")
    _table(data)
    cfg = _cfg(data, "unused", runner="local", augment_p=1.0, augment_shift=0.1)
    fr = prepare_data(cfg, data, 1)
    rows = next(fr.local_batches(cfg.model_copy(update={"batch_size": 8}), 0)(0))
    assert rows["image"].dtype == np.float32 and rows["image"].shape == (4, 3, 32, 32)
    from uiface_ray.data.stream_read import read_unit

    unit = next(fr.spec.plan.units(0, 0, 2))
    encoded = {k: v[:8] for k, v in read_unit(fr.spec, unit).items()}
    whole = fr.transform()(encoded)["image"]
    halves = np.concatenate([fr.transform()({k: v[i : i + 4] for k, v in encoded.items()})["image"] for i in (0, 4)])
    assert np.array_equal(whole, halves)
    other = fr.transform()({**encoded, "epoch": encoded["epoch"] + 1})["image"]
    assert not np.array_equal(whole, other)
