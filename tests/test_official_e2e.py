"""From the release's files on S3 to a dataset on S3: import, .npy identities, the official preset (slow: Ray)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from test_official_import import import_official, write_release_files
from tiny_assets import wait_cpus_free
from uiface_ray import storage
from uiface_ray.model import load_model
from uiface_ray.sample.config import SamplerConfig
from uiface_ray.storage.fs import upload_dir
from uiface_ray.synth.config import SynthesisConfig
from uiface_ray.synth.dataset import open_dataset
from uiface_ray.synth.manifest import read_manifest
from uiface_ray.synth.shard import decode_image

pytestmark = pytest.mark.slow


def test_release_files_to_dataset_on_s3(ray_local, s3_bucket, tmp_path):
    from uiface_ray.runtime.synthesis import run_synthesis

    model, argv = write_release_files(tmp_path / "release", name="ema_averaged_model_9.ckpt")
    release = storage.join(s3_bucket, "release")
    upload_dir(str(tmp_path / "release"), release)
    argv = [a.replace(str(tmp_path / "release"), release) for a in argv]
    model_url = storage.join(s3_bucket, "official-model")
    assert import_official.main(argv + [f"--output={model_url}"]) == 0
    assert load_model(model_url).info["official"]["weights"] == "ema"
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).normal(size=(3, 512)))
    ids_url = storage.join(s3_bucket, "release", "identities_10k.npy")
    storage.write_bytes_atomic(ids_url, buffer.getvalue())
    out = storage.join(s3_bucket, "synthetic")
    sampler = SamplerConfig.official(num_inference_steps=4, output_size=24).model_dump()
    cfg = SynthesisConfig.model_validate(
        dict(
            model=model_url,
            identities=ids_url,
            output=out,
            images_per_identity=2,
            identities_per_shard=2,
            seed=1,
            batch_size=4,
            progress_every_s=0.0,
            sampler=sampler,
            actors={"num_actors": 1, "use_gpu": False, "max_restarts": 0},
        )
    )
    result = run_synthesis(cfg)
    wait_cpus_free(ray_local)
    manifest = read_manifest(out)
    assert manifest.complete and result.num_rows == 6
    seen = []
    for rows in open_dataset(out).iter_shards():
        for identity, index, image in zip(rows.identity_id, rows.image_index, rows.image):
            assert decode_image(image).shape == (24, 24, 3)
            seen.append((int(identity), int(index)))
    assert sorted(seen) == [(i, j) for i in range(3) for j in range(2)]
    assert torch.is_tensor(next(model.unet.parameters()))
