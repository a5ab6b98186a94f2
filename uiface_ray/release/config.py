"""Configs of the release's jobs: OfficialImportConfig (jobs/import_official.py) and ReleaseExportConfig
(jobs/export_release.py).  The release UNet's sizes, a part of every model's config, stay in
``uiface_ray.model.config.ReleaseUNetConfig``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from uiface_ray.config import Config, StorageConfig
from uiface_ray.urls import Url

__all__ = ["OfficialImportConfig", "ReleaseExportConfig"]


class OfficialImportConfig(Config):
    """jobs/import_official.py: the release's files -> one uiface-ray model folder."""

    checkpoint: Url = Field(
        ...,
        description="The release's diffusion checkpoint (model_<step>.ckpt or "
        "ema_averaged_model_<step>.ckpt), local path or s3:// URL.",
    )
    weights: Literal["auto", "ema", "non_ema"] = Field(
        "auto",
        description="Which weights the checkpoint holds; auto: from its name (ema_averaged_model* -> ema, "
        "model* -> non_ema). The release samples from non_ema by default.",
    )
    vq_encoder: Url = Field(..., description="first_stage_encoder_state_dict.pt of the release (path or s3://).")
    vq_decoder: Url = Field(..., description="first_stage_decoder_state_dict.pt of the release (path or s3://).")
    output: Url = Field(..., description="Model folder to write (path or s3://); loadable by load_model.")
    architecture: Literal["release", "tiny"] = Field(
        "release", description="release: the published 216M-parameter UNet; tiny: the test configuration."
    )
    encoder_kind: str = Field("iresnet", description="Identity encoder the model expects (recorded in the bundle).")
    encoder_fingerprint: str = Field("", description="Fingerprint of that encoder's checkpoint, if known.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")


class ReleaseExportConfig(Config):
    """jobs/export_release.py: a release-family model folder -> the release's own checkpoint files."""

    model: Url = Field(..., description="Model folder (path or s3://) of a model trained with model.unet=release.")
    output: Url = Field(..., description="Folder to write the release's files into (path or s3://).")
    step: int | None = Field(
        None, ge=0, description="Step in the checkpoint's name (ema_averaged_model_<step>.ckpt); empty: from the model."
    )
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")
