"""Verification benchmarks: LFW-format pairs files and insightface ``.bin`` files, 10-fold accuracy."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from uiface_ray import storage
from uiface_ray.config import ConfigError, StorageConfig
from uiface_ray.evaluate.bin_reader import parse_bin
from uiface_ray.evaluate.faceset import at_resolution, decode_images
from uiface_ray.evaluate.pairs import PairsError, image_relpath, parse_pairs
from uiface_ray.evaluate.config import VerifyConfig, VerifySetConfig
from uiface_ray.evaluate.tenfold import flip_embeddings, pair_scores, ten_fold_accuracy


@dataclass(frozen=True)
class VerifyResult:
    name: str
    accuracy: float  # mean 10-fold accuracy, in [0, 1]
    accuracy_std: float
    num_pairs: int
    encoder: str  # name:fingerprint
    scores: list  # cosine similarity of each pair
    issame: list

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("scores"), d.pop("issame")
        return d


# (images (U, 112, 112, 3), first-member rows (P,), second-member rows (P,), issame (P,))
PairArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _limit(issame: np.ndarray, max_pairs: int | None) -> np.ndarray:
    """Row indices keeping at most max_pairs / 2 of each class, in file order."""
    if max_pairs is None:
        return np.arange(len(issame))
    keep = [np.flatnonzero(issame == c)[: max_pairs // 2] for c in (True, False)]
    return np.sort(np.concatenate(keep))


def pairs_images(spec: VerifySetConfig, st: StorageConfig | None) -> PairArrays:
    """(images, first-member rows, second-member rows, issame) for an LFW-format pairs file.

    Each distinct image is read once (pairsDevTest's 1000 pairs name 1549 images)."""
    if not spec.images_root:
        raise ConfigError(f"verify set {spec.name!r}: a pairs file needs images_root")
    try:
        text = storage.read_bytes(spec.pairs, st).decode("utf-8")
    except UnicodeDecodeError:
        raise PairsError(f"{spec.pairs}: not a text pairs file") from None
    pairs = parse_pairs(text, spec.pairs)
    issame = np.array([p.same for p in pairs])
    rows = _limit(issame, spec.max_pairs)
    pairs = [pairs[i] for i in rows]
    keys = sorted({(p.name1, p.index1) for p in pairs} | {(p.name2, p.index2) for p in pairs})
    where = {k: i for i, k in enumerate(keys)}
    blobs = [storage.read_bytes(storage.join(spec.images_root, image_relpath(n, i)), st) for n, i in keys]
    ia = np.array([where[(p.name1, p.index1)] for p in pairs])
    ib = np.array([where[(p.name2, p.index2)] for p in pairs])
    return decode_images(blobs, 112), ia, ib, issame[rows]


def bin_images(spec: VerifySetConfig, st: StorageConfig | None) -> PairArrays:
    data = parse_bin(storage.read_bytes(spec.bin, st), spec.bin)
    rows = _limit(data.issame, spec.max_pairs)
    return data.images, 2 * rows, 2 * rows + 1, data.issame[rows]


def verify_set(
    encoder, spec: VerifySetConfig, folds: int = 10, st: StorageConfig | None = None, resolution: int | None = None
) -> VerifyResult:
    """10-fold accuracy of ``encoder`` (an IdentityEncoder) on one benchmark; with ``resolution``
    every image is first reduced to that size (see :func:`faceset.at_resolution`)."""
    if (spec.pairs is None) == (spec.bin is None):
        raise ConfigError(f"verify set {spec.name!r}: give exactly one of pairs (with images_root) or bin")
    images, ia, ib, issame = pairs_images(spec, st) if spec.pairs else bin_images(spec, st)
    used = np.unique(np.concatenate([ia, ib]))
    if resolution is not None:
        images = images.copy()
        images[used] = at_resolution(images[used], resolution)
    emb = np.zeros((len(images), encoder.dim), np.float32)
    emb[used] = flip_embeddings(encoder, images[used])  # only images that some kept pair uses
    scores = pair_scores(emb[ia], emb[ib])
    res = ten_fold_accuracy(scores, issame, folds)
    return VerifyResult(
        name=spec.name,
        accuracy=res.accuracy,
        accuracy_std=res.accuracy_std,
        num_pairs=res.num_pairs,
        encoder=f"{encoder.name}:{encoder.fingerprint}",
        scores=scores.tolist(),
        issame=issame.tolist(),
    )


def run_verify(cfg: VerifyConfig) -> list[VerifyResult]:
    import json

    from uiface_ray.encoders import load_encoder

    encoder = load_encoder(cfg.encoder, cfg.storage)
    results = [verify_set(encoder, s, cfg.folds, cfg.storage) for s in cfg.sets]
    if cfg.out:
        body = {"encoder": cfg.encoder.model_dump(mode="json"), "results": [r.summary() for r in results]}
        storage.write_bytes_atomic(
            storage.join(cfg.out, "verify.json"), json.dumps(body, indent=2).encode(), cfg.storage
        )
    return results
