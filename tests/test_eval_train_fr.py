"""FR training with Ray Train: the loss goes down and the checkpoint loads as an encoder."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from uiface_ray import storage


def _face_table(url: str, classes: int = 4, per_class: int = 6, seed: int = 0) -> None:
    """Each class a fixed random 14x14 pattern upscaled to 112, plus per-image noise."""
    rng = np.random.default_rng(seed)
    rows = {"image": [], "label": [], "identity": [], "source": [], "width": [], "height": []}
    for c in range(classes):
        pattern = np.kron(rng.integers(0, 256, (14, 14, 3)), np.ones((8, 8, 1)))
        for i in range(per_class):
            img = np.clip(pattern + rng.normal(0, 20, pattern.shape), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            rows["image"].append(buf.getvalue())
            rows["label"].append(c)
            rows["identity"].append(f"person{c}")
            rows["source"].append(f"synthetic:{c}:{i}")
            rows["width"].append(112)
            rows["height"].append(112)
    storage.write_table(url, rows)


def test_fr_training_lowers_loss_and_checkpoint_is_an_encoder(ray_local, tmp_path):
    from uiface_ray.encoders import EncoderConfig, load_encoder
    from uiface_ray.evaluate.faceset import decode_images, read_faceset
    from uiface_ray.evaluate.settings import FRTrainConfig
    from uiface_ray.runtime.train_fr import fit_fr

    data = str(tmp_path / "faces.parquet")
    _face_table(data)
    cfg = FRTrainConfig(data=data, out=str(tmp_path / "fr"), depth=18, embedding_dim=64, epochs=4,
                        max_steps=4, batch_size=6, lr=0.05, num_workers=2, augment_p=0.2,
                        ray_storage=str(tmp_path / "ray"), lr_milestones=(0.75,))
    res = fit_fr(cfg)
    assert res.steps == 4 and len(res.losses) == 4 and res.num_classes == 4
    first, last = np.mean(res.losses[:2]), np.mean(res.losses[-2:])
    assert last < first, res.losses
    log = json.loads(storage.read_bytes(res.log_url).decode())
    assert log["losses"] == res.losses
    enc = load_encoder(EncoderConfig(kind="iresnet", path=res.backbone_url, depth=18, embedding_dim=64))
    faces = read_faceset(data)
    emb = enc.embed(decode_images(faces.images, 112))
    assert emb.shape == (24, 64)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert enc.fingerprint and enc.dim == 64


def test_plan_refuses_too_small_dataset(tmp_path):
    from uiface_ray.evaluate.settings import FRTrainConfig
    from uiface_ray.runtime.train_fr import _plan

    cfg = FRTrainConfig(data="x", out="y", batch_size=64, num_workers=2)
    with pytest.raises(ValueError, match="batch_size=64"):
        _plan(100, cfg)
    assert _plan(1000, cfg.model_copy(update={"max_steps": 5})) == (7, 5)


@pytest.mark.slow
def test_fr_training_resumes_from_its_ray_checkpoint(ray_local, tmp_path):
    from uiface_ray.evaluate.settings import FRTrainConfig
    from uiface_ray.runtime.train_fr import fit_fr

    data = str(tmp_path / "faces.parquet")
    _face_table(data, classes=3, per_class=4)
    cfg = FRTrainConfig(data=data, out=str(tmp_path / "fr"), depth=18, embedding_dim=32, epochs=10,
                        max_steps=2, batch_size=4, lr=0.05, num_workers=2, checkpoint_every=1,
                        ray_storage=str(tmp_path / "ray"), run_name="resume-me")
    first = fit_fr(cfg)
    second = fit_fr(cfg.model_copy(update={"max_steps": 4}))
    assert first.steps == 2 and second.steps == 4
    assert second.losses[:2] == first.losses  # steps 1-2 were restored, not rerun
