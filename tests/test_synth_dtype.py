"""Half-precision actors and GPU planning, exercised on CPU (issue 12, item 2).

float16 and bfloat16 sampler actors start, write decodable images, and record the same model
identity as a float32 run (a model is identified by its stored weights, not by the weights
rounded to the actor's dtype).  The pool's GPU planning is checked against resource counts, and
(slow) on a Ray that advertises 2 fake GPUs: one actor per GPU, each holding its own GPU id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tiny_assets import make_tiny_synthesis_inputs
from uiface_ray.runtime.pool import PoolError, plan_pool, wants_gpu
from uiface_ray.config import ActorPoolConfig
from uiface_ray.synth.config import SynthesisConfig
from uiface_ray.synth.dataset import open_dataset
from uiface_ray.synth.manifest import read_manifest
from uiface_ray.synth.shard import decode_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_tiny_synthesis_inputs(tmp_path_factory.mktemp("tiny"), num_identities=2)


def _run(inputs, out: str, dtype: str):
    from uiface_ray.runtime.synthesis import run_synthesis

    model, identities = inputs
    return run_synthesis(
        SynthesisConfig.model_validate(
            dict(
                model=model,
                identities=identities,
                output=out,
                images_per_identity=2,
                identities_per_shard=1,
                seed=1,
                batch_size=2,
                progress_every_s=0.0,
                sampler={"mode": "uiface", "num_inference_steps": 2},
                actors={"num_actors": 2, "use_gpu": False, "max_restarts": 0, "dtype": dtype},
            )
        )
    )


@pytest.mark.slow
def test_half_precision_actors_keep_the_model_identity(ray_local, inputs, tmp_path):
    reference = _run(inputs, str(tmp_path / "f32"), "float32")
    want = read_manifest(reference.output).model_hash
    for dtype in ("float16", "bfloat16"):
        result = _run(inputs, str(tmp_path / dtype), dtype)
        manifest = read_manifest(result.output)
        assert result.actors == 2 and result.shards_run == 2 and manifest.complete
        assert manifest.model_hash == want and manifest.generation["dtype"] == dtype
        for rows in open_dataset(result.output).iter_shards():
            assert rows.model_hash == want and rows.metadata["uiface.model_hash"] == want
            assert rows.metadata["uiface.image_size"] == "16x16" and rows.metadata["uiface.mode"] == "uiface"
            assert all(decode_image(image).shape == (16, 16, 3) for image in rows.image)


def test_gpu_planning_from_resource_counts():
    pool = ActorPoolConfig()
    gpus = {"CPU": 16.0, "GPU": 2.0}
    assert wants_gpu(pool, gpus) and not wants_gpu(pool, {"CPU": 16.0})
    assert not wants_gpu(ActorPoolConfig(use_gpu=False), gpus)
    plan = plan_pool(pool, True, max_actors=100, resources=gpus)
    assert (plan.num_actors, plan.num_gpus, plan.num_cpus) == (2, 1, 1)
    assert plan_pool(pool, True, max_actors=1, resources=gpus).num_actors == 1  # never more actors than work
    cpu = plan_pool(ActorPoolConfig(cpus_per_actor=4), False, max_actors=100, resources=gpus)
    assert (cpu.num_actors, cpu.num_gpus, cpu.num_cpus) == (4, 0, 4)
    assert plan_pool(ActorPoolConfig(num_actors=8), True, 100, {"CPU": 2.0}).num_actors == 8  # autoscaler
    with pytest.raises(PoolError, match="no GPU slot"):
        plan_pool(ActorPoolConfig(use_gpu=True), True, 100, {"CPU": 2.0})


def _run_script(script: str, timeout: float) -> subprocess.CompletedProcess:
    """``python -c script`` (its own ``ray.init``) with Ray's temp folder in a short folder of its own,
    removed afterwards: a plain ray.init would leave /tmp/ray behind."""
    temp = tempfile.mkdtemp(prefix="rayd-", dir="/tmp")  # short: socket paths have a length limit
    env = {**os.environ, "RAY_TMPDIR": temp, "TMPDIR": temp}
    env.pop("RAY_ADDRESS", None)
    try:
        return subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_gpu_pool_on_a_ray_with_fake_gpus(tmp_path):
    script = textwrap.dedent("""
        import ray
        from uiface_ray.runtime.pool import ActorPool, wants_gpu
        from uiface_ray.config import ActorPoolConfig

        class Probe:
            def __init__(self, name):
                self.name = name
            def ready(self):
                return self.name
            def gpus(self):
                return [str(g) for g in ray.get_gpu_ids()]

        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, configure_logging=False)
        pool = ActorPoolConfig()
        use_gpu = wants_gpu(pool)
        with ActorPool(Probe, ("probe",), pool, use_gpu=use_gpu, max_actors=10, name="probe") as probes:
            ids = sorted(g for a in probes.actors for g in ray.get(a.gpus.remote()))
            print("RESULT", use_gpu, len(probes.actors), ",".join(ids))
        ray.shutdown()
    """)
    proc = _run_script(script, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, proc.stderr[-3000:]
    assert line[0].split() == ["RESULT", "True", "2", "0,1"]


# ---- issue 25: dtype "auto" resolved where the actors run, recorded, guarding a resume ----


def _expected_auto() -> str:
    from uiface_ray.precision import decide, detect

    return decide(detect(), "cpu", "auto").dtype_name


def test_auto_is_resolved_recorded_and_guards_a_resume(ray_local, inputs, tmp_path, capsys):
    from uiface_ray.synth.resume import ResumeError

    out = str(tmp_path / "auto")
    result = _run(inputs, out, "auto")
    assert f"[synthesize] precision: {_expected_auto()}" in capsys.readouterr().out
    manifest = read_manifest(result.output)
    assert manifest.complete and manifest.generation["dtype"] == _expected_auto()
    assert manifest.generation["device"] == "cpu" and manifest.job_config["actors"]["dtype"] == _expected_auto()
    other = "float32" if _expected_auto() != "float32" else "bfloat16"
    with pytest.raises(ResumeError, match=f"dtype.*{_expected_auto()}.*{other}"):  # a resume in another dtype
        _run(inputs, out, other)
    assert _run(inputs, out, _expected_auto()).shards_run == 0  # the same dtype resumes (nothing left)


@pytest.mark.slow
def test_gpu_actors_on_a_fake_gpu_fall_back_to_cpu(inputs, tmp_path):
    """use_gpu=true on a Ray whose GPU resource has no CUDA device: num_gpus=1 planning still holds
    the GPU slot, the precision probe finds no CUDA there, and the actors sample on the CPU in the
    CPU's precision; the manifest says cpu."""
    model, identities = inputs
    script = textwrap.dedent(f"""
        import json, ray, torch
        torch.set_num_threads(1)
        from uiface_ray.runtime.synthesis import run_synthesis
        from uiface_ray.synth.config import SynthesisConfig
        from uiface_ray.synth.manifest import read_manifest
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, configure_logging=False)
        cfg = SynthesisConfig.model_validate(dict(
            model={model!r}, identities={identities!r}, output={str(tmp_path / "gpu")!r},
            images_per_identity=2, identities_per_shard=1, seed=1, batch_size=2, progress_every_s=0.0,
            sampler={{"mode": "uiface", "num_inference_steps": 2}},
            actors={{"use_gpu": True, "max_restarts": 0}}))
        res = run_synthesis(cfg)
        m = read_manifest(res.output)
        print("RESULT", json.dumps([res.actors, m.complete, m.generation["device"], m.generation["dtype"]]))
        ray.shutdown()
    """)
    proc = _run_script(script, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert line[0].split(" ", 1)[1] == f'[1, true, "cpu", "{_expected_auto()}"]'
    assert "no CUDA device here, running on cpu" in proc.stdout
