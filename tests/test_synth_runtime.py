"""Distributed synthesis on a tiny model with 2 sampler actors: end to end on S3, bad inputs.

Fault injection (an actor killed mid-shard, the driver killed halfway) is in test_synth_faults.py.

Each run kills its actors before returning (``run_synthesis`` does so in ``finally``), so the
session's 2 CPUs are free for the next test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny_assets import make_tiny_identities, make_tiny_synthesis_inputs, wait_cpus_free
from uiface_ray import storage
from uiface_ray.synth.config import SynthesisConfig
from uiface_ray.synth.dataset import open_dataset
from uiface_ray.synth.manifest import read_manifest
from uiface_ray.synth.shard import decode_image

N_ID, N_IMG = 4, 3


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_tiny_synthesis_inputs(tmp_path_factory.mktemp("tiny"), num_identities=N_ID)


def synth_config(model, identities, output, **over) -> SynthesisConfig:
    base = dict(
        model=model,
        identities=identities,
        output=output,
        images_per_identity=N_IMG,
        identities_per_shard=1,
        seed=3,
        batch_size=4,
        progress_every_s=0.0,
        sampler={"mode": "uiface", "num_inference_steps": 4},
        actors={"num_actors": 2, "use_gpu": False, "max_restarts": 0},
    )
    base.update(over)
    return SynthesisConfig.model_validate(base)


def shard_hashes(url: str) -> dict[str, str]:
    return {r.name: r.sha256 for r in read_manifest(url).shards}


def shard_bytes(url: str) -> dict[str, bytes]:
    return {u.rsplit("/", 1)[-1]: storage.read_bytes(u) for u in storage.list_files(storage.join(url, "shards"))}


def test_end_to_end_on_s3(ray_local, inputs, s3_bucket):
    from uiface_ray.runtime.synthesis import run_synthesis
    from uiface_ray.synth.resume import ResumeError

    out = storage.join(s3_bucket, "synthetic")
    result = run_synthesis(synth_config(*inputs, out))
    assert result.actors == 2 and result.shards_run == N_ID and result.shard_retries == 0
    wait_cpus_free(ray_local)
    manifest = read_manifest(out)
    assert manifest.complete and manifest.num_rows == N_ID * N_IMG == result.num_rows
    assert manifest.generation["sampler"]["num_inference_steps"] == 4 and manifest.job_config["output"] == out
    seen = []
    for rows in open_dataset(out).iter_shards():
        for identity, index, image in zip(rows.identity_id, rows.image_index, rows.image):
            assert decode_image(image).shape == (16, 16, 3)
            seen.append((int(identity), int(index)))
        assert rows.mode == "uiface" and rows.model_hash == manifest.model_hash
    assert sorted(seen) == [(i, j) for i in range(N_ID) for j in range(N_IMG)]  # exact, no duplicates
    assert sorted(shard_bytes(out)) == [f"shard-{i:05d}.parquet" for i in range(N_ID)]
    # a rerun of a complete dataset runs nothing; one with another config is refused, output untouched
    assert run_synthesis(synth_config(*inputs, out)).shards_run == 0
    before = storage.read_bytes(storage.join(out, "manifest.json"))
    with pytest.raises(ResumeError, match=r"seed: 3 -> 4"):
        run_synthesis(synth_config(*inputs, out, seed=4))
    assert storage.read_bytes(storage.join(out, "manifest.json")) == before


def _bad_table(path: Path, emb: np.ndarray) -> str:
    n = len(emb)
    storage.write_table(
        str(path),
        {
            "identity_id": np.arange(n),
            "embedding": list(emb.astype(np.float32)),
            "seed": np.arange(n),
            "nn_similarity": np.zeros(n, np.float32),
        },
    )
    return str(path)


@pytest.mark.parametrize("case", ["nan", "wrong_dim", "empty", "missing_model", "unwritable"])
def test_bad_inputs_fail_before_any_output(ray_local, inputs, tmp_path, case):
    from uiface_ray.errors import InputError

    model, identities = inputs
    out = tmp_path / "ds"
    good = np.random.default_rng(0).standard_normal((3, 128))
    if case == "nan":
        good[1, 5] = np.nan
        identities, msg = _bad_table(tmp_path / "t.parquet", good), "NaN"
    elif case == "wrong_dim":
        identities, msg = make_tiny_identities(str(tmp_path / "t.parquet"), 3, dim=64), "dim 64.*expects 128"
    elif case == "empty":
        identities, msg = _bad_table(tmp_path / "t.parquet", good[:0]), "empty"
    elif case == "missing_model":
        model, msg = str(tmp_path / "no-model"), "no UIFace model"
    else:
        (tmp_path / "ro").write_text("a file, not a folder")
        out, msg = tmp_path / "ro" / "ds", "not writable"
    from uiface_ray.runtime.synthesis import run_synthesis

    with pytest.raises(InputError, match=msg):
        run_synthesis(synth_config(model, identities, str(out)))
    assert not (out / "manifest.json").exists() and not (out / "shards").exists()
    assert ray_local.available_resources().get("CPU") == 2.0  # no actor was started


def test_job_reports_one_clear_line(ray_local, inputs, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("synthesize_job", Path(__file__).parents[1] / "jobs/synthesize.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    rc = job.main([f"--model={tmp_path / 'nope'}", f"--identities={inputs[1]}", f"--output={tmp_path / 'ds'}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: model: no UIFace model at") and "Traceback" not in err
    assert not (tmp_path / "ds").exists()
