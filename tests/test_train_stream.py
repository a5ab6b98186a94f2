"""Diffusion training's data path (issue 32): the driver's scan selects identities as before and reads
no images but the grid's; the stream yields each kept row once an epoch, nothing else."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from train_tables import face_table
from uiface_ray.data.images import decode_images
from uiface_ray.model.config import ModelConfig
from uiface_ray.storage.parquet import write_table
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.stream import local_batches, read_spec, scan_table


def uneven_table(lfw_dir, path) -> pa.Table:
    """Labels 0..5 with 1, 2, 3, 4, 4, 2 images."""
    table = face_table(lfw_dir, num_people=6, per_person=4)
    labels = np.asarray(table.column("label").to_pylist())
    keep = np.concatenate([np.flatnonzero(labels == lab)[:n] for lab, n in enumerate([1, 2, 3, 4, 4, 2])])
    table = table.take(pa.array(np.sort(keep)))
    write_table(str(path), table)
    return table


def config(table: str, **data) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": ModelConfig.tiny().model_dump(mode="json"),
            "data": {"table": table, **data},
            "output": "unused",
            "grid": {"num_identities": 2},
            "batch_size": 2,
            "max_steps": 100,
        }
    )


def test_selection_grid_and_one_epoch_of_the_stream(lfw_dir, tmp_path):
    src = uneven_table(lfw_dir, tmp_path / "faces.parquet")
    cfg = config(str(tmp_path / "faces.parquet"), min_images_per_identity=2, max_identities=3)
    data = scan_table(cfg)
    # at least 2 images: labels 1..5; the 3 with the most: 3 and 4 (4 each), then 2 (3) before 1 and 5 (2)
    assert data.classes.tolist() == [2, 3, 4] and data.counts.tolist() == [3, 4, 4]
    assert data.num_rows == 11 and data.training_record()["images"] == 11
    assert data.encoder_info == {"kind": "random-test", "dim": 128, "fingerprint": "t0"}
    labels = np.asarray(src.column("label").to_pylist())
    first = [int(np.flatnonzero(labels == lab)[0]) for lab in (3, 4)]  # the grid: most images, then label
    images = src.column("image").to_pylist()
    np.testing.assert_array_equal(data.grid_images, decode_images([images[i] for i in first], 16))
    np.testing.assert_array_equal(data.grid_embeddings, np.stack([src.column("embedding")[i].as_py() for i in first]))
    data = read_spec(cfg, data, 1)
    stream = local_batches(cfg, data)(0)
    epoch = [next(stream) for _ in range(11 // 2)]  # 5 steps of 2: the epoch's 10 rows (one left over)
    stream.close()
    rows = np.concatenate([b["row"] for b in epoch])
    seen = data.classes[np.concatenate([b["label"] for b in epoch])]
    assert len(set(rows.tolist())) == 10 and set(seen.tolist()) <= {2, 3, 4}
    kept = np.flatnonzero(np.isin(labels, [2, 3, 4]))  # source row ids number the kept rows in file order
    embeddings = np.stack([src.column("embedding")[int(kept[r])].as_py() for r in rows])
    np.testing.assert_array_equal(np.concatenate([b["embedding"] for b in epoch]), embeddings)
    assert epoch[0]["image"].shape == (2, 16, 16, 3) and epoch[0]["image"].dtype == np.uint8


def test_the_rows_hash_follows_the_files_and_the_selection(lfw_dir, tmp_path):
    uneven_table(lfw_dir, tmp_path / "faces.parquet")
    table = str(tmp_path / "faces.parquet")
    a = scan_table(config(table)).rows_sha256
    assert scan_table(config(table)).rows_sha256 == a
    assert scan_table(config(table, min_images_per_identity=2)).rows_sha256 != a
    write_table(table, face_table(lfw_dir, num_people=6, per_person=4))  # another table at the same path
    assert scan_table(config(table)).rows_sha256 != a
