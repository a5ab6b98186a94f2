"""Run the autoencoder training as one Ray task (one CPU, or one GPU with ``use_gpu``)."""

from __future__ import annotations

from uiface_ray.config import StorageConfig
from uiface_ray.runtime.session import ray_session
from uiface_ray.storage import resolve_urls
from uiface_ray.train.autoencoder import AutoencoderResult, AutoencoderTrainConfig, train_autoencoder

__all__ = ["run_train_autoencoder"]


def _task(config: dict, storage: dict) -> AutoencoderResult:
    cfg = AutoencoderTrainConfig.model_validate({**config, "storage": StorageConfig(**storage)})
    return train_autoencoder(cfg, log=lambda line: print(line, flush=True))


def run_train_autoencoder(cfg: AutoencoderTrainConfig) -> AutoencoderResult:
    """Paths made absolute and storage resolved here, at the driver; the settings travel in the
    task's arguments (never in ``runtime_env``, which Ray logs)."""
    import ray

    cfg = resolve_urls(cfg)
    with ray_session(cfg.ray):
        task = ray.remote(_task).options(num_cpus=1, num_gpus=1 if cfg.use_gpu else 0)
        return ray.get(task.remote(cfg.model_dump(mode="json", exclude={"storage"}), cfg.storage.model_dump()))
