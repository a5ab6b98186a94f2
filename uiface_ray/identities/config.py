"""MakeIdentitiesConfig: the config of ``jobs/make_identities.py``."""

from __future__ import annotations

from pydantic import Field

from uiface_ray.config import ActorPoolConfig, Config, RayConfig, StorageConfig
from uiface_ray.urls import OptionalUrl, Url
from uiface_ray.encoders.config import EncoderConfig

__all__ = ["MakeIdentitiesConfig"]


class MakeIdentitiesConfig(Config):
    """Sample random faces with c_e, embed them, keep a diverse set of non-training identities."""

    model: Url = Field(
        ...,
        description="Generator (path or s3:// URL) whose empty context c_e draws random "
        "faces; a separate unconditional checkpoint saved the same way works too.",
    )
    encoder: EncoderConfig = Field(
        default_factory=EncoderConfig, description="Identity encoder; its dim must match the model's embedding_dim."
    )
    output: Url = Field(..., description="Identity table to write (Parquet, path or s3:// URL).")
    summary: OptionalUrl = Field(None, description="Summary JSON (default: the output with .summary.json).")
    num_identities: int = Field(10000, ge=1, description="Identities to keep.")
    similarity_threshold: float = Field(
        0.3,
        gt=-1,
        le=1,
        description="Keep a candidate only if its cosine similarity to every kept identity is "
        "under this (inter-class discrepancy).",
    )
    training_embeddings: OptionalUrl = Field(
        None,
        description="Face table of the generator's training set (Parquet with 'embedding' and 'label', from "
        "jobs/embed.py): candidates too close to one of its identities are rejected (leakage check).",
    )
    leakage_threshold: float = Field(
        0.5,
        gt=-1,
        le=1,
        description="Reject a candidate whose cosine similarity to any training identity's "
        "mean embedding is at least this.",
    )
    seed: int = Field(0, ge=0, description="Candidate k is drawn from image_seed(seed, 'candidate', k).")
    candidates_per_task: int = Field(64, ge=1, description="Candidates per actor task (and filter block).")
    max_candidates: int = Field(
        1_000_000, ge=1, description="Give up (with an error naming the counts) after drawing this many."
    )
    num_inference_steps: int = Field(50, ge=1, description="DDIM steps for the c_e-only faces.")
    actors: ActorPoolConfig = Field(default_factory=ActorPoolConfig, description="The sampler actor pool.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Where the driver connects.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")

    def summary_url(self) -> str:
        if self.summary:
            return self.summary
        base = self.output[: -len(".parquet")] if self.output.endswith(".parquet") else self.output
        return base + ".summary.json"
