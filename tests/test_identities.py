"""Greedy block-wise identity filtering and the identity table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from uiface_ray.identities.filtering import GreedyIdentityFilter, max_similarity, nearest_neighbour_similarity
from uiface_ray.identities.table import IdentityTableError, read_identity_table, write_identity_table
from uiface_ray import storage


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference_greedy(cands, thr, train=None, leak_thr=None, limit=10**9):
    """Obviously correct one-at-a-time greedy filter."""
    kept, leak, sim = [], 0, 0
    for i, c in enumerate(cands):
        if len(kept) >= limit:
            break
        if train is not None and (train @ c).max() >= leak_thr:
            leak += 1
            continue
        if kept and max(float(cands[k] @ c) for k in kept) >= thr:
            sim += 1
            continue
        kept.append(i)
    return kept, sim, leak


@pytest.mark.parametrize("block", [1, 7, 64, 500])
def test_blockwise_matches_one_at_a_time(block):
    rng = np.random.default_rng(0)
    # low dim so that many candidates collide
    cands = _unit(rng, 400, 6)
    train = _unit(rng, 50, 6)
    want, want_sim, want_leak = _reference_greedy(cands, 0.6, train, 0.95, limit=60)
    filt = GreedyIdentityFilter(60, 6, 0.6, training_embeddings=train, leakage_threshold=0.95, chunk_size=16)
    seeds = np.arange(1000, 1400)
    for s in range(0, len(cands), block):
        if filt.done:
            break
        filt.offer(cands[s : s + block], seeds[s : s + block])
    res = filt.result()
    assert res.summary.kept == len(want)
    np.testing.assert_array_equal(res.seeds, seeds[want])
    np.testing.assert_allclose(res.embeddings, cands[want], atol=1e-6)
    assert res.summary.rejected_similar == want_sim and res.summary.rejected_leakage == want_leak
    assert res.summary.candidates_drawn == want_sim + want_leak + len(want)
    assert want_sim > 0 and want_leak > 0  # the case exercises both reasons
    # every pair of kept identities is under the threshold; nn similarity is the true max
    sims = res.embeddings @ res.embeddings.T
    np.fill_diagonal(sims, -np.inf)
    assert sims.max() < 0.6
    np.testing.assert_allclose(res.nn_similarity, sims.max(axis=1), atol=1e-6)


def test_helpers_chunked_equal_dense():
    rng = np.random.default_rng(1)
    a, b = _unit(rng, 33, 8), _unit(rng, 70, 8)
    np.testing.assert_allclose(max_similarity(a, b, chunk_size=9), (a @ b.T).max(axis=1), atol=1e-6)
    full = a @ a.T
    np.fill_diagonal(full, -np.inf)
    np.testing.assert_allclose(nearest_neighbour_similarity(a, block_size=5), full.max(axis=1), atol=1e-6)


def test_filter_rejects_bad_candidates():
    filt = GreedyIdentityFilter(3, 4, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        filt.offer(np.full((2, 4), np.nan), np.arange(2))
    with pytest.raises(ValueError, match="dim 5"):
        filt.offer(np.ones((2, 5)), np.arange(2))
    with pytest.raises(ValueError, match="leakage_threshold"):
        GreedyIdentityFilter(3, 4, 0.5, training_embeddings=np.ones((2, 4)))


def _table(tmp_path, emb):
    rng = np.random.default_rng(2)
    filt = GreedyIdentityFilter(len(emb), emb.shape[1], 1.1)
    filt.offer(emb, rng.integers(0, 2**31, len(emb)))
    url = str(tmp_path / "identities.parquet")
    return url, write_identity_table(url, filt.result(), {"name": "test", "dim": emb.shape[1]})


def test_identity_table_roundtrip(tmp_path):
    emb = _unit(np.random.default_rng(3), 5, 8)
    url, written = _table(tmp_path, emb)
    back = read_identity_table(url, expected_dim=8)
    np.testing.assert_array_equal(back.identity_ids, np.arange(5))
    np.testing.assert_allclose(back.embeddings, emb, atol=1e-6)
    np.testing.assert_array_equal(back.seeds, written.seeds)
    assert back.encoder == {"name": "test", "dim": 8} and back.sha256 == written.sha256
    meta = storage.parquet.table_metadata(storage.read_table(url))
    assert json.loads(meta["uiface.identities"])["kept"] == 5


def test_identity_table_errors(tmp_path):
    emb = _unit(np.random.default_rng(4), 3, 8)
    url, _ = _table(tmp_path, emb)
    with pytest.raises(IdentityTableError, match="dim 8, but the model expects 16"):
        read_identity_table(url, expected_dim=16)
    with pytest.raises(IdentityTableError, match="not found"):
        read_identity_table(str(tmp_path / "nope.parquet"))
    bad = emb.copy()
    bad[1, 2] = np.nan
    nan_url = str(tmp_path / "nan.parquet")
    storage.write_table(
        nan_url,
        {
            "identity_id": np.arange(3),
            "embedding": list(bad),
            "seed": np.arange(3),
            "nn_similarity": np.zeros(3, np.float32),
        },
    )
    with pytest.raises(IdentityTableError, match="NaN.*row 1"):
        read_identity_table(nan_url)
    empty_url = str(tmp_path / "empty.parquet")
    storage.write_table(
        empty_url,
        {
            "identity_id": np.arange(0),
            "embedding": [np.zeros(0, np.float32)][:0],
            "seed": np.arange(0),
            "nn_similarity": np.zeros(0, np.float32),
        },
    )
    with pytest.raises(IdentityTableError, match="empty"):
        read_identity_table(empty_url)
