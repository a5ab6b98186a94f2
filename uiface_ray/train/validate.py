"""Checks made before any training step: data, dimensions, storage, and an existing run.

A failed check raises :class:`TrainInputError` naming the field, file or URL, before anything is
written (apart from the writability probe, which removes itself), so no checkpoint is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from uiface_ray.errors import InputError
from uiface_ray.model.config import ModelConfig
from uiface_ray.storage.fs import StorageError, check_writable, exists, join
from uiface_ray.train.checkpoint import read_latest
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.stream import TrainData, scan_table

__all__ = ["RunPlan", "TrainInputError", "validate_run"]


class TrainInputError(InputError, ValueError):
    """The training input or output cannot be used; the message says which and why."""


@dataclass
class RunPlan:
    num_rows: int
    num_identities: int
    encoder_info: dict
    start_step: int  # 0 for a fresh run, else the step of the checkpoint it resumes from
    data: TrainData  # the driver's scan of the table (small: what every worker needs)


def _comparable(model: dict | None) -> dict | None:
    """A model config as saved, with the fields added since filled in (a run from before ``model.unet``
    resumes as the diffusers family it is) and without the sizes of the family it does not use."""
    try:
        model = ModelConfig.model_validate(model).model_dump(mode="json")
    except ValueError:
        return model  # no longer valid: compared as saved, so it differs
    if model["unet"] == "diffusers":
        model.pop("release")
    return model


def _check_resume(cfg: TrainConfig, latest: dict, encoder_info: dict) -> None:
    where = f"{cfg.output}/latest.json"
    saved_model, model = _comparable(latest.get("model_config")), _comparable(cfg.model.model_dump(mode="json"))
    if saved_model != model:
        diff = sorted(k for k in set(saved_model or {}) | set(model) if (saved_model or {}).get(k) != model.get(k))
        raise TrainInputError(
            f"output {cfg.output} holds a run of a different model (model fields differ: {diff}, see {where}); "
            "use another output folder or the same model config"
        )
    saved_enc = latest.get("encoder") or {}
    for key in ("kind", "dim", "fingerprint"):
        if saved_enc.get(key) != encoder_info.get(key):
            raise TrainInputError(
                f"output {cfg.output} was trained with identity encoder {saved_enc}, but {cfg.data.table} "
                f"has {encoder_info} ({key} differs)"
            )
    if int(latest["step"]) > cfg.max_steps:
        raise TrainInputError(f"output {cfg.output} is at step {latest['step']}, beyond max_steps={cfg.max_steps}")


def _check_autoencoder(cfg: TrainConfig) -> None:
    """Latent space: the autoencoder folder is there (else the Ray Train worker would fail to load it)."""
    url = cfg.model.autoencoder
    if cfg.model.space != "latent":
        return
    try:
        found = exists(join(url, "config.json"), cfg.storage)
    except StorageError as exc:
        raise TrainInputError(f"model.autoencoder {url}: {exc}") from exc
    if not found:
        raise TrainInputError(
            f"model.autoencoder {url}: no diffusers autoencoder there (expected a save_pretrained folder with config.json)"
        )


def validate_run(cfg: TrainConfig) -> RunPlan:
    """Validate everything a run needs; return what it will train on and where it starts."""
    _check_autoencoder(cfg)
    try:
        data = scan_table(cfg)
    except InputError as exc:
        raise TrainInputError(str(exc)) from exc
    try:
        check_writable(cfg.output, cfg.storage)
        latest = read_latest(cfg.output, cfg.storage)
    except StorageError as exc:
        raise TrainInputError(f"output {cfg.output} is not writable: {exc}") from exc
    start = 0
    if latest is not None:
        _check_resume(cfg, latest, data.encoder_info)
        start = int(latest["step"])
    if cfg.grid.num_identities > data.num_identities:
        raise TrainInputError(
            f"grid.num_identities={cfg.grid.num_identities} but the table has {data.num_identities} identities"
        )
    per_worker = data.num_rows // cfg.num_workers
    if per_worker < cfg.batch_size // cfg.num_workers:
        raise TrainInputError(
            f"batch_size={cfg.batch_size}: {data.num_rows} images give {per_worker} per worker "
            f"({cfg.num_workers} workers), fewer than a batch of {cfg.batch_size // cfg.num_workers}; "
            "lower batch_size or num_workers"
        )
    return RunPlan(data.num_rows, data.num_identities, data.encoder_info, start, data)
