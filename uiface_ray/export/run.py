"""Run an export: folders, RecordIO and the card, validated first and written through a staging folder.

1. Validate everything before writing anything: the dataset is complete (``open_dataset``), the
   metrics file (given or ``<dataset>/metrics.json``) exists and is JSON, every listed shard is
   in the store with the size recorded at write time (one listing; with ``verify_hashes`` each
   shard's SHA-256 is also checked when it is read for export), and the output is writable.
2. Write every requested format under ``<output>/.staging-<token>/``.
3. Move each written entry (``images/``, ``train.rec``, ...) to its place under ``<output>``,
   replacing an earlier export's entry of the same name, and remove the staging folder.

On any error in steps 2-3 the staging folder is removed, so an output never holds a part of an
export: a truncated shard or a missing metrics file leaves it as it was.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from uiface_ray import storage
from uiface_ray.export.card import build_card, generator_record, write_card
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.folders import export_image_folders
from uiface_ray.export.recordio import export_recordio
from uiface_ray.storage.fs import check_writable
from uiface_ray.synth.dataset import DatasetError, SyntheticDataset, open_dataset

__all__ = ["ExportResult", "run_export", "validate_export"]


@dataclass
class ExportResult:
    output: str
    images: int
    identities: int
    written: list[str] = field(default_factory=list)


class ExportInputError(DatasetError):
    """An input of the export (metrics file, shard) is unusable; the message names it."""


def _identity_encoder(job_config: dict, storage_cfg) -> dict:
    """The encoder recorded in the identity table the dataset was made from (empty when unreadable)."""
    from uiface_ray.identities.table import IdentityTableError, read_identity_table

    url = job_config.get("identities")
    if not url:
        return {}
    try:
        return read_identity_table(url, storage_cfg=storage_cfg).encoder
    except (IdentityTableError, storage.StorageError):
        return {"note": f"identity table {url} not readable at export time"}


def _metrics(cfg: ExportConfig) -> dict:
    url = cfg.metrics or storage.join(cfg.dataset, "metrics.json")
    if not storage.exists(url, cfg.storage):
        if cfg.metrics:
            raise ExportInputError(f"metrics file not found: {cfg.metrics}")
        return {}
    try:
        metrics = json.loads(storage.read_bytes(url, cfg.storage))
    except ValueError as exc:
        raise ExportInputError(f"metrics file {url} is not JSON: {exc}") from None
    if not isinstance(metrics, dict):
        raise ExportInputError(f"metrics file {url} must hold a JSON object, got {type(metrics).__name__}")
    return metrics


def _check_shards(dataset: SyntheticDataset) -> None:
    """Every listed shard present with its recorded size (a listing; nothing read)."""
    listing = storage.list_file_info(storage.join(dataset.url, "shards"), ".parquet", dataset.storage_cfg)
    for record in dataset.manifest.shards:
        info = listing.get(record.name)
        if info is None:
            raise ExportInputError(f"{dataset.shard_url(record.name)} is missing; rerun jobs/synthesize.py with "
                                   "the same config to regenerate it")
        if record.size is not None and info.size != record.size:
            raise ExportInputError(f"{dataset.shard_url(record.name)}: {info.size} bytes, the manifest recorded "
                                   f"{record.size} (truncated or replaced); rerun jobs/synthesize.py with the same "
                                   "config to regenerate it")


def validate_export(cfg: ExportConfig) -> tuple[SyntheticDataset, dict]:
    """Everything an export needs, checked before anything is written; returns (dataset, metrics)."""
    dataset = open_dataset(cfg.dataset, cfg.storage)
    metrics = _metrics(cfg) if "card" in cfg.formats else {}
    _check_shards(dataset)
    check_writable(cfg.output, cfg.storage)
    return dataset, metrics


def _write_all(cfg: ExportConfig, dataset: SyntheticDataset, metrics: dict, staging: str) -> list[str]:
    """Write every requested format under ``staging``; returns the names written there."""
    names: list[str] = []
    if "folders" in cfg.formats:
        export_image_folders(dataset, storage.join(staging, "images"), cfg.jpeg_quality, cfg.storage,
                             cfg.verify_hashes)
        names.append("images")
    if "recordio" in cfg.formats:
        export_recordio(dataset, staging, cfg.jpeg_quality, cfg.storage, cfg.verify_hashes)
        names += ["train.rec", "train.idx", "property"]
    if "card" in cfg.formats:
        card = build_card(dataset, _identity_encoder(dataset.manifest.job_config, cfg.storage), metrics,
                          cfg.verify_hashes, license=cfg.card.license, intended_use=cfg.card.intended_use,
                          generator=generator_record(dataset.manifest.job_config.get("model"), cfg.storage))
        write_card(card, staging, cfg.storage)
        names += ["dataset_card.json", "README.md"]
    return names


def run_export(cfg: ExportConfig) -> ExportResult:
    cfg = cfg.model_copy(update={"dataset": storage.absolute_url(cfg.dataset), "output": storage.absolute_url(cfg.output),
                                 "metrics": storage.absolute_url(cfg.metrics),
                                 "storage": storage.resolve_storage(cfg.storage)})
    dataset, metrics = validate_export(cfg)
    staging = storage.join(cfg.output, f".staging-{uuid.uuid4().hex[:12]}")
    result = ExportResult(cfg.output, dataset.manifest.num_rows, dataset.manifest.num_identities)
    try:
        names = _write_all(cfg, dataset, metrics, staging)
        for name in names:
            target = storage.join(cfg.output, name)
            storage.remove(target, cfg.storage, recursive=True)
            storage.move(storage.join(staging, name), target, cfg.storage)
            result.written.append(target)
    finally:
        storage.remove(staging, cfg.storage, recursive=True)
    return result
