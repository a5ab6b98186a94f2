"""Dataset metrics for one dataset, each named for what it is.

- identity consistency: genuine / impostor cosine similarity under an FR encoder (Figure 5);
- ``diversity_1_minus_msssim``: intra-class diversity as 1 - MS-SSIM (not LPIPS);
- ``fr_precision`` / ``fr_recall``: improved precision/recall in the FR encoder's embedding space
  (not Inception recall, which needs Inception weights);
- ``lpips_vgg``: mean intra-class LPIPS-VGG, present only when the user supplied its weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from uiface_ray import storage
from uiface_ray.evaluate.faceset import FaceSet, decode_images, read_faceset, read_image_folder
from uiface_ray.evaluate.identity_consistency import IdentityConsistency, identity_consistency
from uiface_ray.evaluate.msssim import intra_class_diversity, intra_pairs
from uiface_ray.evaluate.plots import histogram_plot, png_bytes
from uiface_ray.evaluate.precision_recall import improved_precision_recall
from uiface_ray.evaluate.config import MetricsConfig


@dataclass(frozen=True)
class DatasetMetrics:
    source: str
    num_images: int
    num_identities: int
    encoder: str  # name:fingerprint of the FR encoder (the feature space of everything below)
    genuine_mean: float
    impostor_mean: float
    d_prime: float
    diversity_1_minus_msssim: float
    diversity_identities: int
    fr_precision: float | None
    fr_recall: float | None
    k: int
    lpips_vgg: float | None


@dataclass(frozen=True, kw_only=True)
class MetricParams:
    diversity_identities: int = 100
    diversity_pairs: int = 45
    genuine_pairs: int = 45
    impostor_pairs: int = 10000
    k: int = 10
    msssim_size: int = 112


def measure(
    faces: FaceSet, encoder, real_embeddings: np.ndarray | None, params: MetricParams, seed: int, lpips_model=None
) -> tuple[DatasetMetrics, IdentityConsistency]:
    """All metrics of one dataset; ``real_embeddings`` (same encoder) enable precision/recall."""
    images = decode_images(faces.images, 112)  # (N, 112, 112, 3)
    emb = encoder.embed(images)
    name = f"{encoder.name}:{encoder.fingerprint}"
    ic = identity_consistency(
        emb,
        faces.labels,
        np.random.default_rng([seed, 1]),
        max_pairs_per_identity=params.genuine_pairs,
        num_impostor=params.impostor_pairs,
        encoder=name,
    )
    small = images if params.msssim_size == 112 else decode_images(faces.images, params.msssim_size)
    div = intra_class_diversity(
        small, faces.labels, params.diversity_identities, params.diversity_pairs, np.random.default_rng([seed, 2])
    )
    precision = recall = None
    if real_embeddings is not None:
        pr = improved_precision_recall(real_embeddings, emb, params.k, f"{name} (FR embedding)")
        precision, recall = pr.precision, pr.recall
    lp = None
    if lpips_model is not None:
        from uiface_ray.evaluate.lpips import lpips_distance

        ia, ib, _ = intra_pairs(
            faces.labels, params.diversity_identities, params.diversity_pairs, np.random.default_rng([seed, 2])
        )
        lp = float(lpips_distance(lpips_model, images[ia], images[ib]).mean())
    m = DatasetMetrics(
        source=faces.source,
        num_images=len(faces.labels),
        num_identities=faces.num_classes,
        encoder=name,
        genuine_mean=ic.genuine_mean,
        impostor_mean=ic.impostor_mean,
        d_prime=ic.d_prime,
        diversity_1_minus_msssim=div.diversity,
        diversity_identities=div.num_identities,
        fr_precision=precision,
        fr_recall=recall,
        k=params.k,
        lpips_vgg=lp,
    )
    return m, ic


def real_embeddings(cfg: MetricsConfig, encoder) -> np.ndarray | None:
    """Embeddings of a seeded sample of at most ``real_max_images`` real faces, or None."""
    if not cfg.real:
        return None
    faces = (
        read_image_folder(cfg.real, cfg.real_people, st=cfg.storage)
        if cfg.real_people
        else read_faceset(cfg.real, cfg.storage)
    )
    if len(faces.labels) > cfg.real_max_images:
        rows = np.sort(
            np.random.default_rng([cfg.seed, 3]).choice(len(faces.labels), cfg.real_max_images, replace=False)
        )
        faces = faces.subset(rows)
    return encoder.embed(decode_images(faces.images, 112))


def run_metrics(cfg: MetricsConfig) -> DatasetMetrics:
    """Measure ``cfg.data`` and write metrics.json and genuine_impostor.png under ``cfg.out``."""
    from uiface_ray.encoders import load_encoder

    if (cfg.lpips_vgg is None) != (cfg.lpips_lin is None):
        raise ValueError("LPIPS needs both lpips_vgg and lpips_lin weight files (or neither)")
    storage.fs.check_writable(cfg.out, cfg.storage)
    encoder = load_encoder(cfg.encoder, cfg.storage)
    lpips_model = None
    if cfg.lpips_vgg:
        from uiface_ray.evaluate.lpips import load_lpips_vgg

        lpips_model, _ = load_lpips_vgg(cfg.lpips_vgg, cfg.lpips_lin, cfg.storage)
    params = MetricParams(
        diversity_identities=cfg.diversity_identities,
        diversity_pairs=cfg.diversity_pairs,
        genuine_pairs=cfg.genuine_pairs,
        impostor_pairs=cfg.impostor_pairs,
        k=cfg.k,
        msssim_size=cfg.msssim_size,
    )
    faces = read_faceset(cfg.data, cfg.storage)
    m, ic = measure(faces, encoder, real_embeddings(cfg, encoder), params, cfg.seed, lpips_model=lpips_model)
    plot = histogram_plot(
        {"genuine": ic.genuine, "impostor": ic.impostor}, f"genuine / impostor ({m.encoder})", "cosine similarity"
    )
    storage.write_bytes_atomic(storage.join(cfg.out, "genuine_impostor.png"), png_bytes(plot), cfg.storage)
    storage.write_bytes_atomic(
        storage.join(cfg.out, "metrics.json"), json.dumps(asdict(m), indent=2).encode(), cfg.storage
    )
    return m
