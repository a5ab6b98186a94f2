"""Training checkpoints on local or ``s3://`` storage, complete or absent.

Layout of a run folder::

    <output>/checkpoints/step-00000500/model/...        EMA weights, a UIFace model (load_model)
    <output>/checkpoints/step-00000500/train_state.pt   raw weights, optimizer, LR scheduler, EMA, step
    <output>/checkpoints/step-00000500/samples.png      the sample grid
    <output>/checkpoints/step-00000500/metrics.jsonl    every metrics line of the run so far
    <output>/latest.json                                written last: the newest complete checkpoint

Each checkpoint goes to a new folder and ``latest.json`` is replaced atomically after the folder
is complete, so a crash while saving leaves the previous checkpoint in force; older folders are
pruned only after that.
"""

from __future__ import annotations

import io
import json

import torch

from uiface_ray import jsonfile
from uiface_ray.config import StorageConfig
from uiface_ray.errors import InputError
from uiface_ray.model.bundle import UIFaceModel, save_model
from uiface_ray.storage.fs import StorageError, join, list_files, read_bytes, remove, write_bytes_atomic

__all__ = ["LATEST", "checkpoint_url", "load_train_state", "read_latest", "save_checkpoint"]

LATEST = "latest.json"


def checkpoint_url(output: str, step: int) -> str:
    return join(output, "checkpoints", f"step-{step:08d}")


def read_latest(output: str, storage: StorageConfig | None = None) -> dict | None:
    """The record of the newest complete checkpoint, or None for a fresh run folder."""
    try:
        data = read_bytes(join(output, LATEST), storage)
    except StorageError as exc:
        if "not found" in str(exc):
            return None
        raise
    try:
        record = jsonfile.loads(data)
        if not isinstance(record, dict):
            raise jsonfile.JSONFileError(f"holds a {type(record).__name__}, not an object")
    except jsonfile.JSONFileError as exc:
        raise InputError(
            f"{join(output, LATEST)} is damaged ({exc}); it names the newest checkpoint of the run: "
            "restore it, or choose another output"
        ) from None
    return record


def load_train_state(checkpoint: str, storage: StorageConfig | None = None) -> dict:
    data = read_bytes(join(checkpoint, "train_state.pt"), storage)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def save_checkpoint(
    output: str,
    step: int,
    ema_model: UIFaceModel,
    train_state: dict,
    record: dict,
    metrics: list[dict],
    grid_png: bytes | None = None,
    keep: int = 3,
    storage: StorageConfig | None = None,
) -> str:
    """Write checkpoint ``step`` then point ``latest.json`` at it; returns the checkpoint URL."""
    url = checkpoint_url(output, step)
    save_model(ema_model, join(url, "model"), storage)
    buf = io.BytesIO()
    torch.save(train_state, buf)
    write_bytes_atomic(join(url, "train_state.pt"), buf.getvalue(), storage)
    lines = "".join(json.dumps(m, sort_keys=True) + "\n" for m in metrics)
    write_bytes_atomic(join(url, "metrics.jsonl"), lines.encode(), storage)
    if grid_png is not None:
        write_bytes_atomic(join(url, "samples.png"), grid_png, storage)
    latest = dict(record, step=step, checkpoint=url, model=join(url, "model"))
    write_bytes_atomic(join(output, LATEST), json.dumps(latest, indent=2, sort_keys=True).encode(), storage)
    if keep:
        _prune(output, keep, storage)
    return url


def _prune(output: str, keep: int, storage: StorageConfig | None) -> None:
    folders = [
        u for u in list_files(join(output, "checkpoints"), storage=storage) if u.rsplit("/", 1)[-1].startswith("step-")
    ]
    for old in sorted(folders)[:-keep]:
        remove(old, storage, recursive=True)
