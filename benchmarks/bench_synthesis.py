"""Synthesis service overhead: images/s of jobs/synthesize's actor pool against the bare sampler.

    python benchmarks/bench_synthesis.py --identities 8 --images 8 --steps 20 --batch 16

1. bare: ``UIFaceSampler.sample`` in this process, one torch thread, the same batches (no encoding,
   no storage) -- the ceiling; measured before and after the service runs, averaged.
2. service with 1 actor (1 CPU, 1 thread): the same images through ``run_synthesis`` (PNG encoding,
   Parquet shards, manifest after every shard).  Timed from "every actor has loaded the model" to
   the last shard, so model loading is excluded from both sides.
3. service with 2 actors.
Overhead = 1 - service(1 actor) / bare.  With a model path (``--model``) and identity table
(``--identities-table``) it measures those instead of a random tiny model.

``--dtype`` (default ``float32,auto``): each precision in turn, bare and service, with the bare
sampler's achieved GFLOP/s (FLOPs of one batch counted by torch's FlopCounterMode) and its fraction
of the matmul peak measured here in that dtype (benchmarks/perf.py), and the load average.
``--quick``: 2 identities x 2 images, 2 steps, 1 actor.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def bare_sampler(model: str, identities: str, args, dtype: str = "float32") -> tuple[float, float]:
    """(images/s, FLOPs per image) of the bare sampler."""
    import numpy as np
    import torch

    from uiface_ray.identities.table import read_identity_table
    from uiface_ray.sample import SamplerConfig, UIFaceSampler
    from uiface_ray.synth.generate import shard_seeds

    torch.set_num_threads(1)
    table = read_identity_table(identities)
    from perf import sampler_flops_per_image

    sampler = UIFaceSampler.from_pretrained(model, dtype=dtype, config=SamplerConfig(num_inference_steps=args.steps))
    _, _, seeds = shard_seeds(0, table.identity_ids, args.images)
    contexts = np.repeat(table.embeddings, args.images, axis=0)  # (R, E)
    sampler.sample(contexts[:2], seeds[:2])  # warm-up
    flops = sampler_flops_per_image(sampler, contexts[:2], seeds[:2])
    start = time.perf_counter()
    for b in range(0, len(seeds), args.batch):
        sampler.sample(contexts[b : b + args.batch], seeds[b : b + args.batch])
    return len(seeds) / (time.perf_counter() - start), flops


def service(model: str, identities: str, actors: int, args, out: str, dtype: str = "float32") -> dict:
    from uiface_ray.runtime.synthesis import run_synthesis
    from uiface_ray.synth.config import SynthesisConfig

    cfg = SynthesisConfig.model_validate(
        dict(
            model=model,
            identities=identities,
            output=out,
            images_per_identity=args.images,
            identities_per_shard=args.per_shard,
            batch_size=args.batch,
            progress_every_s=86400,  # the most the config takes: no progress lines while timed
            sampler={"num_inference_steps": args.steps},
            actors={"num_actors": actors, "use_gpu": False, "dtype": dtype},
        )
    )
    result = run_synthesis(cfg)
    return {
        "actors": result.actors,
        "images": result.num_rows,
        "images_per_second": result.images_per_second,
        "wall_seconds_including_startup": result.seconds,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--identities", type=int, default=8)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--per-shard", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--model", default=None)
    p.add_argument("--identities-table", default=None)
    p.add_argument("--dtype", default="float32,auto", help="comma list of float32, bfloat16, float16, auto")
    p.add_argument("--quick", action="store_true", help="2 identities x 2 images, 2 steps, 1 actor")
    args = p.parse_args(argv)
    if args.quick:
        args.identities, args.images, args.steps, args.batch, args.per_shard = 2, 2, 2, 4, 1
    import os

    from perf import load, measured_peak, precisions

    from uiface_ray.config import RayConfig
    from uiface_ray.runtime.session import ray_session

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    chosen = precisions(args.dtype, "cpu")
    report: dict = {"setup": vars(args), "precisions": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model, identities = args.model, args.identities_table
        if model is None:
            from tiny_assets import make_tiny_synthesis_inputs

            model, identities = make_tiny_synthesis_inputs(Path(tmp) / "inputs", args.identities)
        # a private embedded Ray, as the jobs start one: never a cluster that happens to run here
        with ray_session(RayConfig(address="local", num_cpus=2)):
            for q in chosen:
                name = q.dtype_name
                peak = measured_peak(q.dtype, "cpu", seconds=0.3 if args.quick else 1.0)
                (before, flops), load_before = bare_sampler(model, identities, args, name), load()
                runs = {}
                for n in (1,) if args.quick else (1, 2):
                    runs[f"service_{n}_actor"] = service(
                        model, identities, n, args, str(Path(tmp) / f"{name}{n}"), name
                    )
                (after, _), load_after = bare_sampler(model, identities, args, name), load()
                bare = (before + after) / 2  # the machine's load drifts: bracket the service runs
                report["precisions"][q.describe()] = {
                    "bare_images_per_second": bare,
                    "bare_before_after": [before, after],
                    **runs,
                    "overhead_1_actor": 1 - runs["service_1_actor"]["images_per_second"] / bare,
                    "bare_gflop_per_s": flops * bare / 1e9,
                    "fraction_of_peak": flops * bare / 1e9 / peak,
                    "peak_gflop_per_s_measured_matmul": peak,
                    "load": [load_before, load_after],
                }
    rates = [r["bare_images_per_second"] for r in report["precisions"].values()]
    report["bare_speedup_vs_first"] = [r / rates[0] for r in rates]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
