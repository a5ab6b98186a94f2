"""The latent cache (issue 32 item 3), Ray-free: each face encoded once, both orientations, keyed by
what the latents depend on, committed whole, resumed part by part, rebuilt where damaged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_assets import make_tiny_vq
from train_tables import face_table, write_face_table_folder
from uiface_ray.data.images import decode_images
from uiface_ray.model.autoencoder import load_autoencoder
from uiface_ray.model.config import ModelConfig
from uiface_ray.train import latent_cache
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.latent_cache import LatentCacheError, build_in_process, cache_state, open_cache


def latent_cfg(table: str, vq: str, **data) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": ModelConfig.tiny(space="latent", autoencoder=vq).model_dump(mode="json"),
            "data": {"table": table, **data},
            "output": "unused",
        }
    )


@pytest.fixture()
def inputs(lfw_dir, tmp_path):
    vq = make_tiny_vq(tmp_path / "vq")
    table = write_face_table_folder(tmp_path / "faces", lfw_dir, files=2, row_group_rows=3, num_people=3, per_person=3)
    return table, vq


def quiet(line: str) -> None:
    pass


def test_cache_holds_both_orientations_of_every_face_in_table_order(inputs, lfw_dir):
    table, vq = inputs
    cfg = latent_cfg(table, vq)
    cache = build_in_process(cfg, log=quiet)
    assert cache.url.startswith(table + ".latents/")
    assert [p.name for p in cache.parts] == [
        "part-00000-00000.parquet",
        "part-00000-00001.parquet",
        "part-00001-00000.parquet",
        "part-00001-00001.parquet",
    ]  # 9 rows: files of 5 and 4 rows, row groups of 3
    marker = json.loads(open(f"{cache.url}/latents.json").read())
    assert marker["rows"] == 9 and marker["kind"] == "vq" and marker["latent_shape"] == [3, 8, 8]
    from uiface_ray.storage.latent_table import LATENT_TABLE, read_row_group
    from uiface_ray.train.stream import float_rows

    rows = [read_row_group(LATENT_TABLE, u, 0, ["label", "latent", "latent_flipped"]) for u in cache.part_urls()]

    def column(name: str) -> np.ndarray:
        values = [t.data.column(name).to_numpy(zero_copy_only=False) for t in rows]
        return float_rows(np.concatenate(values), 192, "cache", "latent")

    latent, flipped = column("latent"), column("latent_flipped")
    src = face_table(lfw_dir, num_people=3, per_person=3)
    images = decode_images(src.column("image").to_pylist(), 16)  # (9, 16, 16, 3)
    assert np.concatenate([t.column("label") for t in rows]).tolist() == src.column("label").to_pylist()
    ae = load_autoencoder(vq)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        want = ae.encode(x).latents.reshape(9, -1).numpy()
        want_flipped = ae.encode(x.flip(-1)).latents.reshape(9, -1).numpy()
    np.testing.assert_allclose(latent, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(flipped, want_flipped, rtol=0, atol=1e-5)
    assert np.abs(flipped - want).max() > 1e-3  # E(flip(x)) is not E(x): both are kept


def test_a_complete_cache_is_reused_and_its_key_follows_what_the_latents_depend_on(inputs, monkeypatch):
    table, vq = inputs
    cfg = latent_cfg(table, vq)
    first = build_in_process(cfg, log=quiet)
    monkeypatch.setattr(latent_cache, "encode_part", lambda *a, **k: pytest.fail("a complete cache was encoded again"))
    assert build_in_process(cfg, log=quiet).url == first.url
    assert open_cache(cfg).url == first.url
    no_flip = cache_state(latent_cfg(table, vq, hflip=False), log=quiet)[0]
    assert no_flip.spec.orientations == 1 and no_flip.url != first.url
    bigger = cache_state(cfg.model_copy(update={"model": cfg.model.model_copy(update={"image_size": 32})}), quiet)
    assert bigger[0].url != first.url
    ae = load_autoencoder(vq)
    with torch.no_grad():
        next(ae.parameters()).add_(1e-3)
    ae.save_pretrained(vq)  # other weights, same folder
    changed, todo = cache_state(cfg, log=quiet)
    assert changed.url != first.url and len(todo) == len(changed.parts)
    with pytest.raises(LatentCacheError, match="lacks 4 of 4 parts"):
        open_cache(cfg)


def test_a_killed_build_resumes_with_its_finished_parts_and_a_damaged_part_is_encoded_again(inputs, monkeypatch):
    table, vq = inputs
    cfg = latent_cfg(table, vq)
    real = latent_cache.encode_part
    done = []

    def dies_on_the_third(autoencoder, cache, part, storage, device=None):
        if len(done) == 2:
            raise KeyboardInterrupt("killed")
        done.append(part.name)
        return real(autoencoder, cache, part, storage, device)

    monkeypatch.setattr(latent_cache, "encode_part", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        build_in_process(cfg, log=quiet)
    cache, todo = cache_state(cfg, log=quiet)
    assert [p.name for p in todo] == [p.name for p in cache.parts[2:]]  # no marker, two whole parts
    files = sorted(p.name for p in Path(cache.url).iterdir())
    assert files == sorted(done)  # nothing half-written
    encoded = []
    monkeypatch.setattr(
        latent_cache, "encode_part", lambda a, c, p, s, d=None: encoded.append(p.name) or real(a, c, p, s, d)
    )
    build_in_process(cfg, log=quiet)
    assert encoded == [p.name for p in cache.parts[2:]]
    # damage one part and drop the marker: only that part is encoded again, and the run says so
    damaged = Path(cache.part_url(cache.parts[1]))
    damaged.write_bytes(damaged.read_bytes()[:-40])
    (Path(cache.url) / "latents.json").unlink()
    encoded.clear()
    lines = []
    build_in_process(cfg, log=lines.append)
    assert encoded == [cache.parts[1].name]
    assert any("is damaged" in line and cache.parts[1].name in line for line in lines), lines


def latent_run(table: str, vq: str, output: str, **overrides) -> TrainConfig:
    values = {
        "model": ModelConfig.tiny(space="latent", autoencoder=vq).model_dump(mode="json"),
        "data": {"table": table},
        "output": output,
        "optim": {"lr": 1e-3},
        "grid": {"num_identities": 0},
        "max_steps": 6,
        "batch_size": 4,
        "checkpoint_every": 3,
        "log_every": 3,
        "seed": 3,
    }
    values.update(overrides)
    return TrainConfig.model_validate(values)


def zero_latents(cache) -> None:
    """Rewrite every part with its latents set to 0 (same key, same rows, a valid cache)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for url in cache.part_urls():
        table = pq.read_table(url)
        for name in ("latent", "latent_flipped"):
            col = table.column(name).combine_chunks()
            zeros = pa.ListArray.from_arrays(col.offsets, pa.array(np.zeros(len(col.values), np.float32)))
            table = table.set_column(table.schema.get_field_index(name), name, zeros)
        pq.write_table(table, url)


