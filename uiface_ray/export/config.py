"""ExportConfig: the config of ``jobs/export.py``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from uiface_ray.config import Config, RayConfig, StorageConfig
from uiface_ray.urls import OptionalUrl, Url

__all__ = ["CardConfig", "DEFAULT_INTENDED_USE", "ExportConfig", "ExportWorkersConfig"]


DEFAULT_INTENDED_USE = (
    "Training and evaluating face-recognition models for research, as a substitute for web-scraped "
    "real faces. The identities are synthetic (the card says where they came from and whether they were "
    "filtered), but a generator can still reproduce traits of the real faces it was trained on (see "
    "'Generator and its training data'). Not for identifying, profiling or surveilling real people, and not as "
    "evidence about any real person."
)


class CardConfig(Config):
    """What the dataset card says that the data cannot: the terms of use."""

    license: str = Field(
        "unspecified",
        description="Licence of the synthetic dataset (for example 'CC BY-NC "
        "4.0'); it cannot be more permissive than the generator's training data allows.",
    )
    intended_use: str = Field(DEFAULT_INTENDED_USE, description="The card's intended-use paragraph.")


class ExportWorkersConfig(Config):
    """The Ray workers that export one shard per task (``uiface_ray.runtime.export``)."""

    num_workers: int | None = Field(
        None,
        ge=1,
        description="Worker actors; empty: one per cpus_per_worker CPUs of the cluster (at most one "
        "per shard to export).",
    )
    cpus_per_worker: int = Field(1, ge=1, description="num_cpus of each worker actor.")
    tasks_per_worker: int = Field(
        2, ge=1, description="Shards queued per worker (2 overlaps one shard's read with the previous one's writes)."
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="Times one shard is tried before the export fails with its error (a worker's death counts).",
    )
    max_restarts: int = Field(1, ge=0, description="Times Ray restarts a crashed worker in its own slot.")


class ExportConfig(Config):
    """Export a finished synthetic dataset as image folders, insightface RecordIO and a dataset card."""

    dataset: Url = Field(..., description="Dataset folder written by jobs/synthesize.py (path or s3:// URL).")
    output: Url = Field(
        ...,
        description="Export folder: images/, labels.tsv, train.rec, train.idx, property, README.md, "
        "dataset_card.json. New, empty, or made by an earlier export (its .uiface-export.json); outside the "
        "dataset. An earlier export's entries are replaced; other files are never touched.",
    )
    formats: tuple[Literal["folders", "recordio", "card"], ...] = Field(
        ("folders", "recordio", "card"), description="What to write."
    )
    jpeg_quality: int = Field(95, ge=1, le=100, description="Quality when PNG shards are re-encoded as JPEG.")
    metrics: OptionalUrl = Field(
        None,
        description="JSON file of dataset metrics to put in the card (default: <dataset>/metrics.json when present).",
    )
    verify_hashes: bool = Field(True, description="Check every shard's SHA-256 against the manifest.")
    card: CardConfig = Field(default_factory=CardConfig, description="Licence and intended use in the card.")
    workers: ExportWorkersConfig = Field(
        default_factory=ExportWorkersConfig, description="Ray workers that export the shards (jobs/export.py)."
    )
    write_attempts: int = Field(
        5,
        ge=1,
        description="Tries of each write before the export stops (the store "
        "unreachable); what is written stays for the rerun.",
    )
    write_backoff_s: float = Field(2.0, ge=0, description="Wait before the first write retry, doubled each retry.")
    progress_every_s: float = Field(10.0, gt=0, description="Seconds between progress lines.")
    stitch_chunk_mb: int = Field(
        8,
        ge=1,
        le=1024,
        description="Bytes copied at a time (MiB) when the per-shard "
        "parts are stitched into train.rec: the stitch's memory bound.",
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray cluster to connect to (jobs/export.py).")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")
