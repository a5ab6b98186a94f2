"""jobs/make_identities.py on a tiny model with 2 actors and the dlib encoder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tiny_assets import make_tiny_model, wait_cpus_free
from uiface_ray import storage
from uiface_ray.identities.filtering import GreedyIdentityFilter
from uiface_ray.identities.table import read_identity_table

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD, PER_TASK, STEPS = 0.78, 4, 4


def _job():
    spec = importlib.util.spec_from_file_location("make_identities_job", ROOT / "jobs/make_identities.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


def _candidates(model: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n candidates' seeds and embeddings, computed here without Ray."""
    from uiface_ray.encoders import EncoderConfig, load_encoder
    from uiface_ray.sample import SamplerConfig, UIFaceSampler, image_seed

    sampler = UIFaceSampler.from_pretrained(  # float32, as the job below: the filter's cases are pinned on it
        model, dtype="float32", config=SamplerConfig(mode="two_stage_fixed", t0=0, num_inference_steps=STEPS)
    )
    seeds = [image_seed(0, "candidate", k) for k in range(n)]
    images = sampler.sample(np.full((n, 128), 0.1, np.float32), seeds).images
    return np.array(seeds), load_encoder(EncoderConfig(kind="dlib")).embed(images)


def test_make_identities_with_leakage_check(ray_local, tmp_path):
    pytest.importorskip("dlib")
    model = make_tiny_model(str(tmp_path / "model"))
    seeds, emb = _candidates(model, 24)
    # the "training set": candidate 0's face (label 0) plus an unrelated identity (label 1)
    train = np.stack([emb[0], emb[0], -emb[1]])
    train_url = str(tmp_path / "faces.parquet")
    storage.write_table(train_url, {"embedding": list(train.astype(np.float32)), "label": np.array([0, 0, 1])})
    out = str(tmp_path / "ids" / "identities.parquet")
    rc = _job().main(
        [
            f"--model={model}",
            f"--output={out}",
            "--num_identities=4",
            f"--similarity_threshold={THRESHOLD}",
            f"--training_embeddings={train_url}",
            "--leakage_threshold=0.99",
            f"--candidates_per_task={PER_TASK}",
            f"--num_inference_steps={STEPS}",
            "--max_candidates=24",
            "--encoder.kind=dlib",
            "--actors.num_actors=2",
            "--actors.use_gpu=false",
            "--actors.dtype=float32",
        ]
    )
    assert rc == 0
    table = read_identity_table(out, expected_dim=128)
    summary = json.loads((tmp_path / "ids" / "identities.summary.json").read_text())
    # the same greedy filter over the same candidates in order, here, gives the same identities
    ref = GreedyIdentityFilter(4, 128, THRESHOLD, train, 0.99)
    ref.offer(emb, seeds)
    want = ref.result()
    np.testing.assert_array_equal(table.seeds, want.seeds)
    np.testing.assert_allclose(table.embeddings, want.embeddings, atol=1e-5)
    assert seeds[0] not in table.seeds and summary["rejected_leakage"] >= 1
    assert summary["rejected_similar"] >= 1 and summary["kept"] == 4
    assert summary["candidates_drawn"] == summary["kept"] + summary["rejected_similar"] + summary["rejected_leakage"]
    assert summary["encoder"]["name"] == "dlib-resnet-v1" and table.encoder["dim"] == 128
    sims = table.embeddings @ table.embeddings.T
    np.fill_diagonal(sims, -1)
    assert sims.max() < THRESHOLD
    np.testing.assert_allclose(table.nn_similarity, sims.max(axis=1), atol=1e-5)
    wait_cpus_free(ray_local)  # the job killed its actors


def test_make_identities_bad_inputs(ray_local, tmp_path, capsys):
    rc = _job().main([f"--model={tmp_path / 'none'}", f"--output={tmp_path / 'i.parquet'}"])
    assert rc == 2 and "no UIFace model" in capsys.readouterr().err
    assert not (tmp_path / "i.parquet").exists()
