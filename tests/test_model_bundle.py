"""The model contract: context encoder with c_e, tiny UNet, save/load (local and s3://), hash."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import VQModel

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
    tokens = torch.cat([model.context_encoder(unit_embeddings(1, model.embedding_dim, seed)),
                        model.context_encoder.empty_tokens(1)])
    with torch.no_grad():
        return model.unet(x, torch.tensor([17, 640]), encoder_hidden_states=tokens).sample


def tiny_vq(seed: int = 0) -> VQModel:
    torch.manual_seed(seed)
    return VQModel(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32), norm_num_groups=8, latent_channels=3, num_vq_embeddings=32,
        sample_size=16, scaling_factor=0.7,
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
