"""Distributed synthesis on a tiny model with 2 sampler actors: end to end, actor loss, bad inputs.

Each run kills its actors before returning (``run_synthesis`` does so in ``finally``), so the
session's 2 CPUs are free for the next test.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tiny_assets import make_tiny_identities, make_tiny_synthesis_inputs
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
    base = dict(model=model, identities=identities, output=output, images_per_identity=N_IMG,
                identities_per_shard=1, seed=3, batch_size=4, progress_every_s=0.0,
                sampler={"mode": "uiface", "num_inference_steps": 4},
                actors={"num_actors": 2, "use_gpu": "no", "max_restarts": 0})
    base.update(over)
    return SynthesisConfig.model_validate(base)


def shard_hashes(url: str) -> dict[str, str]:
    return {r.name: r.sha256 for r in read_manifest(url).shards}


def shard_bytes(url: str) -> dict[str, bytes]:
    return {u.rsplit("/", 1)[-1]: storage.read_bytes(u) for u in storage.list_files(storage.join(url, "shards"))}


def wait_cpus_free(ray, n=2.0, timeout=30.0):
    deadline = time.time() + timeout
    while ray.available_resources().get("CPU", 0) < n:
        assert time.time() < deadline, f"actors still hold CPUs: {ray.available_resources()}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def clean_run(ray_local, inputs, tmp_path_factory):
    from uiface_ray.runtime.synthesis import run_synthesis

    out = str(tmp_path_factory.mktemp("clean") / "ds")
    result = run_synthesis(synth_config(*inputs, out))
    wait_cpus_free(ray_local)
    return out, result


def test_end_to_end_on_s3_equals_local(ray_local, inputs, clean_run, s3_bucket):
    from uiface_ray.runtime.synthesis import run_synthesis

    local, local_result = clean_run
    assert local_result.actors == 2 and local_result.shards_run == N_ID and local_result.shard_retries == 0
    out = storage.join(s3_bucket, "synthetic")
    result = run_synthesis(synth_config(*inputs, out))
    wait_cpus_free(ray_local)
    manifest = read_manifest(out)
    assert manifest.complete and manifest.num_rows == N_ID * N_IMG == result.num_rows
    assert manifest.generation["sampler"]["num_inference_steps"] == 4 and manifest.job_config["output"] == out
    seen = set()
    for rows in open_dataset(out).iter_shards():
        for identity, index, image in zip(rows.identity_id, rows.image_index, rows.image):
            assert decode_image(image).shape == (16, 16, 3)
            seen.add((int(identity), int(index)))
        assert rows.mode == "uiface" and rows.model_hash == manifest.model_hash
    assert seen == {(i, j) for i in range(N_ID) for j in range(N_IMG)}
    # the shards are byte-identical to the local run: output independent of where/who ran it
    assert shard_hashes(out) == shard_hashes(local)
    assert shard_bytes(out) == shard_bytes(local)
    # a rerun of a complete dataset runs nothing
    again = run_synthesis(synth_config(*inputs, out))
    assert again.shards_run == 0 and again.actors == 0


def test_actor_killed_while_holding_a_shard(ray_local, inputs, clean_run, tmp_path):
    from uiface_ray.runtime.synthesis import run_synthesis

    marker_dir = tmp_path / "markers"
    out = str(tmp_path / "ds")
    cfg = synth_config(*inputs, out, fault_injection={"hold_shard": 1, "hold_seconds": 120,
                                                      "marker_dir": str(marker_dir)})
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(result=run_synthesis(cfg)), daemon=True)
    thread.start()
    marker = marker_dir / "holding-1"
    deadline = time.time() + 120
    while not marker.exists():
        assert thread.is_alive() and time.time() < deadline, "shard 1 was never held"
        time.sleep(0.2)
    assert "shard-00001.parquet" not in shard_hashes(out)
    ray_local.kill(ray_local.get_actor(marker.read_text()))  # Ray's own kill, no restart
    thread.join(timeout=120)
    assert not thread.is_alive()
    result = box["result"]
    assert result.shard_retries >= 1 and result.num_rows == N_ID * N_IMG
    assert sorted(shard_bytes(out)) == sorted(shard_bytes(clean_run[0]))
    assert shard_bytes(out) == shard_bytes(clean_run[0])
    wait_cpus_free(ray_local)


def test_rerun_with_other_config_is_refused(ray_local, inputs, clean_run):
    from uiface_ray.runtime.synthesis import run_synthesis
    from uiface_ray.synth.resume import ResumeError

    out = clean_run[0]
    before = storage.read_bytes(storage.join(out, "manifest.json"))
    with pytest.raises(ResumeError, match=r"seed: 3 -> 4"):
        run_synthesis(synth_config(*inputs, out, seed=4))
    assert storage.read_bytes(storage.join(out, "manifest.json")) == before


def _bad_table(path: Path, emb: np.ndarray) -> str:
    n = len(emb)
    storage.write_table(str(path), {"identity_id": np.arange(n), "embedding": list(emb.astype(np.float32)),
                                    "seed": np.arange(n), "nn_similarity": np.zeros(n, np.float32)})
    return str(path)


@pytest.mark.parametrize("case", ["nan", "wrong_dim", "empty", "missing_model", "unwritable"])
def test_bad_inputs_fail_before_any_output(ray_local, inputs, tmp_path, case):
    from uiface_ray.synth.errors import input_error_types

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

    with pytest.raises(input_error_types(), match=msg):
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
