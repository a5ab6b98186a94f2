"""FR training with Ray Train: the loss goes down and the checkpoint loads as an encoder."""

from __future__ import annotations

import io
import json
import tempfile
import uuid
from pathlib import Path

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


def _run_temp(run_name: str) -> list:
    """This run's temporary folders in the system temporary directory (driver and workers share it;
    other processes on the machine may hold folders of their own runs there)."""
    from uiface_ray.runtime.train_fr import temp_prefix

    tmp = Path(tempfile.gettempdir())
    return sorted(p.name for kind in ("ray", "ckpt") for p in tmp.glob(temp_prefix(kind, run_name) + "*"))


def test_fr_on_ray_train_with_relative_paths_from_another_cwd(ray_local, tmp_path, monkeypatch, lfw_dir):
    """Relative paths given in a working directory that is not the repository root reach the Ray Train
    workers (which run elsewhere) resolved; the outputs land where asked; the storage secret resolved
    at the driver is not written to the log; no temporary folder is left behind."""
    from uiface_ray.encoders import EncoderConfig, load_encoder
    from uiface_ray.evaluate.faceset import decode_images, read_faceset
    from uiface_ray.fr.config import FRTrainConfig
    from uiface_ray.runtime.train_fr import fit_fr

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-log-me")
    (tmp_path / "lfw").symlink_to(lfw_dir)
    _face_table("faces.parquet")
    run_name = f"relative-{uuid.uuid4().hex[:8]}"
    cfg = FRTrainConfig(
        data="faces.parquet",
        out="fr",
        run_name=run_name,
        depth=18,
        width=0.25,
        input_size=32,
        embedding_dim=32,
        head="cosface",
        head_s=16,
        head_m=0.2,
        margin_warmup_epochs=1,
        lr_schedule="cosine",
        lr_warmup_epochs=0.5,
        ema_decay=0.9,
        augment_shift=0.1,
        epochs=2,
        batch_size=6,
        lr=0.05,
        num_workers=2,
        verify_pairs="lfw/pairsDevTest.txt",
        verify_images="lfw/images",
        verify_max_pairs=20,
        verify_every=2,
    )
    res = fit_fr(cfg)
    assert res.backbone_url == str(tmp_path / "fr" / "backbone.pth")
    assert res.steps == 4 and len(res.losses) == 4 and res.num_classes == 4
    assert [c.step for c in res.curve] == [2, 4] and all(0 <= c.accuracy <= 1 for c in res.curve)
    text = (tmp_path / "fr" / "train_log.json").read_text()
    assert "do-not-log-me" not in text
    log = json.loads(text)
    assert log["losses"] == res.losses and log["verify_curve"][-1]["step"] == 4
    assert log["encoder"]["input_size"] == 32 and log["encoder"]["weights"] == "weight average"
    assert Image.open(tmp_path / "fr" / "verify_curve.png").size == (640, 400)
    # The 32 px, quarter-width backbone loads as an encoder without being told its size or width.
    enc = load_encoder(EncoderConfig(kind="iresnet", path="fr/backbone.pth", depth=18, embedding_dim=32))
    assert enc.model.input_size == 32 and enc.model.conv1.out_channels == 16
    emb = enc.embed(decode_images(read_faceset("faces.parquet").images, 32))
    assert emb.shape == (24, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert _run_temp(run_name) == []


def _identification_accuracy(backbone, images: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest-neighbour identification on flip-fused features."""
    from uiface_ray.evaluate.pairs_verifier import PairsVerifier

    emb = PairsVerifier(images, np.zeros(0, int), np.zeros(0, int), np.zeros(0, bool), "train").embed(backbone)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return float((labels[sim.argmax(1)] == labels).mean())


def test_tiny_lfw_run_lowers_loss_and_learns_to_identify(lfw_dir, tmp_path):
    """One process, 8 LFW people x 10 faces at 32 px: the loss falls and the training-set
    identification accuracy of the saved backbone beats that of the same network at initialisation."""
    import torch

    from uiface_ray.encoders.iresnet import load_iresnet
    from uiface_ray.evaluate.faceset import decode_images, read_image_folder
    from uiface_ray.fr.loop import _build, fit_fr_local, plan_training
    from uiface_ray.fr.config import FRTrainConfig

    faces = read_image_folder(
        str(lfw_dir / "images"),
        str(lfw_dir / "peopleDevTrain.txt"),
        min_images=10,
        max_identities=8,
        max_per_identity=10,
    )
    cfg = FRTrainConfig(
        data="lfw",
        out=str(tmp_path / "fr"),
        runner="local",
        depth=18,
        width=0.25,
        input_size=32,
        embedding_dim=64,
        head="cosface",
        head_s=16,
        head_m=0.2,
        margin_warmup_epochs=2,
        lr_schedule="cosine",
        lr_warmup_epochs=1,
        epochs=10,
        batch_size=16,
        lr=0.1,
        augment_p=0.0,
        seed=3,
    )
    res = fit_fr_local(cfg, faces)
    assert res.steps == 10 * 5
    first, last = np.mean(res.losses[:10]), np.mean(res.losses[-10:])
    assert last < 0.5 * first, (first, last)
    images = decode_images(faces.images, 32)
    plan = plan_training(len(faces.labels), faces.num_classes, 112, cfg, 1)
    with torch.no_grad():
        before = _identification_accuracy(_build(cfg, plan, cfg.seed).backbone, images, faces.labels)
        trained, _ = load_iresnet(res.backbone_url, 18, 64)
        after = _identification_accuracy(trained, images, faces.labels)
    assert after >= before + 0.2, (before, after)


def test_plan_refuses_too_small_dataset():
    from uiface_ray.fr.loop import plan_training
    from uiface_ray.fr.config import FRTrainConfig

    cfg = FRTrainConfig(data="x", out="y", batch_size=64, num_workers=2)
    with pytest.raises(ValueError, match="batch_size=64"):
        plan_training(100, 10, 112, cfg, 2)
    with pytest.raises(ValueError, match="at least 2 identities"):
        plan_training(1000, 1, 112, cfg, 2)
    plan = plan_training(1000, 10, 112, cfg.model_copy(update={"max_steps": 5}), 2)
    assert (plan.steps_per_epoch, plan.total_steps, plan.input_size) == (7, 5, 112)
    assert plan_training(1000, 10, 40, cfg, 2).input_size == 32  # the data's side, down to a multiple of 16
    assert plan_training(1000, 10, 250, cfg, 2).input_size == 112
    assert plan_training(1000, 10, 40, cfg.model_copy(update={"input_size": 64}), 2).input_size == 64


def test_missing_verification_pairs_fail_at_the_driver(tmp_path):
    from uiface_ray.errors import InputError
    from uiface_ray.fr.config import FRTrainConfig
    from uiface_ray.runtime.train_fr import fit_fr

    data = str(tmp_path / "faces.parquet")
    _face_table(data)
    cfg = FRTrainConfig(
        data=data, out=str(tmp_path / "fr"), verify_pairs=str(tmp_path / "nope.txt"), verify_images=str(tmp_path)
    )
    with pytest.raises(InputError, match=r"verify_pairs: .*nope\.txt not found"):
        fit_fr(cfg)
    with pytest.raises(InputError, match="needs verify_images"):
        fit_fr(cfg.model_copy(update={"verify_images": None, "runner": "local"}))
    assert not (tmp_path / "fr").exists()


@pytest.mark.slow
def test_failed_fr_run_leaves_no_temporary_folder(ray_local, tmp_path):
    """A worker fails on an undecodable image: the error reaches the caller, nothing is written to out
    and the temporary Ray Train storage is removed."""
    from uiface_ray.fr.config import FRTrainConfig
    from uiface_ray.runtime.train_fr import fit_fr

    data = str(tmp_path / "faces.parquet")
    _face_table(data)
    table = storage.read_table(data).to_pydict()
    table["image"][-1] = b"not an image"
    storage.write_table(data, table)
    run_name = f"failing-{uuid.uuid4().hex[:8]}"
    cfg = FRTrainConfig(
        data=data,
        out=str(tmp_path / "fr"),
        run_name=run_name,
        depth=18,
        width=0.25,
        input_size=32,
        embedding_dim=16,
        epochs=1,
        batch_size=6,
        num_workers=2,
    )
    with pytest.raises(Exception, match="not a decodable image"):
        fit_fr(cfg)
    assert not (tmp_path / "fr" / "backbone.pth").exists()
    assert _run_temp(run_name) == []


@pytest.mark.slow
def test_fr_training_resumes_from_its_ray_checkpoint(ray_local, tmp_path, monkeypatch):
    """A rerun resumes from the Ray Train checkpoint; the storage secret handed to the workers in
    their config is written nowhere in Ray Train's storage."""
    from uiface_ray.fr.config import FRTrainConfig
    from uiface_ray.runtime.train_fr import fit_fr

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-store-me")

    data = str(tmp_path / "faces.parquet")
    _face_table(data, classes=3, per_class=4)
    cfg = FRTrainConfig(
        data=data,
        out=str(tmp_path / "fr"),
        depth=18,
        embedding_dim=32,
        epochs=10,
        max_steps=2,
        batch_size=4,
        lr=0.05,
        num_workers=2,
        checkpoint_every=1,
        ray_storage=str(tmp_path / "ray"),
        run_name="resume-me",
    )
    first = fit_fr(cfg)
    second = fit_fr(cfg.model_copy(update={"max_steps": 4}))
    assert first.steps == 2 and second.steps == 4
    assert second.losses[:2] == first.losses  # steps 1-2 were restored, not rerun
    stored = [p for p in (tmp_path / "ray").rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if b"do-not-store-me" in p.read_bytes()]


def test_resume_with_the_weight_average_is_exact(tmp_path):
    """The FR loop checkpointed at step 2 (through ``ctx.report``, serialised as the Ray Train worker
    does) and resumed from it (``ctx.restored``) to step 4 gives the losses and the averaged backbone
    of 4 straight steps, bit for bit (one process: the loop itself on the local stream, below Ray)."""
    import torch

    from uiface_ray.fr.config import FRTrainConfig
    from uiface_ray.fr.loop import prepare_data, run_fr_training
    from uiface_ray.fr.model import state_bytes
    from uiface_ray.optim.context import WorkerContext

    torch.set_num_threads(1)
    data_url = str(tmp_path / "faces.parquet")
    _face_table(data_url)
    cfg = FRTrainConfig(
        data=data_url,
        out="unused",
        depth=18,
        width=0.25,
        input_size=32,
        embedding_dim=32,
        ema_decay=0.9,
        batch_size=6,
        epochs=1,
        lr=0.05,
        augment_p=0.5,
        stream={"shuffle_window": 8, "piece_rows": 5},
    )
    data = prepare_data(cfg, data_url, 1)
    assert data.plan.total_steps == 4
    saved = []

    def keep(metrics: dict, state: dict | None = None) -> None:
        saved.append(state_bytes(state))

    quiet = lambda line: None  # noqa: E731
    batches = data.local_batches(cfg, 0)
    straight = run_fr_training(cfg, batches, data.plan, WorkerContext(report=keep, log=quiet), 1, None, 2)
    assert straight.steps == 4 and len(saved) == 2
    restored = torch.load(io.BytesIO(saved[0]), weights_only=True)
    assert restored["step"] == 2 and restored["ema"]["num_updates"] == 2
    resumed = run_fr_training(cfg, batches, data.plan, WorkerContext(log=quiet, restored=restored), 1, None, 2)
    assert resumed.losses == straight.losses
    assert list(resumed.backbone) == list(straight.backbone)
    assert all(torch.equal(resumed.backbone[k], v) for k, v in straight.backbone.items())
