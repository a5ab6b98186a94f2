"""Image folders that folder loaders number as train.rec does (issue 26 item 8): the ``datasets``
library's imagefolder loader reads an export of 12 identities (ids not in order) and every image's
label is its train.rec label."""

from __future__ import annotations

import numpy as np
import pytest

from uiface_ray import storage
from uiface_ray.data.recordio import RecordIOReader
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.run import run_export
from uiface_ray.synth.manifest import Manifest, ShardRecord, write_manifest
from uiface_ray.synth.plan import plan_shards
from uiface_ray.synth.resume import expected_rows
from uiface_ray.synth.shard import ShardRows, encode_image, encode_shard, sha256

IDS = np.array([11, 2, 30, 10, 1, 0, 7, 100, 5, 3, 20, 4])  # '0','1','10',... sorts apart from label order
N_IMG = 11  # image names 00..10


def make_dataset(url: str) -> None:
    plan = plan_shards(len(IDS), 5, N_IMG)
    man = Manifest({"model_hash": "abc", "seed": 1}, len(IDS), N_IMG, len(plan), job_config={"identities": ""})
    rng = np.random.default_rng(2)
    for spec in plan:
        ids, idx = expected_rows(spec, IDS)
        data = [encode_image(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "jpeg") for _ in ids]
        blob = encode_shard(ShardRows(ids, idx, ids * 100 + idx, data, np.full(len(ids), 300), "uiface", "abc"))
        storage.write_bytes_atomic(storage.join(url, "shards", spec.name), blob)
        man.shards.append(ShardRecord(spec.name, spec.index, len(ids), sha256(blob)))
    write_manifest(url, man)


def test_imagefolder_loader_labels_match_the_rec_labels(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    ds, out = str(tmp_path / "ds"), tmp_path / "ex"
    make_dataset(ds)
    run_export(ExportConfig(dataset=ds, output=str(out), formats=("folders", "recordio")))
    with RecordIOReader(str(out / "train.rec")) as reader:
        rec_label = {item.image: int(item.label) for item in reader}  # JPEG shards: copied unchanged
    assert sorted(set(rec_label.values())) == list(range(len(IDS)))
    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(out / "images"), split="train", cache_dir=str(tmp_path / "hf")
    ).cast_column("image", datasets.Image(decode=False))
    assert len(loaded) == len(IDS) * N_IMG == len(rec_label)
    for example in loaded:
        with open(example["image"]["path"], "rb") as fh:
            assert example["label"] == rec_label[fh.read()], example["image"]["path"]
    # labels.tsv: folder k holds identity IDS[k] (the table's order), as train.rec's label k does
    rows = [line.split("\t") for line in (out / "labels.tsv").read_text().splitlines()[1:]]
    assert [(int(r[0]), r[1], int(r[2])) for r in rows] == [(k, f"{k:02d}", int(i)) for k, i in enumerate(IDS)]
    assert sorted(p.name for p in (out / "images" / "03").iterdir()) == [f"{i:02d}.jpg" for i in range(N_IMG)]
