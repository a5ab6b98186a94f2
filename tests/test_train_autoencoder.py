"""The small autoencoder job, and latent-space diffusion training on its latents."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, VQModel

from train_tables import write_face_table
from uiface_ray.model.autoencoder import load_autoencoder
from uiface_ray.model.bundle import load_model
from uiface_ray.model.unet import ModelConfig
from uiface_ray.storage.fs import read_bytes
from uiface_ray.train.autoencoder import AutoencoderTrainConfig, train_autoencoder
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.loop import ema_model, run_training

ROOT = Path(__file__).resolve().parents[1]


def load_job(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table(lfw_dir, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("faces") / "faces.parquet"
    return write_face_table(str(path), lfw_dir, num_people=8, per_person=4)


def test_vq_job_on_s3_then_latent_diffusion(ray_local, s3_bucket, table, tmp_path, capsys):
    ae_url = f"{s3_bucket}/ae/vq"
    job = load_job("train_autoencoder")
    rc = job.main(
        [
            f"--table={table}",
            f"--output={ae_url}",
            "--kind=vq",
            "--image_size=16",
            "--block_out_channels=[16, 32]",
            "--norm_num_groups=8",
            "--num_vq_embeddings=64",
            "--steps=60",
            "--batch_size=16",
            "--lr=2e-3",
            "--log_every=20",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "[autoencoder] done: 60 steps" in out
    first, final = [float(x) for x in out.split("loss ")[-1].split(",")[0].split(" -> ")]
    assert final < 0.9 * first, out
    config = json.loads(read_bytes(ae_url + "/config.json"))
    assert config["_class_name"] == "VQModel" and config["scaling_factor"] != pytest.approx(0.18215)
    assert isinstance(load_autoencoder(ae_url), VQModel)

    cfg = TrainConfig.model_validate(
        dict(
            model=ModelConfig.tiny(space="latent", autoencoder=ae_url).model_dump(),
            data={"table": table},
            output=str(tmp_path / "latent-run"),
            max_steps=6,
            batch_size=8,
            checkpoint_every=6,
            log_every=3,
            grid={"num_identities": 2, "num_seeds": 2, "num_inference_steps": 3},
            optim={"lr": 1e-3},
        )
    )
    state = run_training(cfg)
    assert state.model.latent_shape() == (3, 8, 8)
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in state.metrics)
    saved = json.loads((tmp_path / "latent-run" / "latest.json").read_text())
    loaded = load_model(saved["model"])
    assert isinstance(loaded.autoencoder, VQModel) and loaded.info["space"] == "latent"
    expected = ema_model(state)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    emb = torch.nn.functional.normalize(torch.randn(2, 128, generator=torch.Generator().manual_seed(2)), dim=1)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        a = expected.unet(x, t, encoder_hidden_states=expected.context_encoder(emb)).sample
        b = loaded.unet(x, t, encoder_hidden_states=loaded.context_encoder(emb)).sample
        assert loaded.decode_latents(b).shape == (2, 3, 16, 16)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (tmp_path / "latent-run" / "checkpoints" / "step-00000006" / "samples.png").is_file()


def test_kl_autoencoder_trains_locally(table, tmp_path):
    cfg = AutoencoderTrainConfig(
        table=table,
        output=str(tmp_path / "kl"),
        kind="kl",
        image_size=16,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        latent_channels=4,
        steps=30,
        batch_size=8,
        lr=2e-3,
        log_every=10,
    )
    result = train_autoencoder(cfg, log=lambda line: None)
    assert result.final_loss < result.first_loss
    model = load_autoencoder(str(tmp_path / "kl"))
    assert isinstance(model, AutoencoderKL)
    assert model.config.scaling_factor == pytest.approx(result.scaling_factor)
