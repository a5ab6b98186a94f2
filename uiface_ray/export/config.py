"""ExportConfig: the config of ``jobs/export.py``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from uiface_ray.config import Config, StorageConfig

__all__ = ["CardConfig", "DEFAULT_INTENDED_USE", "ExportConfig"]


DEFAULT_INTENDED_USE = (
    "Training and evaluating face-recognition models for research, as a substitute for web-scraped "
    "real faces. The identities are synthetic and were filtered against the generator's training "
    "identities, but a generator can still reproduce traits of the real faces it was trained on (see "
    "'Generator training data'). Not for identifying, profiling or surveilling real people, and not as "
    "evidence about any real person."
)


class CardConfig(Config):
    """What the dataset card says that the data cannot: the terms of use."""

    license: str = Field("unspecified", description="Licence of the synthetic dataset (for example 'CC BY-NC "
                         "4.0'); it cannot be more permissive than the generator's training data allows.")
    intended_use: str = Field(DEFAULT_INTENDED_USE, description="The card's intended-use paragraph.")


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
    card: CardConfig = Field(default_factory=CardConfig, description="Licence and intended use in the card.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")
