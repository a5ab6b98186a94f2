"""Small face tables built from real LFW images for the training tests (schema of docs/ARCHITECTURE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from uiface_ray.storage.parquet import write_table


def lfw_people(lfw_dir: Path, num_people: int, min_images: int) -> list[tuple[str, list[Path]]]:
    """The first ``num_people`` people (sorted by name) with at least ``min_images`` images."""
    out = []
    for person in sorted((lfw_dir / "images").iterdir()):
        files = sorted(person.glob("*.jpg"))
        if len(files) >= min_images:
            out.append((person.name, files))
        if len(out) == num_people:
            break
    return out


def face_table(
    lfw_dir: Path, num_people: int = 6, per_person: int = 4, dim: int = 128, seed: int = 0, embedding: str = "ok"
) -> pa.Table:
    """Face table with one random unit direction per identity plus small per-image noise.

    ``embedding``: 'ok', 'missing' (no column), 'nan' (one NaN row).
    """
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("image", "label", "identity", "source", "width", "height")}
    embs = []
    for label, (name, files) in enumerate(lfw_people(lfw_dir, num_people, per_person)):
        centre = rng.standard_normal(dim)
        for f in files[:per_person]:
            rows["image"].append(f.read_bytes())
            rows["label"].append(label)
            rows["identity"].append(name)
            rows["source"].append(str(f.relative_to(lfw_dir)))
            rows["width"].append(112)
            rows["height"].append(112)
            e = centre / np.linalg.norm(centre) + 0.2 * rng.standard_normal(dim) / np.sqrt(dim)
            embs.append((e / np.linalg.norm(e)).astype(np.float32))
    if embedding == "nan":
        embs[1][3] = np.nan
    columns = {
        "image": pa.array(rows["image"], pa.binary()),
        "label": pa.array(rows["label"], pa.int64()),
        "identity": pa.array(rows["identity"], pa.string()),
        "source": pa.array(rows["source"], pa.string()),
        "width": pa.array(rows["width"], pa.int32()),
        "height": pa.array(rows["height"], pa.int32()),
    }
    meta = None
    if embedding != "missing":
        columns["embedding"] = pa.array([e.tolist() for e in embs], pa.list_(pa.float32()))
        meta = {"uiface.encoder": json.dumps({"kind": "random-test", "dim": dim, "hash": "t0"})}
    table = pa.table(columns)
    if meta:
        table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in meta.items()})
    return table


def write_face_table(url: str, lfw_dir: Path, **kwargs) -> str:
    write_table(url, face_table(lfw_dir, **kwargs))
    return url


def write_face_table_folder(folder: Path, lfw_dir: Path, files: int = 2, row_group_rows: int = 4, **kwargs) -> str:
    """The table of :func:`face_table` split into ``files`` Parquet files of row groups of ``row_group_rows``."""
    import pyarrow.parquet as pq

    table = face_table(lfw_dir, **kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-table.num_rows // files)
    for i in range(files):
        pq.write_table(table.slice(i * per, per), folder / f"part-{i:03d}.parquet", row_group_size=row_group_rows)
    return str(folder)
