"""SynthesisConfig: the config of ``jobs/synthesize.py`` (and what decides the dataset's bytes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from uiface_ray.config import ActorPoolConfig, Config, RayConfig, StorageConfig
from uiface_ray.urls import Url
from uiface_ray.sample.config import SamplerConfig

__all__ = ["MAX_SHARD_IMAGES", "SynthesisConfig"]

#: Most images in one shard: an actor holds a shard's encoded images in memory and writes them as
#: one Parquet file (2**20 images of 112x112 are some 30 GB); image_index is int32 anyway.
MAX_SHARD_IMAGES = 2**20


class SynthesisConfig(Config):
    """Generate images for every identity of an identity table into Parquet shards + a manifest."""

    model: Url = Field(..., description="Model folder (path or s3:// URL) saved by save_model.")
    identities: Url = Field(
        ...,
        description="Identities to synthesize: a Parquet identity table written by jobs/make_identities.py, or "
        "a .npy of (N, E) embeddings such as the official release's identities (row i = identity i).",
    )
    output: Url = Field(..., description="Output folder (path or s3://bucket/prefix): shards/ and manifest.json.")
    images_per_identity: int = Field(
        50,
        ge=1,
        le=MAX_SHARD_IMAGES,
        description=f"Images generated per identity (at most {MAX_SHARD_IMAGES}: a shard holds whole identities).",
    )
    identities_per_shard: int = Field(16, ge=1, description="Identities per shard (one shard = one actor task).")
    seed: int = Field(0, ge=0, description="Job seed; each image's seed is image_seed(seed, identity, index).")
    batch_size: int = Field(64, ge=1, description="Images per sampler call inside an actor.")
    image_format: Literal["png", "jpeg"] = Field("png", description="Encoding of the images in the shards.")
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality when image_format is 'jpeg'.")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="How images are sampled.")
    actors: ActorPoolConfig = Field(default_factory=ActorPoolConfig, description="The sampler actor pool.")
    verify_hashes: bool = Field(
        False,
        description="On resume, read every listed shard back and re-hash it (a full read of the dataset); "
        "default: trust a shard whose size and store version (ETag, mtime) match what was recorded at write time.",
    )
    write_attempts: int = Field(
        5,
        ge=1,
        description="Tries of each shard/manifest write before the job stops with 'storage unreachable' "
        "(a failed write is retried as a write, never by regenerating the shard).",
    )
    write_backoff_s: float = Field(
        2.0, ge=0, le=3600, description="Wait before the first write retry; doubled at each further retry."
    )
    lease_ttl_s: float = Field(
        120.0,
        gt=0,
        le=86400,
        description="Lifetime of the lease on the output (refreshed every third of it while the job "
        "runs): a second job on the same output is refused until the first ends or its lease expires.",
    )
    progress_every_s: float = Field(5.0, ge=0, le=86400, description="Seconds between local progress lines.")
    dry_run: bool = Field(
        False,
        description="Print the plan (identities x images, shards, actors) and an estimate (UNet evaluations, "
        "seconds per evaluation measured on one small batch, ETA, cost) and exit without writing.",
    )
    seconds_per_evaluation: float | None = Field(
        None, gt=0, description="--dry_run: seconds per UNet sample-evaluation to assume instead of measuring."
    )
    price_per_device_hour: float | None = Field(
        None, ge=0, description="--dry_run: price of one actor's device (GPU or CPU slot) per hour, for the cost."
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Where the driver connects.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")

    @model_validator(mode="after")
    def _shard_fits(self) -> "SynthesisConfig":
        rows = self.identities_per_shard * self.images_per_identity
        if rows > MAX_SHARD_IMAGES:
            raise ValueError(
                f"identities_per_shard x images_per_identity = {self.identities_per_shard} x "
                f"{self.images_per_identity} = {rows} images in one shard; at most {MAX_SHARD_IMAGES} "
                "(one actor holds a shard in memory): lower identities_per_shard"
            )
        return self

    def generation(self, model_hash: str, identities_sha256: str, dtype: str, device: str) -> dict[str, Any]:
        """What determines the dataset's bytes; a resume with any of these changed is refused
        (``device`` is 'cpu' or 'cuda': kernels differ, so a resume must not switch; ``batch_size``:
        a sample's float32 values depend on the batch it was computed in)."""
        return {
            "model_hash": model_hash,
            "identities_sha256": identities_sha256,
            "images_per_identity": self.images_per_identity,
            "identities_per_shard": self.identities_per_shard,
            "seed": self.seed,
            "batch_size": self.batch_size,  # float32 images depend on the batch (#27 item 5b)
            "image_format": self.image_format,
            "jpeg_quality": self.jpeg_quality if self.image_format == "jpeg" else None,
            "dtype": dtype,
            "device": device,
            "sampler": self.sampler.model_dump(mode="json"),
        }

    def recorded(self) -> dict[str, Any]:
        """The job config as recorded in the manifest (storage secrets left out)."""
        return self.model_dump(
            mode="json", exclude={"storage", "dry_run", "seconds_per_evaluation", "price_per_device_hour"}
        )
