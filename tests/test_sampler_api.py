"""UIFaceSampler: load a saved model folder and sample uint8 images without Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_sampler_common import CallCounter
from tiny_assets import make_tiny_vq
from uiface_ray.model import ModelConfig, build_model, save_model
from uiface_ray.sample import GeneratedBatch, SamplerConfig, UIFaceSampler, image_seed, run_sampler
from uiface_ray.sample.api import to_uint8

torch.set_num_threads(1)
CFG = SamplerConfig(num_inference_steps=6, threshold=0.05, max_t0=300)


def embeddings(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


@pytest.fixture(scope="module")
def pixel_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pixel-model")
    save_model(build_model(ModelConfig.tiny(), seed=4), str(path))
    return str(path)


@pytest.fixture(scope="module")
def sampler(pixel_dir):
    return UIFaceSampler.from_pretrained(pixel_dir, device="cpu", dtype=torch.float32, config=CFG)


def test_sample_returns_uint8_images_and_counters(sampler):
    seeds = [image_seed(1, identity, 0) for identity in range(3)]
    batch = sampler.sample(embeddings(3), seeds)
    assert isinstance(batch, GeneratedBatch) and batch.mode == "uiface" and batch.seeds == seeds
    assert batch.images.shape == (3, 16, 16, 3) and batch.images.dtype == np.uint8
    assert batch.t0.shape == (3,) and batch.d_t.shape == (3, 6) and batch.timesteps.shape == (6,)
    settled = (np.nan_to_num(batch.d_t, nan=1.0) < CFG.threshold).any(axis=1)  # same-step switch: +1 at t0
    expected = 6 + (batch.timesteps[None, :] < batch.t0[:, None]).sum(axis=1) + settled
    assert np.array_equal(batch.unet_evaluations, expected)
    assert batch.images.std() > 0


def test_sample_equals_the_core_on_normalised_embeddings(sampler):
    raw = embeddings(2, seed=5)
    batch = sampler.sample(raw * 3.0, [7, 8])  # scale does not matter: rows are L2-normalised
    model = sampler.model
    unit = torch.nn.functional.normalize(torch.from_numpy(raw), dim=1)
    with torch.no_grad():
        context, empty = model.context_encoder(unit), model.context_encoder.empty_tokens(2)
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    out = run_sampler(model.unet, sampler.scheduler, context, empty, gens, CFG, model.latent_shape())
    assert np.abs(to_uint8(out.latents).astype(int) - batch.images.astype(int)).max() <= 1
    alone = sampler.sample(raw[1:], [8])
    assert np.abs(alone.images[0].astype(int) - batch.images[1].astype(int)).max() <= 1
    assert alone.t0[0] == batch.t0[1]


@pytest.mark.parametrize(
    "contexts, seeds, message",
    [
        (embeddings(2, dim=64), [1, 2], r"\(B, 128\)"),
        (np.zeros((2, 128), np.float32), [1, 2], "zero norm"),
        (np.full((2, 128), np.nan, np.float32), [1, 2], "NaN"),
        (embeddings(2), [1], "1 seeds for 2 contexts"),
        (embeddings(1)[0], [1], r"\(B, 128\)"),
    ],
    ids=["dim", "zero-norm", "nan", "seeds", "1d"],
)
def test_bad_input_fails_before_any_unet_call(sampler, contexts, seeds, message):
    counter = CallCounter(sampler.model.unet)
    try:
        with pytest.raises(ValueError, match=message):
            sampler.sample(contexts, seeds)
    finally:
        counter.remove()
    assert counter.calls == 0


def test_latent_model_decodes_through_the_autoencoder(tmp_path):
    torch.manual_seed(0)
    make_tiny_vq(tmp_path / "vq")
    cfg = ModelConfig.tiny(space="latent", autoencoder=str(tmp_path / "vq"))
    save_model(build_model(cfg, seed=2), str(tmp_path / "model"))
    sampler = UIFaceSampler.from_pretrained(str(tmp_path / "model"), config=CFG.model_copy(update={"mode": "baseline"}))
    assert sampler.model.latent_shape() == (3, 8, 8)
    batch = sampler.sample(embeddings(2), [1, 2])
    assert batch.images.shape == (2, 16, 16, 3) and batch.images.dtype == np.uint8
    assert (batch.unet_evaluations == 12).all()


def test_bfloat16_from_pretrained(pixel_dir):
    sampler = UIFaceSampler.from_pretrained(pixel_dir, dtype=torch.bfloat16, config=CFG)
    assert sampler.model.unet.dtype == torch.bfloat16
    batch = sampler.sample(embeddings(2), [1, 2])
    assert batch.images.shape == (2, 16, 16, 3) and batch.images.dtype == np.uint8
