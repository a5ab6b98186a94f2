"""What the benchmarks' ``--quick`` modes build for themselves: tiny inputs of the real formats, so a
quick run needs no trained model and no shared data, and the way a quick run says it cannot run here.

A benchmark that needs the shared LFW faces (or dlib's model files) and does not find them prints
``skipped: <reason>`` and exits with :data:`SKIP` (77, the automake convention);
``tests/test_benchmarks.py`` turns that into a skip, or a failure under ``CI=true``.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SKIP = 77


def skip(reason: str) -> None:
    """End a benchmark that cannot run on this machine (see the module docstring)."""
    print(f"skipped: {reason}", flush=True)
    raise SystemExit(SKIP)


def lfw_dir(given: str | None = None) -> Path | None:
    """The lfw112 folder (``given``, ``UIFACE_LFW_DIR``, else ../shared/data/lfw112), None when absent."""
    path = Path(given or os.environ.get("UIFACE_LFW_DIR", ROOT.parent / "shared" / "data" / "lfw112"))
    return path if (path / "images").is_dir() else None


def random_face_table(url: str, num_people: int = 4, per_person: int = 4, size: int = 32, dim: int = 128) -> str:
    """A face table (docs/ARCHITECTURE.md's schema) of random JPEG images, one random unit direction
    per identity plus noise as embeddings (seeded); returns ``url``."""
    import pyarrow as pa
    from PIL import Image

    from uiface_ray.storage.parquet import write_table

    rng = np.random.default_rng(0)
    images, labels, embeddings = [], [], []
    for label in range(num_people):
        centre = rng.standard_normal(dim)
        for _ in range(per_person):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
            images.append(buf.getvalue())
            labels.append(label)
            e = centre / np.linalg.norm(centre) + 0.2 * rng.standard_normal(dim) / np.sqrt(dim)
            embeddings.append((e / np.linalg.norm(e)).astype(np.float32).tolist())
    n = len(images)
    table = pa.table(
        {
            "image": pa.array(images, pa.binary()),
            "label": pa.array(labels, pa.int64()),
            "identity": pa.array([f"person{label}" for label in labels], pa.string()),
            "source": pa.array([f"random/{i}.jpg" for i in range(n)], pa.string()),
            "width": pa.array([size] * n, pa.int32()),
            "height": pa.array([size] * n, pa.int32()),
            "embedding": pa.array(embeddings, pa.list_(pa.float32())),
        }
    )
    meta = {b"uiface.encoder": json.dumps({"kind": "random-test", "dim": dim, "hash": "quick"}).encode()}
    write_table(url, table.replace_schema_metadata(meta))
    return url


def tiny_model(url: str, image_size: int = 16) -> str:
    """A freshly initialised tiny generator (the tests' 16x16 model) saved at ``url``."""
    from tiny_assets import make_tiny_model

    if image_size != 16:
        raise ValueError("the tiny model is 16x16")
    return make_tiny_model(url)
