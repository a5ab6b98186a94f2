"""Train a small VQModel / AutoencoderKL on a face table, for latent-space diffusion.

python jobs/train_autoencoder.py --config configs/train_autoencoder.yaml --table=faces.parquet
ray job submit --working-dir . -- python jobs/train_autoencoder.py --config configs/train_autoencoder.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.train.config import AutoencoderTrainConfig  # noqa: E402


def body(cfg: AutoencoderTrainConfig) -> None:
    from uiface_ray.runtime.train_autoencoder import run_train_autoencoder

    result = run_train_autoencoder(cfg)
    print(
        f"[autoencoder] done: {result.steps} steps, loss {result.first_loss:.4f} -> {result.final_loss:.4f}, "
        f"PSNR {result.psnr_db:.2f} dB, scaling_factor {result.scaling_factor:.4f}, {result.wall_s:.0f} s "
        f"-> {result.output}"
    )


def main(argv=None) -> int:
    return run_job(AutoencoderTrainConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
