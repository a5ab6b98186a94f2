"""The ablation's own-faces source: held-out verification identities, a real row from the others."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from uiface_ray import storage


def _table(url: str, people: int = 12, per_person: int = 4, size: int = 24) -> None:
    """Person c: a flat colour of its own plus noise, so a mean-colour encoder tells people apart."""
    rng = np.random.default_rng(0)
    rows = {"image": [], "label": [], "identity": []}
    for c in range(people):
        colour = rng.integers(0, 256, 3)
        for _ in range(per_person):
            img = np.clip(colour + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            rows["image"].append(buf.getvalue())
            rows["label"].append(c)
            rows["identity"].append(f"p{c}")
    storage.write_table(url, rows)


class _MeanColour:
    dim, name, fingerprint = 3, "mean-colour", "0"

    def embed(self, images: np.ndarray) -> np.ndarray:
        e = images.reshape(len(images), -1, 3).mean(1).astype(np.float32) - 127.5
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_own_face_table_gives_disjoint_row_reference_and_pairs(tmp_path):
    from uiface_ray.paper.real_faces import held_out_pairs, real_faces
    from uiface_ray.paper.config import AblationConfig

    url = str(tmp_path / "faces.parquet")
    _table(url)
    cfg = AblationConfig(
        model="m",
        out="o",
        real_faces=url,
        num_identities=5,
        images_per_identity=3,
        real_min_images=3,
        real_verify_fraction=0.25,
        verify_max_pairs=40,
    )
    real = real_faces(cfg, resolution=None)
    train_people = set(real.train.identities)
    assert len(train_people) == 5 and len(real.train.labels) == 15
    assert sorted(set(real.train.labels.tolist())) == [0, 1, 2, 3, 4]
    acc, std = real.verify(_MeanColour())
    assert acc > 0.9 and "held-out pairs of faces.parquet (3 identities)" == real.verify_name
    labels = np.repeat(np.arange(12), 4)
    ia, ib, same = held_out_pairs(labels, 40, 0)
    assert len(ia) == 40 and same[:20].all() and not same[20:].any()
    assert (labels[ia[:20]] == labels[ib[:20]]).all() and (labels[ia[20:]] != labels[ib[20:]]).all()
    assert (ia != ib).all()
    # The held-out people (the pairs' only source) are never in the training row nor in the reference.
    held = {p for p in (f"p{c}" for c in range(12)) if p not in train_people and p not in real.reference.identities}
    assert len(held) == 3


def test_own_face_table_too_small_is_one_clear_error(tmp_path):
    from uiface_ray.paper.real_faces import real_faces
    from uiface_ray.paper.config import AblationConfig

    url = str(tmp_path / "faces.parquet")
    _table(url, people=4, per_person=2)
    cfg = AblationConfig(model="m", out="o", real_faces=url, real_verify_fraction=0.25)
    with pytest.raises(ValueError, match="holds out 1, at least 2 are needed"):
        real_faces(cfg, None)
    with pytest.raises(ValueError, match="real_min_images=5"):
        real_faces(cfg.model_copy(update={"real_verify_fraction": 0.5}), None)
