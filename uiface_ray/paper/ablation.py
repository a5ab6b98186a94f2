"""The paper's ablation (Table 2) at our scale.

For one generator: the same identity contexts and the same per-image seeds through every sampler
mode; for each resulting dataset the dataset metrics, an FR model trained on it (by the
``train_fr`` callable the job passes in: Ray Train) and its 10-fold accuracy on pairsDevTest;
a real-data row trained on DevTrain faces; Figure 2 (identity only inside a timestep interval).
With ``real_faces`` (a user's own face table) the real row, the precision/recall reference and the
verification pairs come from that table instead (:mod:`uiface_ray.paper.real_faces`).
The report is written by :mod:`uiface_ray.paper.ablation_report`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from uiface_ray import storage
from uiface_ray.evaluate.faceset import FaceSet, decode_images, read_faceset
from uiface_ray.paper.interval_sampling import IntervalPoint, interval_similarity
from uiface_ray.evaluate.identity_consistency import IdentityConsistency
from uiface_ray.evaluate.metrics import DatasetMetrics, MetricParams, measure
from uiface_ray.paper.real_faces import RealFaces, real_faces
from uiface_ray.fr.config import FRTrainConfig
from uiface_ray.paper.config import AblationConfig
from uiface_ray.progress import Progress
from uiface_ray.sample.config import SamplerConfig, SamplerMode

log = logging.getLogger(__name__)
REAL_ROW = "real (DevTrain)"


def _progress(cfg: AblationConfig) -> Progress:
    """The ablation's stages: per mode sampling, metrics and one FR model per seed; the real row's
    metrics and FR models; Figure 2."""
    return Progress((2 + cfg.fr_seeds) * len(cfg.modes) + (1 + cfg.fr_seeds) * cfg.real_row + 1, clock=time.monotonic)


def _step(progress: Progress, what: str) -> None:
    """One log line per finished stage: what, its seconds, the total so far and the stages left."""
    progress.add()
    seconds = progress.lap()
    log.info(
        "ablation [%d/%d] %s in %.0f s (elapsed %.0f s, about %.0f s left)",
        progress.done,
        progress.total,
        what,
        seconds,
        progress.elapsed,
        progress.eta_s or 0.0,
    )


@dataclass
class ModeData:
    images: np.ndarray  # (N*K, H, W, 3) uint8, identity-major
    labels: np.ndarray  # (N*K,) identity index
    seeds: list
    t0: np.ndarray  # (N*K,)
    d_t: np.ndarray  # (N*K, S), NaN where not computed
    timesteps: np.ndarray  # (S,)
    unet_evaluations: np.ndarray  # (N*K,)


@dataclass(kw_only=True)
class Row:
    name: str  # sampler mode, or "real (DevTrain)"
    metrics: DatasetMetrics
    verify_accuracy: float | None = None  # mean over the FR seeds
    verify_std: float | None = None  # 10-fold std, mean over the FR seeds
    fr_steps: int | None = None  # first seed's
    fr_loss: tuple = ()  # (first, last), first seed's
    seed_accuracies: list = field(default_factory=list)  # one per FR seed
    seed_std: float | None = None  # std over the FR seeds (ddof 1; None with one seed)
    mean_t0: float | None = None
    unet_evals_per_image: float | None = None
    genuine: np.ndarray = field(default=None, repr=False)
    impostor: np.ndarray = field(default=None, repr=False)


@dataclass
class AblationResult:
    rows: list
    grids: dict  # mode -> (rows, cols, H, W, 3) uint8
    d_t: dict  # mode -> (timesteps, mean d_t)
    intervals: list  # IntervalPoint
    results_url: str
    report_url: str | None = None
    real_resolution: int | None = None  # side real faces were reduced to (None: 112, unchanged)
    verify_name: str = "pairsDevTest"  # the verification pairs every row is scored on


def identity_contexts(cfg: AblationConfig, dim: int) -> np.ndarray:
    """(N, dim) unit-norm identity contexts: an identity table's first N rows or seeded random ones."""
    if cfg.identities:
        from uiface_ray.identities.table import read_identity_table

        table = read_identity_table(cfg.identities, expected_dim=dim, storage_cfg=cfg.storage)
        if len(table) < cfg.num_identities:
            raise ValueError(f"{cfg.identities} has {len(table)} identities, num_identities={cfg.num_identities}")
        emb = np.asarray(table.embeddings[: cfg.num_identities], dtype=np.float32)
    else:
        emb = np.random.default_rng([cfg.seed, 7]).standard_normal((cfg.num_identities, dim)).astype(np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def generate_mode(model, mode: SamplerMode, cfg: AblationConfig, contexts: np.ndarray) -> ModeData:
    from uiface_ray.sample.api import UIFaceSampler, image_seed

    sampler = UIFaceSampler(model, mode_sampler(cfg, mode))
    k = cfg.images_per_identity
    labels = np.repeat(np.arange(len(contexts)), k)
    seeds = [image_seed(cfg.seed, int(i), j) for i in range(len(contexts)) for j in range(k)]
    parts = []
    for s in range(0, len(seeds), cfg.batch_size):
        parts.append(sampler.sample(contexts[labels[s : s + cfg.batch_size]], seeds[s : s + cfg.batch_size]))
    return ModeData(
        images=np.concatenate([p.images for p in parts]),
        labels=labels,
        seeds=seeds,
        t0=np.concatenate([p.t0 for p in parts]),
        d_t=np.concatenate([p.d_t for p in parts]),
        timesteps=parts[0].timesteps,
        unet_evaluations=np.concatenate([p.unet_evaluations for p in parts]),
    )


def write_face_table(
    url: str,
    faces: FaceSet | None,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    sources: list | None = None,
    st=None,
) -> str:
    """A face table (image, label, identity, source, width, height) from a FaceSet or uint8 images."""
    from uiface_ray.storage.tables import FACE_TABLE, write_typed
    from uiface_ray.synth.shard import encode_image

    if faces is not None:
        blobs, labels, names = faces.images, faces.labels, faces.identities
        sizes = decode_images(blobs[:1]).shape[1:3]
        sources = [f"{faces.source}:{i}" for i in range(len(blobs))]
    else:
        blobs = [encode_image(im, "png") for im in images]
        names, sizes = [str(int(v)) for v in labels], images.shape[1:3]
    write_typed(
        FACE_TABLE,
        url,
        {
            "image": blobs,
            "label": np.asarray(labels, np.int64),
            "identity": names,
            "source": sources,
            "width": np.full(len(blobs), sizes[1], np.int32),
            "height": np.full(len(blobs), sizes[0], np.int32),
        },
        st,
    )
    return url


@dataclass(frozen=True)
class FRScores:
    """A row's FR models, one per seed: 10-fold verification accuracies and stds, steps and losses."""

    accuracies: list
    stds: list
    steps: int  # first seed's
    loss: tuple  # (first, last), first seed's

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.mean(self.stds))

    @property
    def seed_std(self) -> float | None:
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else None


