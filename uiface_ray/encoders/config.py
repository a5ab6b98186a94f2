"""EncoderConfig (which identity encoder a job loads) and EmbedConfig (the config of ``jobs/embed.py``);
imports no torch, so --help stays fast."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from uiface_ray.config import Config, RayConfig, StorageConfig
from uiface_ray.urls import OptionalUrl, Url

__all__ = ["EmbedConfig", "EncoderConfig"]


class EncoderConfig(Config):
    """Which identity encoder to load and where it runs."""

    kind: Literal["dlib", "iresnet"] = Field(
        "dlib",
        description="'dlib': dlib's pretrained ResNet descriptor (128-d, offline, needs the dlib "
        "extra); 'iresnet': an insightface/ElasticFace IResNet checkpoint (512-d).",
    )
    path: OptionalUrl = Field(
        None,
        description="Weights file (local path or s3://...): .pth/.pt/.safetensors for 'iresnet'; "
        "for 'dlib' a dlib_face_recognition_resnet_model_v1.dat (default: the one in face_recognition_models).",
    )
    depth: Literal[18, 34, 50, 100] = Field(50, description="IResNet depth for 'iresnet' (IR-18/34/50/100).")
    embedding_dim: int = Field(512, ge=1, description="IResNet embedding size (the checkpoint's fc output).")
    device: str = Field("cpu", description="Torch device for 'iresnet' ('cpu', 'cuda', 'cuda:0'); dlib runs on CPU.")
    batch_size: int = Field(64, ge=1, description="Images per forward pass inside one encoder.")


class EmbedConfig(Config):
    """Add identity embeddings to a face table (from jobs/prepare_faces.py)."""

    input: Url = Field("out/faces.parquet", description="Face table to embed (path or s3://).")
    output: OptionalUrl = Field(None, description="Where to write the embedded table; empty: replace input.")
    encoder: EncoderConfig = Field(default_factory=EncoderConfig, description="The identity encoder.")
    num_actors: int | None = Field(
        None, ge=1, description="Encoder actors; empty: one per free CPU slot (one per GPU for a CUDA encoder)."
    )
    block_size: int = Field(64, ge=1, description="Images per task sent to an actor.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Where Ray runs.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object-storage endpoint and keys.")
