"""PrepareFacesConfig: the config of ``jobs/prepare_faces.py`` (imports no pyarrow or torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from uiface_ray.config import Config, StorageConfig
from uiface_ray.urls import OptionalUrl, Url

__all__ = ["PrepareFacesConfig"]


class PrepareFacesConfig(Config):
    """Turn real aligned faces (image folders or insightface RecordIO) into a face table."""

    input: Url = Field(
        "../shared/data/lfw112/images",
        description="Image-folder tree (one folder per identity) or an insightface train.rec (path or s3://).",
    )
    format: Literal["auto", "folder", "rec"] = Field(
        "auto", description="Input kind; 'auto': 'rec' when input ends with .rec, else 'folder'."
    )
    idx: OptionalUrl = Field(None, description="The .idx of a .rec input (default: next to it, same stem).")
    people_file: OptionalUrl = Field(
        None, description="Only these people (peopleDevTrain.txt format: count line, then name<TAB>n lines)."
    )
    min_images: int = Field(1, ge=1, description="Drop identities with fewer images than this.")
    max_identities: int | None = Field(None, ge=1, description="Keep at most this many identities (in name order).")
    max_images_per_identity: int | None = Field(None, ge=1, description="Keep at most this many images per identity.")
    resolution: int | None = Field(
        112,
        ge=8,
        description="Output side length in pixels (square; non-square inputs are centre-cropped); "
        "null keeps the input size.",
    )
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="Encoding of the stored images.")
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality when images are re-encoded.")
    output: Url = Field("out/faces.parquet", description="Face table to write (path or s3://.../faces.parquet).")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object-storage endpoint and keys.")
