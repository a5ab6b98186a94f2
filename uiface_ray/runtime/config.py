"""PipelineConfig: the config of ``jobs/pipeline.py`` (imports no Ray, pyarrow or torch)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from uiface_ray.config import Config, RayConfig, StorageConfig

__all__ = ["LFW_IMAGES", "LFW_PEOPLE", "PipelineConfig", "StageOverrides"]

LFW_IMAGES = "../shared/data/lfw112/images"
LFW_PEOPLE = "../shared/data/lfw112/peopleDevTrain.txt"


class StageOverrides(Config):
    """Per-stage overrides, as the stage's own YAML keys (see each job's --help)."""

    prepare_faces: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/prepare_faces.py.")
    embed: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/embed.py.")
    train_diffusion: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/train_diffusion.py.")
    make_identities: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/make_identities.py.")
    synthesize: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/synthesize.py.")
    export: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/export.py.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/metrics.py.")


class PipelineConfig(Config):
    """Run every stage at small scale on one Ray (embedded unless an address is given)."""

    workdir: str = Field("out/pipeline", description="Where every stage writes (local path or s3://).")
    faces_source: str = Field(
        LFW_IMAGES,
        description="Real aligned faces: an image folder (one sub-folder per identity, any image type "
        "Pillow reads) or an insightface train.rec.",
    )
    people_file: str | None = Field(
        "auto",
        description="Restrict to these people (LFW list format); 'auto': LFW's DevTrain people when "
        "faces_source is the LFW folder, else every identity folder; null: every identity folder.",
    )
    min_images: int = Field(5, ge=1, description="Keep identities with at least this many images.")
    max_images_per_identity: int | None = Field(
        6, ge=1, description="Use at most this many images per identity (embedding time; empty: all)."
    )
    train_config: str = Field(
        "configs/train_diffusion_pipeline.yaml", description="Base YAML of the generator's training."
    )
    generator: str | None = Field(
        None, description="Reuse this generator checkpoint (path or s3://) instead of training one."
    )
    generator_cache: str = Field(
        ".cache/generators",
        description="Trained generators are kept here, keyed by training config and data, "
        "and reused (or resumed) by later runs.",
    )
    num_identities: int = Field(16, ge=1, description="Synthetic identities to make.")
    identity_similarity_threshold: float = Field(
        0.9,
        gt=-1,
        le=1,
        description="Keep a candidate identity only if its dlib cosine to every kept one is "
        "under this. Real LFW people: same person about 0.7, different about 0.0; a generator trained for "
        "minutes draws near-identical faces, hence the loose default here (use about 0.5 with a trained one).",
    )
    identity_leakage_threshold: float = Field(
        0.9, gt=-1, le=1, description="Reject a candidate whose dlib cosine to a training identity reaches this."
    )
    images_per_identity: int = Field(4, ge=1, description="Images per synthetic identity.")
    num_actors: int = Field(2, ge=1, description="Sampler actors for identities and synthesis.")
    num_inference_steps: int = Field(50, ge=1, description="DDIM steps of every sampling stage.")
    seed: int = Field(0, description="Job seed of identities and synthesis.")
    stages: StageOverrides = Field(default_factory=StageOverrides, description="Per-stage overrides.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Where Ray runs.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")
