"""Sampler throughput: the batched UIFace loop against the official release's order.

For every mode, on the same random UNet, batch and machine, prints images/s and UNet
sample-evaluations per image of

  ours   one UNet call per step: c_e rows for every sample, conditional rows only for samples
         in stage 2; fused SDPA except where maps/injection need more (uiface_ray.sample)
  naive  the release's order: a c_e call then a conditional call at every step (the
         conditional call gets c_e while a sample is in stage 1), explicit attention with
         materialised probabilities, recorded in the c_e call and replayed in the other

and the ratios, plus the largest difference between the two loops' latents (they compute the
same images).  A table, not a timed test:

    python benchmarks/bench_sampler.py --threads 1 --batch 4 --steps 10
    python benchmarks/bench_sampler.py --size paper --device cuda --dtype bfloat16 --batch 64

``--dtype`` takes a comma list (default ``float32,auto``): every precision runs in the same process,
one table each, with the achieved GFLOP/s of our loop (FLOPs counted by torch's FlopCounterMode)
and its fraction of the matmul peak measured in that dtype in this run (benchmarks/perf.py), and
the speedup over the first precision.  ``--quick``: 2 steps, batch 2, one repeat, modes uiface only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from diffusers import DDIMScheduler, UNet2DConditionModel  # noqa: E402

from perf import count_flops, load, measured_peak, peak_line, precisions  # noqa: E402
from uiface_ray.sample.adaptive_t0 import combine_maps, layer_grid, map_distance, spatial_map  # noqa: E402
from uiface_ray.sample.config import MODES, SamplerConfig  # noqa: E402
from uiface_ray.sample.loop import initial_noise, run_sampler  # noqa: E402

SIZES = {  # (block_out_channels, sample_size, cross_attention_dim, tokens)
    "tiny": ((32, 64), 16, 32, 8),
    "small": ((64, 128, 128), 32, 128, 32),
    "paper": ((256, 512, 512, 512), 32, 256, 32),  # 3x32x32 latents, about 226M parameters
}


def build_unet(size: str, device, dtype) -> UNet2DConditionModel:
    channels, sample, dim, _ = SIZES[size]
    n = len(channels)
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1) if n > 2 else ("CrossAttnDownBlock2D",) * n
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=sample,
        in_channels=3,
        out_channels=3,
        layers_per_block=2 if size != "tiny" else 1,
        block_out_channels=channels,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=dim,
        attention_head_dim=tuple(c // 32 for c in channels),
        norm_num_groups=32 if size != "tiny" else 8,
    )
    return unet.to(device=device, dtype=dtype).eval()


class NaiveAttention:
    """Explicit attention; 'record' (c_e call) keeps logits, 'replay' (conditional call) injects."""

    def __init__(self, cfg: SamplerConfig):
        self.cfg, self.mode, self.logits, self.inject = cfg, "plain", {}, None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        cross = encoder_hidden_states is not None
        context = encoder_hidden_states if cross else hidden_states
        b, length, _ = hidden_states.shape
        split = lambda x: x.view(b, x.shape[1], attn.heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(attn.to_q(hidden_states)), split(attn.to_k(context)), split(attn.to_v(context))
        logits = (q @ k.transpose(-1, -2)).float() * attn.scale  # (B, heads, L, N or L)
        if self.mode == "record":
            self.logits[id(attn)] = logits
        elif self.mode == "replay" and self.inject is not None and len(self.inject):
            ce, rows, a = self.logits[id(attn)], self.inject, self.cfg.injection_blend
            if not cross and self.cfg.inject_self:
                logits[rows] = ce[rows]
            if cross and self.cfg.inject_cross:
                own = logits[rows]
                mean = a * ce[rows].mean(-1, keepdim=True) + (1 - a) * own.mean(-1, keepdim=True)
                std = a * ce[rows].std(-1, keepdim=True) + (1 - a) * own.std(-1, keepdim=True)
                logits[rows] = (own - own.mean(-1, keepdim=True)) / own.std(-1, keepdim=True) * std + mean
        out = (logits.softmax(-1).to(v.dtype) @ v).transpose(1, 2).reshape(b, length, -1)
        return attn.to_out[1](attn.to_out[0](out))


def naive_sampler(unet, scheduler, context, empty, gens, cfg, shape):
    """The release's order: two calls of B rows at every step; returns (latents, t0, evaluations)."""
    batch, device = context.shape[0], context.device
    scheduler.set_timesteps(cfg.num_inference_steps, device=device)
    z = initial_noise(gens, shape, device)
    t0 = torch.full(
        (batch,),
        scheduler.config.num_train_timesteps if cfg.single_stage else (cfg.max_t0 if cfg.adaptive else cfg.t0),
        device=device,
    )
    cross_layers = [m for n, m in unet.named_modules() if n.endswith("attn2")]
    prev, processor = None, NaiveAttention(cfg)
    original = unet.attn_processors
    unet.set_attn_processor(processor)
    with torch.inference_mode():
        for step, t in enumerate(scheduler.timesteps):
            stage_two = t < t0
            processor.mode = "record"
            eps_ce = unet(z.to(unet.dtype), t, encoder_hidden_states=empty).sample.float()
            if cfg.adaptive:  # the release decides from this step's c_e maps, before the conditional pass
                maps = [
                    spatial_map(processor.logits[id(m)], layer_grid(processor.logits[id(m)].shape[2], shape[1:]))
                    for m in cross_layers
                ]
                h = combine_maps(
                    maps,
                    shape[1:] if cfg.map_resolution is None else (cfg.map_resolution,) * 2,
                    cfg.layer_max_normalise,
                )
                if prev is not None:
                    settle = ~stage_two & (map_distance(h, prev) < cfg.threshold)
                    t0 = torch.where(settle, t.to(t0.dtype), t0)
                    if cfg.switch == "same_step":
                        stage_two = stage_two | settle
                prev = h
            processor.mode, processor.inject = "replay", (stage_two.nonzero().flatten() if cfg.injection else None)
            tokens = torch.where(stage_two[:, None, None], context, empty)
            eps_c = unet(z.to(unet.dtype), t, encoder_hidden_states=tokens).sample.float()
            w = cfg.guidance_scale
            eps = torch.where(stage_two[:, None, None, None], (w + 1) * eps_c - w * eps_ce, eps_ce)
            z = scheduler.step(eps, t, z).prev_sample
    unet.set_attn_processor(original)
    return z, t0, torch.full((batch,), 2 * len(scheduler.timesteps))