def fr_seeds(cfg: AblationConfig) -> list[int]:
    """The FR seeds of every row: ``seed``, ``seed + 1``, ... (``fr_seeds`` of them)."""
    return [cfg.seed + k for k in range(cfg.fr_seeds)]


def train_rows_fr(
    cfg: AblationConfig, name: str, data_url: str, train_fr: Callable, verify: Callable, progress: Progress
) -> FRScores:
    """One FR model per seed of :func:`fr_seeds` on ``data_url``, each verified; a progress line each."""
    accs, stds, first = [], [], None
    for fr_seed in fr_seeds(cfg):
        sub = name if cfg.fr_seeds == 1 else f"{name}/seed-{fr_seed}"
        acc, std, steps, loss = train_and_verify(cfg, sub, data_url, train_fr=train_fr, verify=verify, fr_seed=fr_seed)
        accs.append(acc)
        stds.append(std)
        first = first or (steps, loss)
        _step(progress, f"{name}: FR model (seed {fr_seed}) trained ({steps} steps) and verified ({100 * acc:.2f}%)")
    return FRScores(accuracies=accs, stds=stds, steps=first[0], loss=first[1])


def train_and_verify(
    cfg: AblationConfig, name: str, data_url: str, train_fr: Callable, verify: Callable, fr_seed: int | None = None
) -> tuple:
    """Train an FR model on ``data_url`` (into ``fr/<name>``, seeded ``fr_seed``, default the job seed); its
    10-fold verification accuracy (``verify(encoder)``), std, steps, losses."""
    from uiface_ray.encoders import EncoderConfig, load_encoder

    out = storage.join(cfg.out, "fr", name)
    fr_cfg = FRTrainConfig(
        data=data_url,
        out=out,
        seed=cfg.seed if fr_seed is None else fr_seed,
        run_name=f"ablation-{name.replace('/', '-')}",
        storage=cfg.storage,
        ray=cfg.ray,
        **cfg.fr.model_dump(),
    )
    res = train_fr(fr_cfg)
    enc = load_encoder(
        EncoderConfig(kind="iresnet", path=res.backbone_url, depth=cfg.fr.depth, embedding_dim=cfg.fr.embedding_dim),
        cfg.storage,
    )
    acc, std = verify(enc)
    return acc, std, res.steps, (res.losses[0], res.losses[-1])


