"""FR training pieces pinned at known values: schedules, margin warm-up, heads, weight average, shift."""

from __future__ import annotations

import math

import pytest
import torch

from uiface_ray.fr.schedule import margin_at, progress
from uiface_ray.optim.ema import EMA
from uiface_ray.optim.lr import lr_at


def test_progress_is_the_nearer_budget():
    assert progress(0, 100) == 0.0
    assert progress(25, 100) == 0.25
    assert progress(25, 100, elapsed_s=30.0, budget_s=60.0) == 0.5  # the clock is nearer to spent
    assert progress(90, 100, elapsed_s=30.0, budget_s=60.0) == 0.9
    assert progress(10, 100, elapsed_s=120.0, budget_s=60.0) == 1.0


def test_cosine_with_warmup_at_known_steps():
    # Warm-up over 4 steps: (step + 1) / 4 of the cosine value.
    assert lr_at(0, 0.0, 0.1, "cosine", warmup_steps=4) == pytest.approx(0.025)
    assert lr_at(1, 0.0, 0.1, "cosine", warmup_steps=4) == pytest.approx(0.05)
    assert lr_at(3, 0.0, 0.1, "cosine", warmup_steps=4) == pytest.approx(0.1)
    assert lr_at(50, 0.5, 0.1, "cosine", warmup_steps=4) == pytest.approx(0.05)
    assert lr_at(75, 0.75, 0.1, "cosine", warmup_steps=4) == pytest.approx(0.1 * (1 + math.cos(0.75 * math.pi)) / 2)
    assert lr_at(100, 1.0, 0.1, "cosine", warmup_steps=4) == pytest.approx(0.0)


def test_step_schedule_is_the_papers_four_rates():
    rates = [lr_at(s, s / 100, 0.1, "step", 0, (0.25, 0.5, 0.75), 0.1) for s in (0, 24, 25, 50, 74, 75, 99)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.001, 0.001, 0.0001, 0.0001])
    assert lr_at(10, 0.9, 0.1, "constant") == 0.1
    with pytest.raises(ValueError, match="lr schedule must be one of"):
        lr_at(0, 0.0, 0.1, "linear")


def test_margin_warmup_at_known_steps():
    assert [margin_at(s, 0.4, 8) for s in (0, 2, 4, 8, 100)] == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.4])
    assert margin_at(0, 0.5, 0) == 0.5


def test_heads_put_their_margin_on_the_target_logit():
    from uiface_ray.fr.heads import ArcFaceHead, CosFaceHead, build_head

    # Class centres along the axes; an embedding at 60 degrees from class 0 and 30 from class 1.
    emb = torch.tensor([[math.cos(math.pi / 3), math.sin(math.pi / 3)]])
    label = torch.tensor([0])
    arc = ArcFaceHead(2, 2, s=10.0, m=0.5)
    cos = CosFaceHead(2, 2, s=10.0, m=0.35)
    for head in (arc, cos):
        head.weight.data = torch.eye(2)
    assert arc.logits(emb, label)[0].tolist() == pytest.approx(
        [10 * math.cos(math.pi / 3 + 0.5), 10 * math.cos(math.pi / 6)]
    )
    assert cos.logits(emb, label)[0].tolist() == pytest.approx([10 * (0.5 - 0.35), 10 * math.cos(math.pi / 6)])
    arc.m = cos.m = 0.0  # margin warm-up starts here: plain normalised softmax, the same for both
    assert torch.allclose(arc.logits(emb, label), cos.logits(emb, label))
    with torch.no_grad():
        assert float(cos(emb, label)) == pytest.approx(
            float(torch.nn.functional.cross_entropy(cos.logits(emb, label), label))
        )
    with pytest.raises(ValueError, match="head must be one of"):
        build_head("sphereface", 2, 2, 1.0, 0.1)


def test_weight_average_follows_its_decay():
    """FR's weight average: the shared EMA with decay warm-up over the whole state dict."""
    module = torch.nn.BatchNorm1d(1)
    module.weight.data.fill_(1.0)
    ema = EMA(module, decay=0.9, warmup=True, buffers=True)
    assert EMA(module, 0.999, warmup=True).current_decay() == pytest.approx(0.1)  # min(0.999, 1/10)
    module.weight.data.fill_(3.0)
    module(torch.ones(2, 1))  # BN statistics move, num_batches_tracked counts
    ema.update(module)  # decay min(0.9, 1/10) = 0.1: 0.1 * 1 + 0.9 * 3
    assert float(ema.averaged()["weight"]) == pytest.approx(2.8)
    assert float(ema.averaged()["running_mean"]) == pytest.approx(0.9 * float(module.running_mean))
    module.weight.data.fill_(0.0)
    ema.update(module)  # decay min(0.9, 2/11)
    assert float(ema.averaged()["weight"]) == pytest.approx(2.8 * 2 / 11)
    assert int(ema.averaged()["num_batches_tracked"]) == int(module.num_batches_tracked) == 1
    ema.num_updates = 10
    assert ema.current_decay() == pytest.approx(11 / 20)
    ema.num_updates = 10_000
    assert ema.current_decay() == 0.9


def test_random_shift_moves_the_image_and_repeats_edges():
    from uiface_ray.fr.augment import AugmentSpec, augment_batch, random_shift

    img = torch.arange(16.0).view(1, 4, 4).repeat(3, 1, 1)  # (3, 4, 4)
    seen = set()
    for seed in range(40):
        out = random_shift(img, torch.Generator().manual_seed(seed), 0.25)  # up to 1 pixel
        assert out.shape == img.shape
        diff = int(out[0, 1, 1] - img[0, 1, 1])  # 4 dy + dx, with dy, dx in {-1, 0, 1}
        dy = round(diff / 4)
        dx = diff - 4 * dy
        assert torch.equal(out[:, 1:3, 1:3], img[:, 1 + dy : 3 + dy, 1 + dx : 3 + dx])  # the interior, moved
        seen.add((dy, dx))
    assert seen == {(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)}
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    batch = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    spec = AugmentSpec(0.5, 0.0, 0.0, 0.0, shift=0.125)
    assert torch.equal(augment_batch(batch, g1, spec), augment_batch(batch, g2, spec))  # seeded
