"""Run the autoencoder training as one Ray task (one CPU, or one GPU with ``use_gpu``)."""

from __future__ import annotations

import os

from uiface_ray.runtime.session import ray_session
from uiface_ray.runtime.train_diffusion import STORAGE_ENV
from uiface_ray.train.autoencoder import AutoencoderResult, AutoencoderTrainConfig, train_autoencoder

__all__ = ["run_train_autoencoder"]


def _task(config: dict) -> AutoencoderResult:
    cfg = AutoencoderTrainConfig.model_validate(config)
    return train_autoencoder(cfg, log=lambda line: print(line, flush=True))


def run_train_autoencoder(cfg: AutoencoderTrainConfig) -> AutoencoderResult:
    import ray

    env = {k: os.environ[k] for k in STORAGE_ENV if k in os.environ}
    with ray_session(cfg.ray):
        task = ray.remote(_task).options(
            num_cpus=1, num_gpus=1 if cfg.use_gpu else 0, runtime_env={"env_vars": env}
        )
        return ray.get(task.remote(cfg.model_dump(mode="json")))