def real_resolution(cfg: AblationConfig, model) -> int | None:
    """Side real faces are reduced to: the config's, else the generator's image size (None: 112)."""
    size = cfg.real_resolution or int(model.info.get("image_size", 112))
    return None if size >= 112 else size


def _mean_d_t(data: ModeData) -> tuple[list, list]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps where no sample computed d_t
        mean = np.nanmean(data.d_t, axis=0)
    keep = np.isfinite(mean)
    return data.timesteps[keep].tolist(), mean[keep].tolist()


def mode_sampler(cfg: AblationConfig, mode: SamplerMode) -> SamplerConfig:
    """The shared sampler settings with this row's mode (validated again: some checks depend on it)."""
    return SamplerConfig.model_validate({**cfg.sampler.model_dump(), "mode": mode})


def check_config(cfg: AblationConfig) -> None:
    """Fail before any work: every mode's SamplerConfig and every Figure 2 interval must be valid."""
    for mode in cfg.modes:
        try:
            mode_sampler(cfg, mode)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the config section
            raise ValueError(f"ablation sampler settings are not a valid SamplerConfig: {exc}") from exc
    for lo, hi in cfg.intervals:
        if not 0 <= lo < hi:
            raise ValueError(f"intervals: [{lo}, {hi}) must satisfy 0 <= start < end")
    if cfg.grid_images > cfg.images_per_identity or cfg.interval_identities > cfg.num_identities:
        raise ValueError("grid_images must be <= images_per_identity and interval_identities <= num_identities")


@dataclass(frozen=True)
class Shared:
    """What every row of the table shares: the generator and the identity contexts it samples from, the FR
    encoder of the metrics, the real faces and the metrics' settings, and the job's progress."""

    model: object  # UIFaceModel
    contexts: np.ndarray  # (N, E) unit-norm identity contexts
    encoder: object  # IdentityEncoder of the metrics and Figure 2
    real: RealFaces
    reference: np.ndarray  # (R, D) embeddings of the real reference sample (precision/recall)
    params: MetricParams
    resolution: int | None  # side real faces were reduced to (None: 112, unchanged)
    progress: Progress


def prepare(cfg: AblationConfig) -> Shared:
    """Check the config and the output, load the generator and the encoder, read the real faces."""
    from uiface_ray.encoders import load_encoder
    from uiface_ray.model.bundle import load_model

    check_config(cfg)
    storage.fs.check_writable(cfg.out, cfg.storage)
    model = load_model(cfg.model, device=cfg.device, dtype=torch.float32, storage=cfg.storage)
    contexts = identity_contexts(cfg, model.embedding_dim)
    encoder = load_encoder(cfg.encoder, cfg.storage)
    resolution = real_resolution(cfg, model)
    real = real_faces(cfg, resolution)
    return Shared(
        model=model,
        contexts=contexts,
        encoder=encoder,
        real=real,
        reference=encoder.embed(decode_images(real.reference.images, 112)),
        # the pair counts and the MS-SSIM size are MetricParams' defaults (MetricsConfig's)
        params=MetricParams(diversity_identities=cfg.diversity_identities, k=cfg.metrics_k),
        resolution=resolution,
        progress=_progress(cfg),
    )


def make_row(
    name: str, metrics: DatasetMetrics, consistency: IdentityConsistency, fr: FRScores, data: ModeData | None = None
) -> Row:
    """A table row from a dataset's metrics and genuine/impostor scores, its FR models and, for a sampler
    mode, its images' t0 and UNet evaluations."""
    return Row(
        name=name,
        metrics=metrics,
        verify_accuracy=fr.accuracy,
        verify_std=fr.std,
        fr_steps=fr.steps,
        fr_loss=fr.loss,
        seed_accuracies=fr.accuracies,
        seed_std=fr.seed_std,
        mean_t0=None if data is None else float(data.t0.mean()),
        unet_evals_per_image=None if data is None else float(data.unet_evaluations.mean()),
        genuine=consistency.genuine,
        impostor=consistency.impostor,
    )


def _measure(
    cfg: AblationConfig, shared: Shared, name: str, faces: FaceSet, reference: np.ndarray | None
) -> tuple[DatasetMetrics, IdentityConsistency]:
    """The metrics and genuine/impostor scores of one row's dataset, with its progress line."""
    m, ic = measure(faces, shared.encoder, reference, shared.params, cfg.seed)
    _step(shared.progress, f"{name}: metrics (genuine {m.genuine_mean:.3f}, impostor {m.impostor_mean:.3f})")
    return m, ic


