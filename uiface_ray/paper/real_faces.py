"""The ablation's real faces: the real-data row, the precision/recall reference and the verification pairs.

Two sources, one result (:class:`RealFaces`):

- LFW (``lfw_dir``, the lfw112 layout): DevTrain people for the real row and the reference,
  pairsDevTest (other people) for verification.
- a user's own face table (``real_faces``: a .parquet file or folder with ``image`` and ``label``):
  a seeded ``real_verify_fraction`` of the identities with at least 2 images is held out and the
  verification pairs are drawn from them only (half same-person, half different-person pairs,
  ``verify_max_pairs`` in all, 1000 by default); the other identities give the real row (the first
  ``num_identities`` in label order with at least ``real_min_images`` images, ``images_per_identity``
  each) and the reference sample.  Nobody in the pairs was trained on.

Every image is first reduced to ``resolution`` when given (the generator's size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from uiface_ray import storage
from uiface_ray.evaluate.faceset import (
    FaceSet,
    at_resolution,
    decode_images,
    faceset_at_resolution,
    read_faceset,
    read_image_folder,
)
from uiface_ray.evaluate.config import VerifySetConfig
from uiface_ray.paper.config import AblationConfig
from uiface_ray.evaluate.tenfold import flip_embeddings, pair_scores, ten_fold_accuracy

DEFAULT_PAIRS = 1000


@dataclass
class RealFaces:
    reference: FaceSet  # precision/recall reference sample
    train: FaceSet  # the real row's training set
    verify: Callable  # encoder -> (accuracy, std): 10-fold accuracy on the verification pairs
    verify_name: str  # e.g. "pairsDevTest" or "held-out pairs of faces.parquet"


def _sample(faces: FaceSet, most: int, seed: int) -> FaceSet:
    if len(faces.labels) <= most:
        return faces
    return faces.subset(np.sort(np.random.default_rng([seed, 3]).choice(len(faces.labels), most, replace=False)))


def _reduce(faces: FaceSet, resolution: int | None) -> FaceSet:
    return faces if resolution is None else faceset_at_resolution(faces, resolution)


def lfw_real_faces(cfg: AblationConfig, resolution: int | None) -> RealFaces:
    from uiface_ray.evaluate.verify import verify_set

    people = storage.join(cfg.lfw_dir, "peopleDevTrain.txt")
    root = storage.join(cfg.lfw_dir, "images")
    ref = _sample(read_image_folder(root, people, st=cfg.storage), cfg.real_max_images, cfg.seed)
    train = read_image_folder(
        root,
        people,
        min_images=cfg.real_min_images,
        max_identities=cfg.num_identities,
        max_per_identity=cfg.images_per_identity,
        st=cfg.storage,
    )
    spec = VerifySetConfig(
        name="pairsDevTest",
        pairs=storage.join(cfg.lfw_dir, "pairsDevTest.txt"),
        images_root=root,
        max_pairs=cfg.verify_max_pairs,
    )

    def verify(encoder) -> tuple[float, float]:
        v = verify_set(encoder, spec, 10, cfg.storage, resolution)
        return v.accuracy, v.accuracy_std

    return RealFaces(_reduce(ref, resolution), _reduce(train, resolution), verify, "pairsDevTest")


def held_out_pairs(labels: np.ndarray, num_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first rows, second rows, issame): ``num_pairs // 2`` same-identity pairs and as many
    different-identity pairs of distinct rows, drawn with a seeded generator (same pairs first)."""
    rng = np.random.default_rng([seed, 11])
    by_id = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    multi = [c for c, rows in by_id.items() if len(rows) >= 2]
    if not multi or len(by_id) < 2:
        raise ValueError("verification pairs need an identity with 2 images and at least 2 identities")
    half = num_pairs // 2
    same = [rng.choice(by_id[multi[int(rng.integers(len(multi)))]], 2, replace=False) for _ in range(half)]
    ids = np.array(sorted(by_id))
    diff = []
    for _ in range(half):
        a, b = rng.choice(ids, 2, replace=False)
        diff.append((rng.choice(by_id[int(a)]), rng.choice(by_id[int(b)])))
    pairs = np.array(same + diff, dtype=np.int64)  # (P, 2)
    return pairs[:, 0], pairs[:, 1], np.array([True] * half + [False] * half)


def table_real_faces(cfg: AblationConfig, resolution: int | None) -> RealFaces:
    faces = read_faceset(cfg.real_faces, cfg.storage)
    counts = np.bincount(faces.labels)
    candidates = np.flatnonzero(counts >= 2)
    n_held = int(round(cfg.real_verify_fraction * len(candidates)))
    if n_held < 2:
        raise ValueError(
            f"real_faces {cfg.real_faces}: {len(candidates)} identities have 2 or more images; "
            f"real_verify_fraction={cfg.real_verify_fraction} holds out {n_held}, at least 2 are needed "
            f"for verification pairs"
        )
    held = np.random.default_rng([cfg.seed, 13]).choice(candidates, n_held, replace=False)
    is_held = np.isin(faces.labels, held)
    rest = faces.subset(np.flatnonzero(~is_held))
    chosen, rows = [], []
    for label in np.unique(rest.labels):
        mine = np.flatnonzero(rest.labels == label)
        if len(mine) >= cfg.real_min_images and len(chosen) < cfg.num_identities:
            chosen.append(label)
            rows += list(mine[: cfg.images_per_identity])
    if len(chosen) < 2:
        raise ValueError(
            f"real_faces {cfg.real_faces}: after holding out {n_held} identities for verification, "
            f"{len(chosen)} have at least real_min_images={cfg.real_min_images} images (2 needed)"
        )
    train = rest.subset(np.array(rows))
    train = FaceSet(
        train.images, np.unique(train.labels, return_inverse=True)[1], train.identities, train.source, train.kind
    )
    pair_set = faces.subset(np.flatnonzero(is_held))
    ia, ib, issame = held_out_pairs(pair_set.labels, cfg.verify_max_pairs or DEFAULT_PAIRS, cfg.seed)
    used = np.unique(np.concatenate([ia, ib]))
    images = decode_images([pair_set.images[i] for i in used], 112)  # (U, 112, 112, 3)
    if resolution is not None:
        images = at_resolution(images, resolution)
    where = np.searchsorted(used, np.arange(len(pair_set.labels)))
    ia, ib = where[ia], where[ib]

    def verify(encoder) -> tuple[float, float]:
        emb = flip_embeddings(encoder, images)
        res = ten_fold_accuracy(pair_scores(emb[ia], emb[ib]), issame)
        return res.accuracy, res.accuracy_std

    name = f"held-out pairs of {cfg.real_faces.rstrip('/').rsplit('/', 1)[-1]} ({n_held} identities)"
    return RealFaces(
        _reduce(_sample(rest, cfg.real_max_images, cfg.seed), resolution), _reduce(train, resolution), verify, name
    )


def real_faces(cfg: AblationConfig, resolution: int | None) -> RealFaces:
    return table_real_faces(cfg, resolution) if cfg.real_faces else lfw_real_faces(cfg, resolution)
