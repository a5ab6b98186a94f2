"""The pieces both training stages share (uiface_ray.optim): one EMA and one learning-rate module give,
bit for bit, the numbers of the formulas each stage had before they were shared (written out here)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from uiface_ray.optim.context import WorkerContext
from uiface_ray.optim.ema import EMA
from uiface_ray.optim.lr import lr_at, lr_factor


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    return net.to(memory_format=torch.channels_last)


def _move(net: nn.Module, gen: torch.Generator) -> None:
    """One pretend optimiser step: weights jump, BN statistics and the batch counter move."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    net.train()
    net(torch.randn(5, 3, 6, 6, generator=gen))


def test_fr_weight_average_is_the_old_formula_bit_for_bit():
    """FR had ``state.mul_(d).add_(v, alpha=1 - d)`` per state-dict tensor, integers copied,
    ``d = min(decay, (1 + n) / (10 + n))``; the shared EMA with warmup and buffers gives the same bits."""
    net, gen = _net(0), torch.Generator().manual_seed(1)
    ema = EMA(net, 0.9, warmup=True, buffers=True)
    ref = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for n in range(12):
        _move(net, gen)
        ema.update(net)
        d = min(0.9, (1.0 + n) / (10.0 + n))
        for k, v in net.state_dict().items():
            ref[k].mul_(d).add_(v, alpha=1.0 - d) if v.dtype.is_floating_point else ref[k].copy_(v)
    got = ema.averaged()
    assert list(got) == list(ref)
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
    assert int(got["1.num_batches_tracked"]) == 12
    scored = _net(5)
    ema.copy_to(scored)  # what verification scores
    assert all(torch.equal(scored.state_dict()[k], ref[k]) for k in ref)


def test_diffusion_ema_is_the_old_formula_and_resumes_exactly():
    """Diffusion had ``lerp(shadow, param, 1 - d)`` over the parameters only: the same average up to
    rounding (a lerp and a multiply-add round differently); a saved and reloaded EMA continues exactly."""
    net, gen = _net(0), torch.Generator().manual_seed(2)
    ema = EMA(net, 0.99)
    ref = [p.detach().clone() for p in net.parameters()]
    for _ in range(6):
        _move(net, gen)
        ema.update(net)
        for r, p in zip(ref, net.parameters()):
            r.lerp_(p.detach(), 0.01)
    assert len(ema.shadow) == len(ref) == 6  # parameters only, no BN statistics
    for s, r in zip(ema.shadow, ref):
        torch.testing.assert_close(s, r, rtol=0, atol=1e-6)
    saved = ema.state_dict()
    assert saved["num_updates"] == 6 and saved["warmup"] is False
    again = EMA(_net(3), 0.99)
    again.load_state_dict(saved)
    _move(net, gen)
    ema.update(net)
    again.update(net)
    assert all(torch.equal(a, b) for a, b in zip(ema.shadow, again.shadow))
    with pytest.raises(ValueError, match="EMA state has 6 tensors"):
        EMA(net, 0.99, buffers=True).load_state_dict(saved)


def _old_fr_lr(step, p, base_lr, schedule, warmup_steps, milestones, gamma):
    p = min(max(p, 0.0), 1.0)
    warm = 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
    shape = {
        "cosine": lambda: 0.5 * (1.0 + math.cos(math.pi * p)),
        "step": lambda: gamma ** sum(p >= m for m in milestones),
        "constant": lambda: 1.0,
    }[schedule]()
    return base_lr * warm * shape


def _old_diffusion_factor(step, max_steps, warmup_steps, schedule, min_lr_ratio):
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def test_both_lr_schedules_are_the_old_formulas_bit_for_bit():
    for schedule in ("cosine", "step", "constant"):
        for warm in (0, 7):
            for step in range(0, 130, 3):
                args = (step, step / 117, 0.1, schedule, warm, (0.25, 0.5, 0.75), 0.1)
                assert lr_at(*args) == _old_fr_lr(*args), args
    for schedule in ("cosine", "constant"):
        for warm, floor in ((0, 0.0), (5, 0.0), (5, 0.1)):
            for step in range(0, 60):
                args = (step, 50, warm, schedule, floor)
                assert lr_factor(*args) == _old_diffusion_factor(*args), args


def test_worker_context_defaults_are_one_process():
    ctx = WorkerContext()
    assert (ctx.rank, ctx.world_size, ctx.device, ctx.restored) == (0, 1, torch.device("cpu"), None)
    module = nn.Linear(1, 1)
    assert ctx.wrap(module) is module and ctx.mean(2.5) == 2.5 == ctx.from_rank0(2.5)
    assert ctx.report({"step": 1}) is None and ctx.report({"step": 1}, {"model": {}}) is None