def test_latent_training_reads_the_cache_on_resume(inputs, tmp_path, monkeypatch):
    """Steps 4-6 of a resumed run come from the cache as it is on disk: with its latents zeroed between
    the two pieces, the resumed run ends elsewhere than a straight one; a rebuild (or the per-step
    encoder) would have given the straight run's weights."""
    from uiface_ray.train.loop import run_training

    table, vq = inputs
    straight = run_training(latent_run(table, vq, str(tmp_path / "a")), log_quiet())
    pieces = latent_run(table, vq, str(tmp_path / "b"), fail_at_step=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(pieces, log_quiet())
    cache = open_cache(pieces)
    zero_latents(cache)
    monkeypatch.setattr(latent_cache, "encode_part", lambda *a, **k: pytest.fail("the cache was encoded again"))
    resumed = run_training(pieces.model_copy(update={"fail_at_step": None}), log_quiet())
    assert resumed.step == 6
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a), "the resumed run did not read the cache"


def make_tiny_kl(folder) -> str:
    from diffusers import AutoencoderKL

    AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        latent_channels=3,
        sample_size=16,
    ).eval().save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_latent_training_resumes_exactly(kind, inputs, tmp_path):
    """6 straight steps == 3 steps, crash, resume to 6 (the cache built once, by the first piece); a KL
    latent is drawn from the cached mean and log-variance with the step's generator, so it resumes too."""
    from uiface_ray.train.loop import run_training

    table, vq = inputs
    if kind == "kl":
        vq = make_tiny_kl(tmp_path / "kl")
        cache = build_in_process(latent_cfg(table, vq), log=quiet)
        assert cache.kind == "kl" and cache.width == 2 * 3 * 8 * 8
    straight = run_training(latent_run(table, vq, str(tmp_path / "a")), log_quiet())
    pieces = latent_run(table, vq, str(tmp_path / "b"), fail_at_step=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(pieces, log_quiet())
    resumed = run_training(pieces.model_copy(update={"fail_at_step": None}), log_quiet())
    for (name, a), b in zip(straight.module.state_dict().items(), resumed.module.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert [m["loss"] for m in straight.metrics] == [m["loss"] for m in resumed.metrics]


def log_quiet():
    from uiface_ray.optim.context import WorkerContext

    return WorkerContext(log=quiet)


def test_cached_x0_takes_the_flip_draws_orientation_and_samples_kl_from_the_step_generator():
    from uiface_ray.train.objective import StepNoise, cached_x0

    g = torch.Generator().manual_seed(0)
    latents = torch.randn(3, 2, 2 * 2 * 4 * 4, generator=g)  # (B, K, D): KL moments of C=2, 4x4
    flip = torch.tensor([False, True, False])
    draws = StepNoise(torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.bool), flip, None)
    vq = cached_x0(latents[..., :32], draws, "vq", (2, 4, 4), 0.5)
    torch.testing.assert_close(vq[1], 0.5 * latents[1, 1, :32].reshape(2, 4, 4))
    torch.testing.assert_close(vq[0], 0.5 * latents[0, 0, :32].reshape(2, 4, 4))
    with pytest.raises(ValueError, match="generator"):
        cached_x0(latents, draws, "kl", (2, 4, 4), 0.5)
    draws.generator = torch.Generator().manual_seed(5)
    kl = cached_x0(latents, draws, "kl", (2, 4, 4), 0.5)
    mean, logvar = latents[1, 1].reshape(4, 4, 4).chunk(2)
    eps = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(kl[1], 0.5 * (mean + torch.exp(0.5 * logvar) * eps[1]))
