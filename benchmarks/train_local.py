"""Run the diffusion training loop in this one process (no Ray), from a train_diffusion config.

For a shared or small machine where Ray's own processes cost too much: same validation, same
checkpoints and resume as ``jobs/train_diffusion.py`` (a run can move between the two).

    python benchmarks/train_local.py --config configs/train_diffusion_demo32.yaml [--key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.train.config import TrainConfig  # noqa: E402


def body(cfg: TrainConfig) -> None:
    from uiface_ray.optim.context import WorkerContext
    from uiface_ray.storage import resolve_urls
    from uiface_ray.train.latent_cache import build_in_process
    from uiface_ray.train.loop import run_training
    from uiface_ray.train.stream import read_spec
    from uiface_ray.train.validate import validate_run

    cfg = resolve_urls(cfg)
    log = lambda line: print(line, flush=True)  # noqa: E731
    plan = validate_run(cfg)
    print(
        f"[train] {plan.num_rows} images of {plan.num_identities} identities; start step {plan.start_step}", flush=True
    )
    cache = build_in_process(cfg, log) if cfg.model.space == "latent" else None
    data = read_spec(cfg, plan.data, 1, cache)
    state = run_training(cfg, WorkerContext(log=log), data)
    print(f"[train] at step {state.step} of {cfg.max_steps}; run folder {cfg.output}", flush=True)


def main(argv=None) -> int:
    return run_job(TrainConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
