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
sys.path.insert(0, str(ROOT / "tests"))


def bare_sampler(model: str, identities: str, args) -> float:
    import numpy as np
    import torch

    from uiface_ray.identities.table import read_identity_table
    from uiface_ray.sample import SamplerConfig, UIFaceSampler
    from uiface_ray.synth.generate import shard_seeds

    torch.set_num_threads(1)
    table = read_identity_table(identities)
    sampler = UIFaceSampler.from_pretrained(model, config=SamplerConfig(num_inference_steps=args.steps))
    _, _, seeds = shard_seeds(0, table.identity_ids, args.images)
    contexts = np.repeat(table.embeddings, args.images, axis=0)  # (R, E)
    sampler.sample(contexts[:2], seeds[:2])  # warm-up
    start = time.perf_counter()
    for b in range(0, len(seeds), args.batch):
        sampler.sample(contexts[b : b + args.batch], seeds[b : b + args.batch])
    return len(seeds) / (time.perf_counter() - start)


def service(model: str, identities: str, actors: int, args, out: str) -> dict:
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
            progress_every_s=1e9,
            sampler={"num_inference_steps": args.steps},
            actors={"num_actors": actors, "use_gpu": False},
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
    args = p.parse_args(argv)
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    with tempfile.TemporaryDirectory() as tmp:
        model, identities = args.model, args.identities_table
        if model is None:
            from tiny_assets import make_tiny_synthesis_inputs

            model, identities = make_tiny_synthesis_inputs(Path(tmp) / "inputs", args.identities)
        bare_before = bare_sampler(model, identities, args)
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
        try:
            one = service(model, identities, 1, args, str(Path(tmp) / "one"))
            two = service(model, identities, 2, args, str(Path(tmp) / "two"))
        finally:
            ray.shutdown()
        bare_after = bare_sampler(model, identities, args)  # the machine's load drifts: bracket the service runs
    bare = (bare_before + bare_after) / 2
    report = {
        "bare_images_per_second": bare,
        "bare_before_after": [bare_before, bare_after],
        "service_1_actor": one,
        "service_2_actors": two,
        "overhead_1_actor": 1 - one["images_per_second"] / bare,
        "speedup_2_vs_1": two["images_per_second"] / one["images_per_second"],
        "setup": vars(args),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
