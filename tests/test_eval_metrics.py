"""Dataset metrics on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uiface_ray.fr.heads import ArcFaceHead
from uiface_ray.fr.augment import AugmentSpec, augment_batch
from uiface_ray.evaluate.identity_consistency import identity_consistency
from uiface_ray.evaluate.msssim import intra_class_diversity, ms_ssim
from uiface_ray.evaluate.precision_recall import improved_precision_recall


def _faces(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, size // 8, size // 8, 3)).astype(np.float64)
    img = np.kron(base, np.ones((1, 8, 8, 1)))  # blocky images with structure at every scale
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


def test_ms_ssim_identical_is_one_and_diversity_zero():
    imgs = _faces(3)
    assert np.allclose(ms_ssim(imgs, imgs), 1.0)
    same = np.repeat(imgs[:1], 4, axis=0)
    res = intra_class_diversity(same, np.zeros(4, dtype=np.int64), None, 10, np.random.default_rng(0))
    assert res.diversity == pytest.approx(0.0, abs=1e-12)
    assert res.num_pairs == 6


def test_ms_ssim_orders_similarity():
    a = _faces(1, seed=1)
    rng = np.random.default_rng(2)
    slightly = np.clip(a + rng.normal(0, 5, a.shape), 0, 255).astype(np.uint8)
    other = _faces(1, seed=3)
    s_close, s_far = ms_ssim(a, slightly)[0], ms_ssim(a, other)[0]
    assert 0.0 <= s_far < s_close < 1.0
    labels = np.array([0, 0, 1, 1])
    images = np.concatenate([a, slightly, a, other])
    res = intra_class_diversity(images, labels, None, 10, np.random.default_rng(0))
    assert res.per_identity[0] == pytest.approx(1 - s_close)
    assert res.per_identity[1] == pytest.approx(1 - s_far)
    with pytest.raises(ValueError, match="48 px"):
        ms_ssim(a[:, :32, :32], a[:, :32, :32])


def test_precision_recall_disjoint_and_overlapping_clusters():
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (200, 8))
    far = rng.normal(0, 1, (200, 8)) + 100.0
    pr = improved_precision_recall(real, far, k=5, feature_space="test")
    assert (pr.precision, pr.recall) == (0.0, 0.0)
    same = improved_precision_recall(real, real.copy(), k=5)
    assert (same.precision, same.recall) == (1.0, 1.0)
    # Generated covers one of two real clusters exactly: precision 1, recall 1/2.
    real2 = np.concatenate([rng.normal(0, 0.1, (100, 8)), rng.normal(0, 0.1, (100, 8)) + 50.0])
    half = real2[:100] + rng.normal(0, 1e-6, (100, 8))
    pr2 = improved_precision_recall(real2, half, k=3)
    assert pr2.precision == 1.0
    assert pr2.recall == 0.5
    # A generated set spread far wider than the real one: recall stays high, precision drops.
    wide = rng.normal(0, 10, (200, 8))
    pr3 = improved_precision_recall(real, wide, k=5)
    assert pr3.precision < 0.2 < pr3.recall


def test_genuine_impostor_on_constructed_embeddings():
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:4]  # 4 orthogonal identities
    labels = np.repeat(np.arange(4), 5)
    emb = centres[labels] + rng.normal(0, 0.05, (20, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    res = identity_consistency(emb, labels, np.random.default_rng(1), num_impostor=500)
    assert len(res.genuine) == 4 * 10
    assert len(res.impostor) == 500
    assert res.genuine.min() > 0.9 and abs(res.impostor_mean) < 0.1
    assert res.d_prime > 10
    # Identical images of one identity: genuine similarity 1.
    res1 = identity_consistency(centres[labels], labels, np.random.default_rng(1), num_impostor=50)
    assert np.allclose(res1.genuine, 1.0) and np.allclose(res1.impostor, 0.0)


def test_arcface_margin_and_scale():
    head = ArcFaceHead(4, 3, s=64.0, m=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3, 4))
    emb = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # 45 degrees from class 0 and class 1
    logits = head.logits(emb, torch.tensor([0]))
    theta = np.pi / 4
    assert logits[0, 0].item() == pytest.approx(64 * np.cos(theta + 0.5), rel=1e-5)
    assert logits[0, 1].item() == pytest.approx(64 * np.cos(theta), rel=1e-5)
    no_margin = ArcFaceHead(4, 3, s=64.0, m=0.0)
    with torch.no_grad():
        no_margin.weight.copy_(head.weight)
    assert head(emb, torch.tensor([0])).item() > no_margin(emb, torch.tensor([0])).item() > 0
    with pytest.raises(ValueError, match="labels"):
        head(emb, torch.tensor([3]))


def test_augment_is_seeded_and_keeps_shape():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    spec = AugmentSpec(0.5, 1.0, 1.0, 1.0)
    a = augment_batch(x, torch.Generator().manual_seed(5), spec)
    b = augment_batch(x, torch.Generator().manual_seed(5), spec)
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    none = augment_batch(x, torch.Generator().manual_seed(5), AugmentSpec(0, 0, 0, 0))
    assert torch.equal(none, x)
    flipped = augment_batch(x, torch.Generator().manual_seed(5), AugmentSpec(1.0, 0, 0, 0))
    assert torch.equal(flipped, x.flip(-1))


def test_lpips_needs_both_weight_files_and_measures_difference(tmp_path):
    from uiface_ray.encoders.checkpoint import CheckpointError
    from uiface_ray.evaluate.lpips import LPIPSVGG, load_lpips_vgg, lpips_distance

    torch.manual_seed(0)
    ref = LPIPSVGG()
    vgg = {f"features.{k}": v for k, v in ref.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files carry the classifier too
    lin = {f"lin{k}": v.abs() for k, v in ref.lins.state_dict().items()}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "lin.pth")
    model, fp = load_lpips_vgg(str(tmp_path / "vgg16.pth"), str(tmp_path / "lin.pth"))
    a, b = _faces(2, seed=4), _faces(2, seed=5)
    assert torch.allclose(lpips_distance(model, a, a), torch.zeros(2), atol=1e-6)
    assert (lpips_distance(model, a, b) > 0).all() and fp
    del lin["lin4.model.1.weight"]
    torch.save(lin, tmp_path / "lin_bad.pth")
    with pytest.raises(CheckpointError, match="lin_bad.pth.*4.model.1.weight"):
        load_lpips_vgg(str(tmp_path / "vgg16.pth"), str(tmp_path / "lin_bad.pth"))
