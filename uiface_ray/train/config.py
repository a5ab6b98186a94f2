"""Config of the diffusion training stage (``jobs/train_diffusion.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from uiface_ray.config import Config, RayConfig, StorageConfig, StreamConfig
from uiface_ray.urls import OptionalUrl, Url
from uiface_ray.model.config import ModelConfig

__all__ = ["AutoencoderTrainConfig", "DataConfig", "DiffusionConfig", "GridConfig", "OptimConfig", "TrainConfig"]


class DataConfig(Config):
    """The Parquet face table with its identity embeddings."""

    table: Url = Field(..., description="Face table: a .parquet file or a folder of them (local or s3://).")
    min_images_per_identity: int = Field(1, ge=1, description="Use only identities with at least this many images.")
    max_identities: int | None = Field(None, ge=1, description="Use at most this many identities (most images first).")
    hflip: bool = Field(True, description="Random horizontal flips of the training images.")
    latent_cache: OptionalUrl = Field(
        None,
        description="model.space=latent: folder (local or s3://) of the latent cache, the faces encoded once "
        "through the autoencoder (empty: <table>.latents beside the table).",
    )


class OptimConfig(Config):
    """Adam with a cosine-annealed learning rate (paper A.1), optional linear warm-up."""

    lr: float = Field(1e-4, gt=0, description="Peak learning rate (paper: 1e-4).")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay (0: plain Adam as in the paper).")
    lr_schedule: Literal["cosine", "constant"] = Field("cosine", description="LR after warm-up.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps from 0 to lr.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Cosine floor as a fraction of lr.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm (empty: no clipping).")


class DiffusionConfig(Config):
    """The training objective: eq. 3 with the identity replaced by c_e with probability p_uncond."""

    p_uncond: float = Field(0.2, ge=0, le=1, description="Probability of replacing the identity by c_e.")
    context_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="model.unet=release only: dropout of the projected context's elements before the c_e "
        "replacement (the release's context_dropout_probability, 0.25; 0: none).",
    )
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA momentum of the weights that are saved and sampled.")
    ema_warmup: bool = Field(
        False, description="Use decay min(ema_decay, (1+step)/(10+step)) so short runs get a useful EMA."
    )
    loss_weighting: Literal["none", "min_snr"] = Field(
        "none", description="'none': eq. 3; 'min_snr': Min-SNR-gamma weights per timestep."
    )
    snr_gamma: float = Field(5.0, gt=0, description="gamma of the Min-SNR weighting.")


class GridConfig(Config):
    """The sample grid written with each checkpoint (plain DDIM with the context tokens)."""

    num_identities: int = Field(8, ge=0, description="Training identities in the grid (rows).")
    num_seeds: int = Field(4, ge=1, description="Seeds per identity (columns); the last row uses c_e.")
    num_inference_steps: int = Field(50, ge=1, description="DDIM steps.")
    seed: int = Field(1234, description="Base seed of the grid's noise.")


class TrainConfig(Config):
    """Train the identity-conditioned diffusion model with Ray Train (DDP)."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="The generator.")
    data: DataConfig = Field(..., description="Training data.")
    stream: StreamConfig = Field(default_factory=StreamConfig, description="How the data streams to each worker.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimiser and LR schedule.")
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig, description="Training objective and EMA.")
    grid: GridConfig = Field(default_factory=GridConfig, description="Sample grid per checkpoint.")
    output: Url = Field(..., description="Run folder (local or s3://): checkpoints/, latest.json.")
    max_steps: int = Field(1000, ge=1, description="Total optimiser steps of the run (the cosine length).")
    batch_size: int = Field(64, ge=1, description="Global batch size (split evenly over the workers).")
    checkpoint_every: int = Field(500, ge=1, description="Save a checkpoint every K steps (and at the end).")
    keep_checkpoints: int = Field(3, ge=0, description="Keep this many latest checkpoints (0: keep all).")
    log_every: int = Field(10, ge=1, description="Report metrics and print progress every this many steps.")
    seed: int = Field(0, description="Seed of the initial weights, data order, noise and c_e replacement.")
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP ranks).")
    use_gpu: bool = Field(False, description="One GPU per worker.")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs reserved per worker.")
    torch_threads: int | None = Field(1, ge=1, description="torch threads per worker (empty: torch's default).")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast dtype of the forward pass. auto: what the worker's device runs fastest "
        "(bf16 on AMX/AVX512-BF16 CPUs, bf16 + channels_last on CUDA sm_80+, fp16 with a gradient scaler on "
        "sm_70/75, else none; uiface_ray.precision); no: float32 throughout (the results of before).",
    )
    max_failures: int = Field(0, ge=-1, description="Ray Train restarts after a worker failure (-1: unlimited).")
    stop_after_minutes: float | None = Field(
        None,
        gt=0,
        description="Checkpoint and stop at the first log step after this much wall time "
        "(build a long run up in pieces; rerun to resume).",
    )
    fail_at_step: int | None = Field(None, ge=1, description="Testing: raise after this step (a simulated crash).")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.batch_size % self.num_workers:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by num_workers {self.num_workers}")
        if self.diffusion.context_dropout > 0 and self.model.unet != "release":
            raise ValueError(
                f"diffusion.context_dropout={self.diffusion.context_dropout} needs model.unet=release "
                "(the diffusers family's c_e lives in identity space, before its encoder)"
            )
        return self


class AutoencoderTrainConfig(Config):
    """Train a small VQModel / AutoencoderKL on the images of a face table."""

    table: Url = Field(..., description="Face table (.parquet file or folder; only 'image' is read).")
    output: Url = Field(..., description="Folder (local or s3://) for the diffusers save_pretrained layout.")
    kind: Literal["vq", "kl"] = Field("vq", description="'vq': diffusers VQModel (as LDM VQ-f4); 'kl': AutoencoderKL.")
    image_size: int = Field(32, ge=8, description="Training image side in pixels.")
    block_out_channels: tuple[int, ...] = Field(
        (32, 64, 64), description="Encoder/decoder channels; downscale = 2 ** (levels - 1)."
    )
    layers_per_block: int = Field(1, ge=1, description="ResNet layers per block.")
    norm_num_groups: int = Field(16, ge=1, description="GroupNorm groups.")
    latent_channels: int = Field(3, ge=1, description="Latent channels (LDM VQ-f4: 3).")
    num_vq_embeddings: int = Field(512, ge=2, description="VQ codebook size.")
    kl_weight: float = Field(1e-6, ge=0, description="KL weight (kind 'kl').")
    steps: int = Field(2000, ge=1, description="Optimiser steps.")
    batch_size: int = Field(32, ge=1, description="Batch size.")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate (cosine-annealed).")
    log_every: int = Field(50, ge=1, description="Print the loss every this many steps.")
    seed: int = Field(0, description="Seed of weights and batch order.")
    stream: StreamConfig = Field(default_factory=StreamConfig, description="How the faces stream to the trainer.")
    torch_threads: int | None = Field(1, ge=1, description="torch threads (empty: torch's default).")
    use_gpu: bool = Field(False, description="Train on one GPU.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")
