"""ExportConfig: the config of ``jobs/export.py``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from uiface_ray.config import Config, StorageConfig

__all__ = ["ExportConfig"]


class ExportConfig(Config):
    """Export a finished synthetic dataset as image folders, insightface RecordIO and a dataset card."""

    dataset: str = Field(..., description="Dataset folder written by jobs/synthesize.py (path or s3:// URL).")
    output: str = Field(..., description="Export folder: images/, train.rec, train.idx, property, README.md, "
                        "dataset_card.json.")
    formats: tuple[Literal["folders", "recordio", "card"], ...] = Field(
        ("folders", "recordio", "card"), description="What to write.")
    jpeg_quality: int = Field(95, ge=1, le=100, description="Quality when PNG shards are re-encoded as JPEG.")
    metrics: str | None = Field(
        None, description="JSON file of dataset metrics to put in the card (default: <dataset>/metrics.json "
        "when present).")
    verify_hashes: bool = Field(True, description="Check every shard's SHA-256 against the manifest.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")
