"""Exports of a synthetic dataset: image folders, insightface RecordIO, dataset card (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from uiface_ray import storage
from uiface_ray.data.recordio import RecordIOReader
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.run import run_export
from uiface_ray.synth.dataset import DatasetError, open_dataset
from uiface_ray.synth.manifest import Manifest, ShardRecord, write_manifest
from uiface_ray.synth.plan import plan_shards
from uiface_ray.synth.resume import expected_rows
from uiface_ray.synth.shard import ShardRows, decode_image, encode_image, encode_shard, sha256

N_ID, N_IMG = 5, 3
IDS = np.array([10, 11, 12, 20, 21])  # identity ids need not be 0..N-1


def make_dataset(url: str, fmt: str = "png", complete: bool = True) -> dict:
    """A dataset written with the synth core from known random images; returns {(id, index): pixels}."""
    plan = plan_shards(N_ID, 2, N_IMG)
    man = Manifest(
        {"model_hash": "abc", "seed": 7, "identities_sha256": "f00"},
        N_ID,
        N_IMG,
        len(plan),
        job_config={"identities": ""},
    )
    pixels = {}
    rng = np.random.default_rng(0)
    for spec in plan[: len(plan) if complete else 1]:
        ids, idx = expected_rows(spec, IDS)
        imgs = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in ids]
        pixels.update({(int(i), int(j)): im for i, j, im in zip(ids, idx, imgs)})
        rows = ShardRows(
            ids,
            idx,
            ids * 1000 + idx,
            [encode_image(im, fmt) for im in imgs],
            np.full(len(ids), 300 + spec.index),
            "uiface",
            "abc",
        )
        data = encode_shard(rows)
        storage.write_bytes_atomic(storage.join(url, "shards", spec.name), data)
        man.shards.append(ShardRecord(spec.name, spec.index, len(rows), sha256(data)))
    write_manifest(url, man)
    return pixels


@pytest.mark.parametrize("where", ["local", "s3"])
def test_export_all_formats(tmp_path, where, request):
    base = request.getfixturevalue("s3_bucket") if where == "s3" else str(tmp_path)
    ds, out = storage.join(base, "ds"), storage.join(base, "export")
    pixels = make_dataset(ds)
    storage.write_bytes_atomic(storage.join(ds, "metrics.json"), json.dumps({"lpips": 0.5}).encode())
    result = run_export(ExportConfig(dataset=ds, output=out))
    assert result.images == N_ID * N_IMG and result.identities == N_ID
    # folders: <label>/<index>.jpg for every image (the label is the identity's rank), decodable
    label = {int(identity): k for k, identity in enumerate(IDS)}
    for (identity, index), px in pixels.items():
        img = decode_image(storage.read_bytes(storage.join(out, "images", str(label[identity]), f"{index}.jpg")))
        assert img.shape == px.shape
    assert len(storage.list_files(storage.join(out, "images", "0"), ".jpg")) == N_IMG
    tsv = storage.read_bytes(storage.join(out, "labels.tsv")).decode().splitlines()
    assert tsv[0] == "label\tfolder\tidentity_id\timages" and tsv[1:] == [
        f"{k}\t{k}\t{i}\t{N_IMG}" for k, i in enumerate(IDS)
    ]
    # RecordIO: every record carries the rank of its identity as label, identity-major
    with RecordIOReader(storage.join(out, "train.rec")) as reader:
        items = list(reader)
    assert len(items) == N_ID * N_IMG
    assert [int(it.label) for it in items] == list(np.repeat(np.arange(N_ID), N_IMG))
    assert storage.read_bytes(storage.join(out, "property")).decode().strip() == f"{N_ID},16,16"
    # card: counts, hashes, t0 and metrics read back from the shards
    card = json.loads(storage.read_bytes(storage.join(out, "dataset_card.json")))
    assert card["counts"]["images"] == N_ID * N_IMG and card["counts"]["identities"] == N_ID
    assert card["model_hash"] == "abc" and card["seeds"]["unique"] == N_ID * N_IMG
    assert card["t0"]["histogram"] == {"300": 6, "301": 6, "302": 3}
    assert card["metrics"] == {"lpips": 0.5}
    assert "| lpips | 0.5 |" in storage.read_bytes(storage.join(out, "README.md")).decode()


def test_jpeg_shards_are_copied_unchanged(tmp_path):
    ds = str(tmp_path / "ds")
    make_dataset(ds, fmt="jpeg")
    run_export(ExportConfig(dataset=ds, output=str(tmp_path / "ex"), formats=("folders",)))
    first = next(open_dataset(ds).iter_shards())
    assert (tmp_path / "ex/images/0/0.jpg").read_bytes() == first.image[0]


def test_export_refuses_incomplete_or_corrupt(tmp_path):
    ds = str(tmp_path / "ds")
    make_dataset(ds, complete=False)
    with pytest.raises(DatasetError, match="incomplete: 1/3"):
        run_export(ExportConfig(dataset=ds, output=str(tmp_path / "ex")))
    ds2 = str(tmp_path / "ds2")
    make_dataset(ds2)
    shard = tmp_path / "ds2/shards/shard-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    with pytest.raises(DatasetError, match="shard-00001.parquet: content hash"):
        run_export(ExportConfig(dataset=ds2, output=str(tmp_path / "ex2"), formats=("card",)))
    assert not (tmp_path / "ex2" / "dataset_card.json").exists()


def _export_job():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("export_job", Path(__file__).parents[1] / "jobs/export.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize("case", ["truncated_recorded_size", "truncated_no_size", "missing_metrics", "bad_metrics"])
def test_export_bad_input_writes_nothing(tmp_path, capsys, case):
    """Issue 15 case 7: exit 2, one error line, and the output holds nothing of the export."""
    ds, out = tmp_path / "ds", tmp_path / "ex"
    make_dataset(str(ds))
    args = [f"--dataset={ds}", f"--output={out}"]
    if case == "truncated_recorded_size":  # a manifest with sizes (what synthesize writes): caught before writing
        from uiface_ray.synth.manifest import read_manifest

        man = read_manifest(str(ds))
        man.shards = [
            ShardRecord(r.name, r.index, r.rows, r.sha256, (ds / "shards" / r.name).stat().st_size) for r in man.shards
        ]
        write_manifest(str(ds), man)
        _truncate(ds / "shards" / "shard-00002.parquet")
        msg = "shard-00002.parquet: .* bytes, the manifest recorded"
    elif case == "truncated_no_size":  # an older manifest: caught while writing, the staging folder removed
        _truncate(ds / "shards" / "shard-00002.parquet")
        msg = "shard-00002.parquet"
    elif case == "missing_metrics":
        args.append(f"--metrics={tmp_path / 'nope.json'}")
        msg = "metrics file not found"
    else:
        (tmp_path / "m.json").write_text("{not json")
        args.append(f"--metrics={tmp_path / 'm.json'}")
        msg = r"metrics file .*m\.json: not valid JSON"
    rc = _export_job().main(args)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    import re

    assert re.search(msg, err), err
    assert not out.exists() or list(out.iterdir()) == []


def test_export_replaces_an_earlier_export(tmp_path):
    ds, out = str(tmp_path / "ds"), tmp_path / "ex"
    make_dataset(ds)
    run_export(ExportConfig(dataset=ds, output=str(out), formats=("folders", "recordio")))
    (out / "images" / "0" / "7.jpg").write_bytes(b"x")  # left by an earlier export with more images
    result = run_export(ExportConfig(dataset=ds, output=str(out), formats=("folders", "recordio")))
    assert not (out / "images" / "0" / "7.jpg").exists() and len(result.written) == 5
    names = [".uiface-export.json", "images", "labels.tsv", "property", "train.idx", "train.rec"]
    assert sorted(p.name for p in out.iterdir()) == names


def test_card_carries_licence_intended_use_and_generator_training_data(tmp_path):
    from tiny_assets import make_tiny_model
    from uiface_ray.export.card import build_card, card_markdown, generator_record
    from uiface_ray.model import load_model, save_model

    url = make_tiny_model(str(tmp_path / "model"))
    model = load_model(url)
    model.info["training_data"] = {
        "table": "faces.parquet",
        "source": "/data/lfw112/images",
        "identities": 298,
        "images": 4436,
        "rows_sha256": "ab" * 32,
    }
    save_model(model, url)
    gen = generator_record(url)
    assert gen["training_data"]["identities"] == 298 and gen["weights_hash"]
    assert generator_record(str(tmp_path / "gone"))["note"].startswith("model bundle not readable")
    ds = str(tmp_path / "ds")
    make_dataset(ds)
    card = build_card(open_dataset(ds), license="CC BY-NC 4.0", intended_use="Research only.", generator=gen)
    text = card_markdown(card)
    assert card["license"] == "CC BY-NC 4.0" and "## Intended use\n\nResearch only." in text
    assert "4436 real images of 298 identities from `/data/lfw112/images`" in text
