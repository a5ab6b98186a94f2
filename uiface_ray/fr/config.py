"""FR training's config: how the model is trained (``FRTrainParams``, shared with the ablation) and the
train_fr job's config (``FRTrainConfig``: the data, the outputs, the runner, the stream)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from uiface_ray.config import Config, RayConfig, StorageConfig, StreamConfig
from uiface_ray.urls import OptionalUrl, Url

__all__ = ["FRTrainConfig", "FRTrainParams"]


class FRTrainParams(Config):
    """How an IResNet + margin-softmax model is trained (shared by train_fr and the ablation).

    The defaults are the paper's recipe (A.1: IR-50, ArcFace s=64 m=0.5, 40 epochs, step-wise
    learning rates 0.1 -> 0.0001); ``configs/train_fr_cpu32.yaml`` is a recipe that learns in
    minutes on a CPU at 32 px."""

    depth: Literal[18, 34, 50, 100] = Field(50, description="IResNet depth (IR-50 is the paper's).")
    width: float = Field(
        1.0,
        gt=0,
        le=4,
        description="Width multiplier of the stages (1: 64, 128, 256, 512 channels as insightface; 0.5 halves them).",
    )
    input_size: int | None = Field(
        None,
        ge=16,
        le=224,
        multiple_of=16,
        description="Side the images are resized to and the fc layer is "
        "sized for (32, 64, 112, ...: a multiple of 16); empty: the dataset's image side rounded down to a "
        "multiple of 16, at most 112.",
    )
    embedding_dim: int = Field(512, ge=8, description="Embedding size of the backbone's fc layer.")
    head: Literal["arcface", "cosface"] = Field(
        "arcface", description="Margin softmax: 'arcface' (cos(theta + m), the paper's) or 'cosface' (cos(theta) - m)."
    )
    head_s: float = Field(64.0, gt=0, description="Scale s of the head (paper: ArcFace s=64; CosFace often 32-64).")
    head_m: float = Field(0.5, ge=0, description="Margin m of the head (ArcFace: radians, paper 0.5; CosFace: 0.35).")
    margin_warmup_epochs: float = Field(
        0.0,
        ge=0,
        description="Ramp the margin linearly from 0 to head_m over "
        "this many epochs (0: full margin from the first step).",
    )
    epochs: int = Field(40, ge=1, description="Epochs over the dataset (paper: 40).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps (overrides epochs when smaller).")
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="Time budget: stop after this many minutes of "
        "training; the lr schedule then runs over the budget (whichever of "
        "steps and minutes is nearer to spent sets the progress).",
    )
    batch_size: int = Field(128, ge=2, description="Images per step on each worker.")
    lr: float = Field(0.1, gt=0, description="Peak learning rate (paper A.1: 0.1, then 0.01, 0.001, 0.0001).")
    lr_schedule: Literal["step", "cosine", "constant"] = Field(
        "step",
        description="'step' (drops by lr_gamma at lr_milestones, the paper's), 'cosine' (to 0 at the "
        "end of the budget) or 'constant'.",
    )
    lr_warmup_epochs: float = Field(0.0, ge=0, description="Linear learning-rate warm-up, in epochs.")
    lr_milestones: tuple[float, ...] = Field(
        (0.25, 0.5, 0.75),
        description="Where the 'step' schedule drops the learning rate by lr_gamma, as "
        "fractions of the budget (the paper gives the four rates, not the epochs of the drops).",
    )
    lr_gamma: float = Field(0.1, gt=0, le=1, description="Factor of each learning-rate drop.")
    optimizer: Literal["sgd", "adam"] = Field(
        "sgd",
        description="'sgd' (momentum 0.9, as insightface/TFace) or 'adam' (A.1 names Adam, but with "
        "a 0.1 rate Adam diverges; use lr=1e-3 with it).",
    )
    weight_decay: float = Field(5e-4, ge=0, description="Weight decay.")
    ema_decay: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Keep an exponential moving average of the backbone "
        "with this decay (e.g. 0.999) and save it instead of the last weights; 0: off.",
    )
    flip: bool = Field(True, description="Random horizontal flip (p = 0.5).")
    augment_p: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Probability of each AdaFace-style augmentation "
        "(crop, low resolution, photometric); 0 disables them.",
    )
    augment_shift: float = Field(
        0.0,
        ge=0,
        le=0.25,
        description="Random translation by up to this fraction of "
        "the side (edge pixels repeated), on every image; 0: off.",
    )
    verify_pairs: OptionalUrl = Field(
        None,
        description="Pairs file (LFW format, e.g. pairsDevTest.txt) scored "
        "during training: the accuracy curve goes to train_log.json and verify_curve.png.",
    )
    verify_images: OptionalUrl = Field(None, description="Image folder of verify_pairs (<name>/<name>_<NNNN>.jpg).")
    verify_every: int = Field(0, ge=0, description="Score verify_pairs every this many steps (0: at the end only).")
    verify_max_pairs: int | None = Field(
        None, ge=20, description="Score only this many pairs (half same, half different)."
    )
    runner: Literal["ray_train", "local"] = Field(
        "ray_train",
        description="'ray_train': num_workers data-parallel Ray Train workers; 'local': one process, "
        "no Ray (num_workers is ignored).",
    )
    num_workers: int = Field(2, ge=1, description="Ray Train workers (data-parallel, DDP).")
    use_gpu: bool = Field(False, description="One GPU per worker (the 'local' runner: train on 'cuda').")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker.")
    torch_threads: int = Field(1, ge=1, description="torch.set_num_threads inside each worker (or the local process).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Autocast dtype of the backbone's forward pass (the margin head stays float32). auto: what the "
        "worker's device runs fastest (bfloat16 on AMX/AVX512-BF16 CPUs and CUDA sm_80+, float16 with a gradient "
        "scaler on sm_70/75, else float32; uiface_ray.precision); float32: the results of before.",
    )


class FRTrainConfig(FRTrainParams):
    """Train an IResNet face-recognition model (ArcFace or CosFace head) on a Parquet dataset, with Ray Train
    or in one process."""

    data: Url = Field(
        ...,
        description="Dataset URL: a synthetic dataset folder (with manifest.json) or a "
        "face table (.parquet file or folder of them, columns image, label, identity).",
    )
    out: Url = Field(
        ...,
        description="Output URL: backbone.pth (insightface layout), train_log.json and, with "
        "verify_pairs, verify_curve.png.",
    )
    seed: int = Field(0, description="Seed of initialisation, shuffling and augmentation.")
    checkpoint_every: int = Field(
        0, ge=0, description="Report a Ray Train checkpoint every N steps (0: once per epoch)."
    )
    ray_storage: OptionalUrl = Field(
        None,
        description="Ray Train storage_path for run checkpoints (shared path or "
        "s3:// on multi-node clusters); default: a local temporary folder.",
    )
    run_name: str = Field(
        "uiface-fr",
        description="Ray Train run name (a rerun with the same name and ray_storage resumes from its last checkpoint).",
    )
    stream: StreamConfig = Field(
        default_factory=StreamConfig,
        description="How the data streams to each worker: seeded order of row-group pieces, shuffle window, "
        "prefetch, loader CPUs (both runners read the same batches in the same order).",
    )
    max_failures: int = Field(
        0,
        ge=0,
        description="ray_train: restart the workers this many times after a worker or node is lost; they resume "
        "from the last checkpoint at its exact step (checkpoint_every sets how much is redone).",
    )
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object-storage access.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Where the Ray driver connects.")