def timed(fn, repeats: int, device) -> tuple[float, object]:
    """Best of ``repeats``: wall seconds on CUDA, this process's CPU seconds on CPU (a shared machine)."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    best, result = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, clock() - start)
    return best, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per loop")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32,auto", help="comma list of float32, bfloat16, float16, auto")
    parser.add_argument("--threshold", type=float, default=0.005)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--switch", choices=["same_step", "next_step"], default="same_step")
    parser.add_argument("--quick", action="store_true", help="batch 2, 2 steps, 1 repeat, uiface only")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.repeats, args.modes = 2, 2, 1, "uiface"
    torch.set_num_threads(args.threads)
    chosen = precisions(args.dtype, args.device)
    peaks = {q.dtype_name: measured_peak(q.dtype, args.device, seconds=0.3 if args.quick else 1.0) for q in chosen}
    print(peak_line(peaks, args.device))
    base: dict[str, float] = {}
    for q in chosen:
        one_precision(args, q, peaks[q.dtype_name], base)
    return 0


def one_precision(args, q, peak: float, base: dict[str, float]) -> None:
    device, dtype = torch.device(args.device), q.dtype
    unet = build_unet(args.size, device, dtype).to(memory_format=q.memory_format())
    _, sample, dim, n_tokens = SIZES[args.size]
    shape = (3, sample, sample)
    g = torch.Generator().manual_seed(1)
    context = torch.randn(args.batch, n_tokens, dim, generator=g).to(device, dtype)
    empty = torch.randn(1, n_tokens, dim, generator=g).expand(args.batch, -1, -1).contiguous().to(device, dtype)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    print(
        f"# {args.size} UNet {params:.1f}M params, latents {shape}, batch {args.batch}, {args.steps} steps, "
        f"{q.describe()}, {args.threads} thread(s), best of {args.repeats}, "
        f"threshold {args.threshold}, {args.switch} switch, {load()}"
    )
    header = (
        f"{'mode':<20} {'ours img/s':>10} {'naive img/s':>11} {'speedup':>7} {'ours ev/img':>11} "
        f"{'naive ev/img':>12} {'ev ratio':>8} {'mean t0':>7} {'max |dz|':>9} {'GFLOP/s':>8} {'of peak':>7} "
        f"{'vs first':>8}"
    )
    warm = SamplerConfig(mode="uiface", num_inference_steps=2)
    run_sampler(unet, DDIMScheduler(clip_sample=False), context, empty, [torch.Generator()] * args.batch, warm, shape)
    print(header)
    print("-" * len(header))
    for mode in args.modes.split(","):
        cfg = SamplerConfig(mode=mode, num_inference_steps=args.steps, threshold=args.threshold, switch=args.switch)
        gens = lambda: [torch.Generator().manual_seed(i) for i in range(args.batch)]  # noqa: E731
        sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
        ours_fn = lambda: run_sampler(unet, sched, context, empty, gens(), cfg, shape)  # noqa: E731
        t_ours, ours = timed(ours_fn, args.repeats, device)
        t_naive, (z, t0, ev) = timed(
            lambda: naive_sampler(unet, sched, context, empty, gens(), cfg, shape), args.repeats, device
        )
        gflops = count_flops(ours_fn) / t_ours / 1e9
        base.setdefault(mode, t_ours)
        ev_ours = ours.unet_evaluations.float().mean().item()
        diff = (ours.latents - z).abs().max().item()
        if dtype == torch.float32:
            assert torch.equal(ours.t0.cpu(), t0.cpu().long()), f"{mode}: t0 differs between the loops"
        print(
            f"{mode:<20} {args.batch / t_ours:>10.2f} {args.batch / t_naive:>11.2f} {t_naive / t_ours:>7.2f} "
            f"{ev_ours:>11.1f} {ev.float().mean().item():>12.1f} {ev.float().mean().item() / ev_ours:>8.2f} "
            f"{ours.t0.float().mean().item():>7.0f} {diff:>9.2e} {gflops:>8.1f} {gflops / peak:>7.1%} "
            f"{base[mode] / t_ours:>7.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())
