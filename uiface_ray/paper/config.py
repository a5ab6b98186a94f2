"""AblationConfig: the paper's ablation (Table 2) and Figure 2 at our scale (jobs/ablation.py)."""

from __future__ import annotations

from pydantic import Field

from uiface_ray.config import Config, RayConfig, StorageConfig
from uiface_ray.encoders.config import EncoderConfig
from uiface_ray.fr.config import FRTrainParams
from uiface_ray.sample.config import MODES, SamplerConfig, SamplerMode
from uiface_ray.urls import OptionalUrl, Url


class AblationConfig(Config):
    """Table 2 at our scale: one generator, each sampler mode on the same identities and seeds."""

    model: Url = Field(..., description="Generator folder/URL (uiface_ray.model.bundle.save_model).")
    out: Url = Field(..., description="Output URL: per-mode face tables, FR models, results.json, report/.")
    modes: tuple[SamplerMode, ...] = Field(MODES, description="Sampler modes (Table 2 rows).")
    sampler: SamplerConfig = Field(
        default_factory=SamplerConfig,
        description="Sampler settings shared by every mode "
        "(num_inference_steps, guidance_scale, t0, threshold, max_t0, ...); its mode is ignored: each row sets its own.",
    )
    identities: OptionalUrl = Field(
        None,
        description="Identity table (Parquet with embedding) giving the "
        "contexts; default: seeded random unit vectors of the model's embedding size.",
    )
    num_identities: int = Field(50, ge=2, description="Identities per mode.")
    images_per_identity: int = Field(10, ge=2, description="Images per identity.")
    batch_size: int = Field(64, ge=1, description="Images per sampler call.")
    seed: int = Field(0, description="Job seed: image seeds are image_seed(seed, identity, index).")
    device: str = Field("cpu", description="Torch device of the sampler.")
    encoder: EncoderConfig = Field(
        default_factory=EncoderConfig, description="FR encoder for the metrics and Figure 2 (default: dlib)."
    )
    lfw_dir: Url = Field(
        "../shared/data/lfw112",
        description="Real faces (lfw112 layout): DevTrain for the "
        "real row and precision/recall, pairsDevTest for verification.",
    )
    real_faces: OptionalUrl = Field(
        None,
        description="Your own real faces instead of LFW: a face table (.parquet file or folder; columns "
        "image, label[, identity]) giving the real row, the precision/recall reference and verification pairs "
        "drawn from held-out identities (real_verify_fraction); empty: lfw_dir.",
    )
    real_verify_fraction: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="real_faces: fraction of the identities "
        "with 2+ images held out for the verification pairs (never trained on).",
    )
    real_row: bool = Field(True, description="Also train on real faces (the reference row).")
    fr_seeds: int = Field(
        1,
        ge=1,
        le=20,
        description="FR models trained per row, with seeds seed, seed+1, ...; the table gives their mean "
        "accuracy and the seed-to-seed spread (3 to tell a difference between rows from noise).",
    )
    real_min_images: int = Field(5, ge=2, description="Real row: people with at least this many images.")
    real_max_images: int = Field(2000, ge=11, description="Real images for precision/recall (seeded sample).")
    verify_max_pairs: int | None = Field(
        None,
        ge=20,
        description="Use only this many pairsDevTest pairs (real_faces: draw this many held-out pairs; default 1000).",
    )
    real_resolution: int | None = Field(
        None,
        ge=8,
        le=112,
        description="Real faces (the real row, the precision/recall reference and the "
        "pairsDevTest images) are first reduced to this size, so every row is trained and scored at the "
        "generator's resolution; empty: the generator's image size; 112 keeps them as they are.",
    )
    fr: FRTrainParams = Field(
        default_factory=FRTrainParams,
        description="FR training for every row (e.g. depth 18 and fewer epochs on a CPU machine).",
    )
    metrics_k: int = Field(10, ge=1, description="k of improved precision/recall.")
    diversity_identities: int = Field(100, ge=1, description="Identities sampled for 1 - MS-SSIM.")
    intervals: tuple[tuple[int, int], ...] = Field(
        ((800, 1000), (600, 800), (400, 600), (200, 400), (0, 200), (0, 1000)),
        description="Figure 2: timestep intervals [start, end) where the identity guides sampling.",
    )
    interval_identities: int = Field(10, ge=1, description="Figure 2: identities per interval.")
    interval_images: int = Field(4, ge=2, description="Figure 2: images per identity.")
    grid_identities: int = Field(6, ge=1, description="Image grids: identities (rows) per mode.")
    grid_images: int = Field(6, ge=1, description="Image grids: images (columns) per identity.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object-storage access.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Where the Ray driver connects.")
