"""Run an export: folders, RecordIO and the card, after checking the dataset is complete."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from uiface_ray import storage
from uiface_ray.export.card import build_card, write_card
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.folders import export_image_folders
from uiface_ray.export.recordio import export_recordio
from uiface_ray.storage.fs import check_writable
from uiface_ray.synth.dataset import open_dataset

__all__ = ["ExportResult", "run_export"]


@dataclass
class ExportResult:
    output: str
    images: int
    identities: int
    written: list[str] = field(default_factory=list)


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
            raise FileNotFoundError(f"metrics file not found: {cfg.metrics}")
        return {}
    return json.loads(storage.read_bytes(url, cfg.storage))


def run_export(cfg: ExportConfig) -> ExportResult:
    dataset = open_dataset(cfg.dataset, cfg.storage)
    check_writable(cfg.output, cfg.storage)
    result = ExportResult(cfg.output, dataset.manifest.num_rows, dataset.manifest.num_identities)
    if "folders" in cfg.formats:
        images_url = storage.join(cfg.output, "images")
        export_image_folders(dataset, images_url, cfg.jpeg_quality, cfg.storage, cfg.verify_hashes)
        result.written.append(images_url)
    if "recordio" in cfg.formats:
        rec = export_recordio(dataset, cfg.output, cfg.jpeg_quality, cfg.storage, cfg.verify_hashes)
        result.written += [rec.rec_url, rec.idx_url, rec.property_url]
    if "card" in cfg.formats:
        card = build_card(dataset, _identity_encoder(dataset.manifest.job_config, cfg.storage), _metrics(cfg),
                          cfg.verify_hashes)
        result.written += list(write_card(card, cfg.output, cfg.storage))
    return result
