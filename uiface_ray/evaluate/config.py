"""Configs of the evaluation stages (metrics, verification); FR training's is in ``fr/config.py``, the ablation's in
``uiface_ray.paper``."""

from __future__ import annotations


from pydantic import Field

from uiface_ray.config import Config, StorageConfig
from uiface_ray.urls import OptionalUrl, Url
from uiface_ray.encoders.config import EncoderConfig


class VerifySetConfig(Config):
    """One verification benchmark."""

    name: str = Field(..., description="Name shown in results (e.g. 'lfw-devtest', 'cfp_fp').")
    pairs: OptionalUrl = Field(None, description="Pairs file in the LFW format (with images_root).")
    images_root: OptionalUrl = Field(None, description="Folder of <name>/<name>_<NNNN>.jpg for a pairs file.")
    bin: OptionalUrl = Field(None, description="insightface .bin file (read with a restricted unpickler).")
    max_pairs: int | None = Field(None, ge=20, description="Use only this many pairs (half same, half different).")


class VerifyConfig(Config):
    """10-fold verification accuracy of an identity encoder on pairs files and .bin benchmarks."""

    encoder: EncoderConfig = Field(..., description="The encoder to score (an FR checkpoint: kind iresnet).")
    sets: tuple[VerifySetConfig, ...] = Field(..., min_length=1, description="Benchmarks to score.")
    out: OptionalUrl = Field(None, description="Where to write verify.json (optional).")
    folds: int = Field(10, ge=2, description="Number of folds.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object-storage access.")


class MetricsConfig(Config):
    """Dataset metrics: identity consistency, intra-class diversity, improved precision/recall."""

    data: Url = Field(..., description="Dataset to measure: synthetic dataset folder or face table.")
    real: OptionalUrl = Field(
        None, description="Real face set for precision/recall: face table URL, or an image folder with real_people."
    )
    real_people: OptionalUrl = Field(None, description="People list (peopleDevTrain.txt) when real is an image folder.")
    real_max_images: int = Field(2000, ge=11, description="At most this many real images (seeded sample).")
    encoder: EncoderConfig = Field(..., description="FR encoder that defines the feature space.")
    out: Url = Field(..., description="Output URL: metrics.json and genuine_impostor.png.")
    diversity_identities: int = Field(100, ge=1, description="Identities sampled for intra-class diversity.")
    diversity_pairs: int = Field(45, ge=1, description="At most this many image pairs per identity for MS-SSIM.")
    genuine_pairs: int = Field(45, ge=1, description="At most this many genuine pairs per identity.")
    impostor_pairs: int = Field(10000, ge=1, description="Impostor pairs drawn at random.")
    k: int = Field(10, ge=1, description="Nearest-neighbour k of improved precision/recall (paper: 10).")
    msssim_size: int = Field(112, ge=48, description="Images are resized to this size for MS-SSIM.")
    lpips_vgg: OptionalUrl = Field(
        None, description="torchvision VGG16 state dict (.pth) for LPIPS; no LPIPS without it."
    )
    lpips_lin: OptionalUrl = Field(None, description="LPIPS linear-layer weights (vgg.pth of Zhang et al.).")
    seed: int = Field(0, description="Seed of every sample drawn.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object-storage access.")
