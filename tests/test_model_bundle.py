"""The model contract: context encoder with c_e, tiny UNet, save/load (local and s3://), hash."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
import torch
from diffusers import VQModel
from pydantic import Field

from uiface_ray.config import Config
from uiface_ray.runtime.job import run_job
from uiface_ray.model import (
    IdentityContextEncoder,
    ModelConfig,
    ModelLoadError,
    build_model,
    load_model,
    model_hash,
    save_model,
)
from uiface_ray.storage.fs import remove


def unit_embeddings(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)


def noise_prediction(model, seed: int = 3) -> torch.Tensor:
    c, h, w = model.latent_shape()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, h, w, generator=g)
    tokens = torch.cat(
        [model.context_encoder(unit_embeddings(1, model.embedding_dim, seed)), model.context_encoder.empty_tokens(1)]
    )
    with torch.no_grad():
        return model.unet(x, torch.tensor([17, 640]), encoder_hidden_states=tokens).sample


def tiny_vq(seed: int = 0) -> VQModel:
    torch.manual_seed(seed)
    return VQModel(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        norm_num_groups=8,
        latent_channels=3,
        num_vq_embeddings=32,
        sample_size=16,
        scaling_factor=0.7,
    ).eval()


def test_context_encoder_shapes_and_empty_context():
    enc = IdentityContextEncoder(embedding_dim=12, num_tokens=5, cross_attention_dim=7, hidden_dim=9)
    tokens = enc(unit_embeddings(3, 12, 0))
    assert tokens.shape == (3, 5, 7)
    assert enc.empty_context.shape == (12,)
    assert isinstance(enc.empty_context, torch.nn.Parameter)
    # c_e goes through the same projection as an identity embedding.
    expected = enc(enc.empty_context.detach().unsqueeze(0).repeat(4, 1))
    torch.testing.assert_close(enc.empty_tokens(4), expected)
    # tokens differ from one another (N > 1 carries information through the softmax)
    assert not torch.allclose(tokens[0, 0], tokens[0, 1])
    # gradients reach c_e
    enc.empty_tokens(2).sum().backward()
    assert enc.empty_context.grad is not None and enc.empty_context.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        enc(torch.zeros(2, 13))


def test_tiny_unet_has_self_and_cross_attention():
    model = build_model(ModelConfig.tiny())
    kinds = {name.split(".")[-2] for name in model.unet.attn_processors}
    assert kinds == {"attn1", "attn2"}
    assert model.latent_shape() == (3, 16, 16)
    out = noise_prediction(model)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    assert model.scheduler_config["num_train_timesteps"] == 1000
    assert model.scheduler_config["beta_schedule"] == "linear"
    assert model.scheduler_config["prediction_type"] == "epsilon"
    assert model.scheduler_config["clip_sample"] is True  # pixel space: x0 clipped to [-1, 1]


def test_build_is_seeded():
    cfg = ModelConfig.tiny()
    assert model_hash(build_model(cfg, seed=1)) == model_hash(build_model(cfg, seed=1))
    assert model_hash(build_model(cfg, seed=1)) != model_hash(build_model(cfg, seed=2))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="autoencoder"):
        ModelConfig.tiny(space="latent")
    with pytest.raises(ValueError, match="block_out_channels"):
        ModelConfig.tiny(block_out_channels=(32, 60))
    with pytest.raises(ValueError, match="does not match model.embedding_dim"):
        build_model(ModelConfig.tiny(), encoder_info={"kind": "iresnet", "dim": 512, "fingerprint": "x"})


@pytest.mark.parametrize("where", ["local", "s3"])
def test_save_load_roundtrip(where, tmp_path, request):
    url = str(tmp_path / "model") if where == "local" else request.getfixturevalue("s3_bucket") + "/models/m1"
    info = {"kind": "dlib", "dim": 128, "fingerprint": "abc123"}
    model = build_model(ModelConfig.tiny(), encoder_info=info, seed=5)
    with torch.no_grad():
        model.context_encoder.empty_context.add_(0.25)  # a trained-looking c_e must survive the round trip
    save_model(model, url)
    loaded = load_model(url)
    torch.testing.assert_close(noise_prediction(loaded), noise_prediction(model), rtol=0, atol=0)
    torch.testing.assert_close(loaded.context_encoder.empty_context, model.context_encoder.empty_context)
    assert loaded.info["encoder"] == info
    assert loaded.info["image_size"] == 16
    assert loaded.scheduler_config == model.scheduler_config
    assert model_hash(url) == model_hash(model)
    assert not loaded.unet.training


def test_load_errors_name_the_path(tmp_path):
    missing = str(tmp_path / "nothing-here")
    with pytest.raises(ModelLoadError, match="nothing-here"):
        load_model(missing)
    url = str(tmp_path / "partial")
    save_model(build_model(ModelConfig.tiny()), url)
    remove(url + "/uiface.json")
    with pytest.raises(ModelLoadError, match=r"partial.*uiface.json"):
        load_model(url)
    url2 = str(tmp_path / "no-unet")
    save_model(build_model(ModelConfig.tiny()), url2)
    remove(url2 + "/unet", recursive=True)
    with pytest.raises(ModelLoadError, match=r"no-unet.*unet"):
        load_model(url2)


def test_latent_model_roundtrip(tmp_path):
    vq = tiny_vq()
    ae_url = str(tmp_path / "vq")
    vq.save_pretrained(ae_url)
    cfg = ModelConfig.tiny(space="latent", autoencoder=ae_url)
    model = build_model(cfg)
    assert model.latent_shape() == (3, 8, 8)
    assert model.latent_scaling_factor == pytest.approx(0.7)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = model.encode_images(images)
        assert z.shape == (2, 3, 8, 8)
        assert model.decode_latents(z).shape == (2, 3, 16, 16)
    save_model(model, str(tmp_path / "m"))
    marker = json.loads((tmp_path / "m" / "uiface.json").read_text())
    assert marker["autoencoder_class"] == "VQModel"
    loaded = load_model(str(tmp_path / "m"))
    assert isinstance(loaded.autoencoder, VQModel)
    torch.testing.assert_close(noise_prediction(loaded), noise_prediction(model), rtol=0, atol=0)
    assert model_hash(loaded) == model_hash(model)


# --------------------------------------------------------------------------------------------
# Damaged folders (issue 15, case 4): one `error:` line naming the file, exit 2, no traceback


class _LoadConfig(Config):
    model: str = Field(..., description="model folder")


def _load_exit(url: str, capsys) -> tuple[int, str]:
    code = run_job(_LoadConfig, lambda cfg: load_model(cfg.model), [f"--model={url}"])
    return code, capsys.readouterr().err.strip()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("family", ["diffusers", "official"])
@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda d: _truncate(next((d / "unet").glob("*.safetensors"))), r"unet/diffusion_pytorch_model.safetensors"),
        (lambda d: _truncate(d / "context_encoder.safetensors"), r"context_encoder.safetensors"),
        (lambda d: (d / "unet" / "config.json").write_text("{not json"), r"unet/config.json"),
        (lambda d: (d / "uiface.json").write_bytes(b"\x00garbage\xff"), r"uiface.json"),
    ],
)
def test_damaged_model_files_are_one_line_errors(tmp_path, capsys, family, damage, named):
    from uiface_ray.release.importer import build_official_model

    model = (
        build_model(ModelConfig.tiny()) if family == "diffusers" else build_official_model("tiny", autoencoder=False)
    )
    folder = tmp_path / "m"
    save_model(model, str(folder))
    damage(folder)
    code, err = _load_exit(str(folder), capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert re.search(named, err), err


def test_official_family_roundtrip(tmp_path, capfd):
    from uiface_ray.release.importer import build_official_model

    model = build_official_model("tiny", seed=4)
    save_model(model, str(tmp_path / "m"))
    marker = json.loads((tmp_path / "m" / "uiface.json").read_text())
    assert marker["unet_class"] == "OfficialUNet" and marker["context_encoder"]["kind"] == "projected"
    capfd.readouterr()
    loaded = load_model(str(tmp_path / "m"), dtype=torch.float16)
    assert capfd.readouterr().err == ""  # no diffusers cast warning in a healthy float16 load
    assert type(loaded.unet).__name__ == "OfficialUNet" and loaded.unet.dtype == torch.float16
    assert model_hash(loaded) == model_hash(model)  # identified by its stored float32 weights
    loaded.to(dtype=torch.float32)
    torch.testing.assert_close(
        noise_prediction(loaded.to(dtype=torch.float32)), noise_prediction(model), rtol=1e-3, atol=1e-3
    )  # float16 storage round trip of the cast copy


def test_s3_load_leaves_no_temporary_copy(s3_bucket, tmp_path):
    from uiface_ray.model.autoencoder import load_autoencoder
    from uiface_ray.storage.fs import upload_dir

    url = s3_bucket + "/models/tmpcheck"
    save_model(build_model(ModelConfig.tiny()), url)
    tiny_vq().save_pretrained(str(tmp_path / "vq"))
    upload_dir(str(tmp_path / "vq"), s3_bucket + "/vq")
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("uiface-dl-*"))
    load_model(url)
    assert isinstance(load_autoencoder(s3_bucket + "/vq"), VQModel)
    with pytest.raises(ModelLoadError):
        remove(url + "/context_encoder.safetensors")
        load_model(url)  # a failed load cleans up too
    assert set(tmp.glob("uiface-dl-*")) == before


def test_the_marker_holds_the_hash_load_model_computes(tmp_path, monkeypatch):
    """A driver learns a model's identity and embedding size from uiface.json alone (issue 33): the hash
    save_model writes there is the one load_model computes, also for a model cast to bfloat16 before
    saving and for one whose cached hash went stale (weights changed after a load); a marker without
    it (a folder written by hand) is loaded once to hash it."""
    import uiface_ray.model.bundle as bundle
    from uiface_ray.model.bundle import read_model_summary

    model = build_model(ModelConfig.tiny(), seed=1)
    url = str(tmp_path / "m")
    save_model(model, url)
    loaded = load_model(url)
    loads = []
    monkeypatch.setattr(bundle, "load_model", lambda *a, **k: loads.append(a) or loaded)
    summary = read_model_summary(url)
    assert summary.weights_hash == model_hash(loaded) and summary.embedding_dim == model.embedding_dim
    assert loads == []  # the weights were not loaded
    with torch.no_grad():
        loaded.context_encoder.empty_context.add_(1.0)  # loaded (its hash cached), then changed, then saved
    changed = str(tmp_path / "changed")
    save_model(loaded.to(dtype=torch.bfloat16), changed)
    monkeypatch.undo()
    assert read_model_summary(changed).weights_hash == model_hash(load_model(changed)) != summary.weights_hash
    marker = json.loads((tmp_path / "m" / "uiface.json").read_text())
    del marker["weights_hash"]
    (tmp_path / "m" / "uiface.json").write_text(json.dumps(marker))
    assert read_model_summary(url).weights_hash == summary.weights_hash  # hashed by loading it once
    with pytest.raises(ModelLoadError, match=r"no UIFace model at .*nope"):
        read_model_summary(str(tmp_path / "nope"))