def mode_row(cfg: AblationConfig, shared: Shared, mode: SamplerMode, train_fr: Callable) -> tuple[Row, ModeData]:
    """One sampler mode's row: its images sampled and written as a face table, measured, FR models
    trained on them and verified; and the images."""
    data = generate_mode(shared.model, mode, cfg, shared.contexts)
    url = write_face_table(
        storage.join(cfg.out, "data", f"{mode}.parquet"),
        faces=None,
        images=data.images,
        labels=data.labels,
        sources=[f"seed:{s}" for s in data.seeds],
        st=cfg.storage,
    )
    _step(shared.progress, f"{mode}: {len(data.labels)} images sampled")
    metrics, consistency = _measure(cfg, shared, mode, read_faceset(url, cfg.storage), shared.reference)
    fr = train_rows_fr(cfg, mode, url, train_fr=train_fr, verify=shared.real.verify, progress=shared.progress)
    return make_row(mode, metrics, consistency, fr, data), data


def real_row(cfg: AblationConfig, shared: Shared, train_fr: Callable) -> Row:
    """The reference row: the real faces measured (no precision/recall against themselves), FR-trained."""
    url = write_face_table(storage.join(cfg.out, "data", "real.parquet"), shared.real.train, st=cfg.storage)
    metrics, consistency = _measure(cfg, shared, "real", shared.real.train, None)
    fr = train_rows_fr(cfg, "real", url, train_fr=train_fr, verify=shared.real.verify, progress=shared.progress)
    return make_row(REAL_ROW if not cfg.real_faces else "real (own faces)", metrics, consistency, fr)


def mode_grid(cfg: AblationConfig, images: np.ndarray) -> np.ndarray:
    """(rows, cols, H, W, 3) uint8: the first grid_identities identities' first grid_images images."""
    g, c = min(cfg.grid_identities, cfg.num_identities), min(cfg.grid_images, cfg.images_per_identity)
    return images.reshape(cfg.num_identities, cfg.images_per_identity, *images.shape[1:])[:g, :c]


def figure2(cfg: AblationConfig, shared: Shared) -> list[IntervalPoint]:
    """Figure 2: the intra-class similarity with the identity used only inside each timestep interval."""
    points = interval_similarity(
        shared.model,
        shared.contexts[: cfg.interval_identities],
        shared.encoder,
        intervals=cfg.intervals,
        images_per_identity=cfg.interval_images,
        seed=cfg.seed,
        num_inference_steps=cfg.sampler.num_inference_steps,
        guidance_scale=cfg.sampler.guidance_scale,
    )
    _step(shared.progress, f"Figure 2: {len(points)} timestep intervals")
    return points


def run_ablation(cfg: AblationConfig, train_fr: Callable) -> AblationResult:
    """Table 2 at our scale: a row per sampler mode (and the real row), Figure 2, results.json."""
    shared = prepare(cfg)
    rows, grids, d_t = [], {}, {}
    for mode in cfg.modes:
        row, data = mode_row(cfg, shared, mode, train_fr)
        rows.append(row)
        grids[mode] = mode_grid(cfg, data.images)
        d_t[mode] = _mean_d_t(data)
    if cfg.real_row:
        rows.append(real_row(cfg, shared, train_fr))
    points = figure2(cfg, shared)
    results_url = storage.join(cfg.out, "results.json")
    body = results_json(cfg, rows, points, shared.resolution)
    body["verify_set"] = shared.real.verify_name
    storage.write_bytes_atomic(results_url, json.dumps(body, indent=2).encode(), cfg.storage)
    return AblationResult(
        rows=rows,
        grids=grids,
        d_t=d_t,
        intervals=points,
        results_url=results_url,
        real_resolution=shared.resolution,
        verify_name=shared.real.verify_name,
    )


def results_json(cfg: AblationConfig, rows: list, points: list[IntervalPoint], resolution: int | None = None) -> dict:
    def row(r: Row) -> dict:
        d = {k: v for k, v in asdict(r).items() if k not in ("genuine", "impostor", "metrics")}
        d["metrics"] = asdict(r.metrics)
        return d

    from uiface_ray.evaluate.report import public_config

    return {
        "config": public_config(cfg),
        "real_resolution": resolution,
        "rows": [row(r) for r in rows],
        "figure2": [asdict(p) for p in points],
    }
