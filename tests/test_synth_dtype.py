"""Half-precision actors and GPU planning, exercised on CPU (issue 12, item 2).

float16 and bfloat16 sampler actors start, write decodable images, and record the same model
identity as a float32 run (a model is identified by its stored weights, not by the weights
rounded to the actor's dtype).  The pool's GPU planning is checked against resource counts, and
(slow) on a Ray that advertises 2 fake GPUs: one actor per GPU, each holding its own GPU id.
"""

from __future__ import annotations

import subprocess
import sys
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


@pytest.mark.slow
def test_gpu_pool_on_a_ray_with_fake_gpus(tmp_path):
    script = textwrap.dedent("""
        import ray
        from uiface_ray.runtime.pool import kill_pool, start_pool, wait_ready, wants_gpu
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
        actors = wait_ready(start_pool(Probe, pool, use_gpu, 10, "probe", lambda name: (name,)))
        ids = sorted(g for a in actors for g in ray.get(a.gpus.remote()))
        kill_pool(actors)
        print("RESULT", use_gpu, len(actors), ",".join(ids))
        ray.shutdown()
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, proc.stderr[-3000:]
    assert line[0].split() == ["RESULT", "True", "2", "0,1"]
