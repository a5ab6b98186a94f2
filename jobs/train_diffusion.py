"""Train the identity-conditioned diffusion model (paper 3.1, A.1) on a face table with Ray Train.

Resumes automatically from the newest checkpoint in --output; writes a checkpoint (EMA model,
optimizer/scheduler/EMA state, sample grid, metrics) every --checkpoint_every steps. --model.unet picks
the UNet family: diffusers (default) or release (the official release's architecture; the paper's
settings are configs/train_diffusion_paper.yaml, see docs/TRAINING.md).

    python jobs/train_diffusion.py --config configs/train_diffusion.yaml --data.table=faces.parquet
    ray job submit --working-dir . -- python jobs/train_diffusion.py --config configs/train_diffusion.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.train.config import TrainConfig  # noqa: E402


def body(cfg: TrainConfig) -> None:
    from uiface_ray.runtime.train_diffusion import train_diffusion

    result = train_diffusion(cfg)
    print(
        f"[train] done: step {result.step} (started at {result.start_step}) in {result.wall_s:.0f} s; "
        f"model {result.model}"
    )


def main(argv=None) -> int:
    return run_job(TrainConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
