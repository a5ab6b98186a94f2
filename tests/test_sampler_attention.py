"""Attention processors and the adaptive-t0 map, one diffusers Attention layer at a time."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from uiface_ray.sample.adaptive_t0 import combine_maps, layer_grid, map_distance, settle, spatial_map
from uiface_ray.sample.attention import AttentionPlan, UIFaceAttnProcessor

torch.set_num_threads(1)
HEADS, HEAD_DIM, TOKENS, SIDE = 2, 8, 6, 4
DIM = HEADS * HEAD_DIM


def layer(cross: bool) -> Attention:
    torch.manual_seed(3)
    return (
        Attention(query_dim=DIM, cross_attention_dim=DIM if cross else None, heads=HEADS, dim_head=HEAD_DIM)
        .double()
        .eval()
    )


def inputs(rows: int):
    g = torch.Generator().manual_seed(7)
    hidden = torch.randn(rows, SIDE * SIDE, DIM, generator=g, dtype=torch.float64)  # (B, HW, C)
    context = torch.randn(rows, TOKENS, DIM, generator=g, dtype=torch.float64)  # (B, N, D)
    return hidden, context


def heads(x):
    return x.view(x.shape[0], x.shape[1], HEADS, HEAD_DIM).transpose(1, 2)  # (B, heads, L, d)


def explicit_logits(attn, hidden, context):
    return heads(attn.to_q(hidden)) @ heads(attn.to_k(context)).transpose(-1, -2) * attn.scale  # (B, h, L, N)


def finish(attn, probs, value_input):
    out = probs @ heads(attn.to_v(value_input))  # (B, heads, L, d)
    return attn.to_out[0](out.transpose(1, 2).reshape(out.shape[0], -1, DIM))


# Two c_e rows then two conditional rows; conditional row k belongs to c_e row SOURCE[k].
SOURCE = torch.tensor([1, 0])


def plan(**kw) -> AttentionPlan:
    return AttentionPlan(num_empty=2, latent_hw=(SIDE, SIDE), source=SOURCE, **kw)


def run(attn, processor, hidden, context=None):
    with torch.no_grad():
        return processor(attn, hidden, context)


def test_self_attention_injection_applies_empty_probabilities_to_own_values():
    attn, processor = layer(cross=False), UIFaceAttnProcessor()
    hidden, _ = inputs(4)
    processor.plan = plan(inject_self=True)
    out = run(attn, processor, hidden)
    with torch.no_grad():
        probs_ce = explicit_logits(attn, hidden[:2], hidden[:2]).softmax(-1)  # c_e self-attention
        expected = finish(attn, probs_ce[SOURCE], hidden[2:])  # c_e probabilities, own values
        plain = run(attn, AttnProcessor2_0(), hidden)
    assert torch.allclose(out[2:], expected, atol=1e-12)
    assert torch.allclose(out[:2], plain[:2], atol=1e-12)  # c_e rows untouched
    assert not torch.allclose(out[2:], plain[2:], atol=1e-6)  # the conditional rows did change


def test_cross_injection_with_blend_zero_leaves_cross_attention_unchanged():
    attn, processor = layer(cross=True), UIFaceAttnProcessor()
    hidden, context = inputs(4)
    processor.plan = plan(inject_cross=True, blend=0.0)
    out = run(attn, processor, hidden, context)
    plain = run(attn, AttnProcessor2_0(), hidden, context)
    assert torch.allclose(out, plain, atol=1e-12)


@pytest.mark.parametrize("blend", [1.0, 0.5])
def test_cross_injection_renormalises_logits_per_query_to_blended_stats(blend):
    attn, processor = layer(cross=True), UIFaceAttnProcessor()
    hidden, context = inputs(4)
    processor.plan = plan(inject_cross=True, blend=blend)
    out = run(attn, processor, hidden, context)
    with torch.no_grad():
        logits = explicit_logits(attn, hidden, context)
        own, ce = logits[2:], logits[:2][SOURCE]
        mean = blend * ce.mean(-1, keepdim=True) + (1 - blend) * own.mean(-1, keepdim=True)
        std = blend * ce.std(-1, keepdim=True) + (1 - blend) * own.std(-1, keepdim=True)
        injected = (own - own.mean(-1, keepdim=True)) / own.std(-1, keepdim=True) * std + mean
        expected = finish(attn, injected.softmax(-1), context[2:])
        if blend == 1.0:  # eq. 7: the injected logits carry exactly c_e's per-query statistics
            assert torch.allclose(injected.mean(-1), ce.mean(-1)) and torch.allclose(injected.std(-1), ce.std(-1))
    assert torch.allclose(out[2:], expected, atol=1e-12)


def test_recorded_map_is_softmax_over_space_mean_over_tokens_and_heads():
    attn, processor = layer(cross=True), UIFaceAttnProcessor()
    hidden, context = inputs(3)
    processor.plan = AttentionPlan(num_empty=3, latent_hw=(2 * SIDE, 2 * SIDE), record=torch.tensor([2, 0]))
    out = run(attn, processor, hidden, context)
    assert torch.allclose(out, run(attn, AttnProcessor2_0(), hidden, context), atol=1e-12)
    (recorded,) = processor.plan.maps
    with torch.no_grad():
        logits = explicit_logits(attn, hidden, context)[[2, 0]]
    expected = torch.stack(
        [
            sum(logits[r, h, :, n].softmax(0) for h in range(HEADS) for n in range(TOKENS)) / (HEADS * TOKENS)
            for r in range(2)
        ]
    ).view(2, SIDE, SIDE)
    assert recorded.shape == (2, SIDE, SIDE)  # a 4x4 layer of an 8x8 latent
    assert torch.allclose(recorded.double(), expected, atol=1e-6)


def test_fused_path_when_the_plan_needs_nothing():
    attn, processor = layer(cross=True), UIFaceAttnProcessor()
    hidden, context = inputs(2)
    processor.plan = AttentionPlan(num_empty=2, latent_hw=(SIDE, SIDE))
    assert torch.equal(run(attn, processor, hidden, context), run(attn, AttnProcessor2_0(), hidden, context))


def test_layer_grid():
    assert layer_grid(64, (8, 8)) == (8, 8)
    assert layer_grid(16, (8, 8)) == (4, 4)
    assert layer_grid(12, (8, 6)) == (4, 3)
    with pytest.raises(ValueError, match="length 10"):
        layer_grid(10, (8, 8))


def test_combine_maps_is_min_max_normalised_per_sample_and_batch_independent():
    g = torch.Generator().manual_seed(0)
    fine, coarse = torch.rand(3, 8, 8, generator=g), torch.rand(3, 4, 4, generator=g)
    h = combine_maps([fine, coarse], (8, 8))
    assert h.shape == (3, 8, 8)
    assert torch.allclose(h.amin(dim=(1, 2)), torch.zeros(3)) and torch.allclose(h.amax(dim=(1, 2)), torch.ones(3))
    alone = combine_maps([fine[1:2], coarse[1:2]], (8, 8))
    assert torch.allclose(alone[0], h[1], atol=1e-7)
    scaled = combine_maps([fine * 5, coarse], (8, 8))  # per-layer max normalisation: scale-free per layer
    assert torch.allclose(scaled, h, atol=1e-6)
    assert not torch.allclose(combine_maps([fine * 5, coarse], (8, 8), layer_max_normalise=False), h, atol=1e-3)


def test_distance_and_settle():
    a, b = torch.zeros(2, 4, 4), torch.zeros(2, 4, 4)
    b[0, 0, 0] = 1.6
    d = map_distance(a, b)
    assert torch.allclose(d, torch.tensor([0.1, 0.0]))
    t0, settled = settle(torch.tensor([400, 400, 400]), torch.tensor([0, 2]), d, torch.tensor(700), threshold=0.05)
    assert t0.tolist() == [400, 400, 700] and settled.tolist() == [False, True]


def test_spatial_map_shape():
    logits = torch.randn(2, 3, 12, 5)
    m = spatial_map(logits, (4, 3))
    assert m.shape == (2, 4, 3) and torch.allclose(m.sum(dim=(1, 2)), torch.ones(2))


@pytest.mark.parametrize("cross", [False, True])
def test_conditional_only_call_reads_what_the_main_call_kept(cross):
    """A same-step switch: c_e rows first (keeping q/k or logit stats), conditional rows in a later call."""
    attn, processor = layer(cross), UIFaceAttnProcessor()
    hidden, context = inputs(4)
    context = context if cross else None
    flags = dict(inject_self=not cross, inject_cross=cross, blend=0.5)
    processor.plan = plan(**flags)  # everything in one call
    together = run(attn, processor, hidden, context)
    main = AttentionPlan(num_empty=2, latent_hw=(SIDE, SIDE), keep=torch.tensor([0, 1]), **flags)
    processor.plan = main
    first = run(attn, processor, hidden[:2], None if context is None else context[:2])
    assert len(main.kept) == 1
    processor.plan = AttentionPlan(num_empty=0, latent_hw=(SIDE, SIDE), source=SOURCE, kept=main.kept, **flags)
    second = run(attn, processor, hidden[2:], None if context is None else context[2:])
    assert torch.allclose(first, together[:2], atol=1e-12)
    assert torch.allclose(second, together[2:], atol=1e-12)
