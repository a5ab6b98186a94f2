"""The released UIFace architecture in our sampler: seconds per DDIM step and UNet evaluations per image.

On the full-size release UNet (216,341,443 parameters, random weights, 3x32x32 latents) and a batch
of identities, runs each mode for a few DDIM steps and prints every UNet call (timestep, rows,
seconds), then the seconds per DDIM step of a stage-1 step (c_e rows only) and a stage-2 step
(c_e + identity rows).  Then, on the tiny release-layout UNet with the real step count, the UNet
sample-evaluations per image of each mode (the release's own loop makes 2 per step in every mode).
A table, not a timed test:

    python benchmarks/bench_official.py --threads 1 --batch 8 --steps 2

On a GPU, ``--throughput`` instead samples the ``uiface`` mode (official preset) for 50 steps at
batch 50 in float16 and bfloat16 and prints images/s and the fraction of the UNet's FLOP bound
(UNet FLOPs per evaluation, counted with torch's FlopCounterMode, x evaluations / time / peak):

    python benchmarks/bench_official.py --device cuda --throughput --batch 50 --peak-tflops 989

``--dtype`` takes a comma list (default ``float32,auto``; auto as :mod:`uiface_ray.precision`
decides, with channels_last for reduced precision): each runs in this process, then one table
compares them: seconds per DDIM step over all modes, achieved GFLOP/s, the fraction of the matmul
peak measured here in that dtype (benchmarks/perf.py), the speedup over the first.  ``--quick``:
batch 2, 1 step, the uiface mode only.  Without ``--peak-tflops``, ``--throughput`` also uses the
measured matmul peak.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp

import torch  # noqa: E402
from diffusers import DDIMScheduler  # noqa: E402

from perf import load, measured_peak, peak_line, precisions  # noqa: E402
from uiface_ray.release.importer import SCHEDULER  # noqa: E402
from uiface_ray.release.unet import OfficialUNet, official_unet_kwargs  # noqa: E402
from uiface_ray.sample.config import MODES, SamplerConfig  # noqa: E402
from uiface_ray.sample.loop import run_sampler  # noqa: E402


def mode_config(mode: str, steps: int) -> SamplerConfig:
    """The official preset in ``mode`` (two_stage_fixed at t0 = 500, the release's forced switch)."""
    return SamplerConfig.official(mode=mode, num_inference_steps=steps, t0=500)


class CallTimer:
    """Wall time and rows of every UNet forward call."""

    def __init__(self, unet, device: str):
        self.calls, self.device = [], device
        self.handles = [unet.register_forward_pre_hook(self._start), unet.register_forward_hook(self._stop)]

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _start(self, module, args):
        self._sync()
        self._t, self._rows, self._step = time.perf_counter(), args[0].shape[0], int(args[1])

    def _stop(self, module, args, output):
        self._sync()
        self.calls.append((self._step, self._rows, time.perf_counter() - self._t))

    def remove(self):
        for h in self.handles:
            h.remove()


def inputs(unet, batch: int, dtype, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    dim = unet.config.cross_attention_dim
    context = torch.randn(batch, 1, dim, generator=g).to(device, dtype)
    empty = torch.randn(1, 1, dim, generator=g).expand(batch, -1, -1).to(device, dtype)
    return context, empty, [torch.Generator().manual_seed(seed + i) for i in range(batch)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="DDIM steps timed per mode (2: t = 500 and t = 0)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32,auto", help="comma list of float32, float16, bfloat16, auto")
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    parser.add_argument("--throughput", action="store_true", help="images/s of uiface, 50 steps, per dtype (GPU)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="16-bit peak (default: measured matmul)")
    parser.add_argument("--tiny", action="store_true", help="the tiny release-layout UNet (tests, --quick)")
    parser.add_argument("--quick", action="store_true", help="batch 2, 1 step, uiface only")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.modes = 2, 1, ["uiface"]
    torch.set_num_threads(args.threads)
    if args.throughput:
        throughput(args)
        return
    chosen = precisions(args.dtype, args.device)
    peaks = {q.dtype_name: measured_peak(q.dtype, args.device, seconds=0.3 if args.quick else 1.0) for q in chosen}
    rows = [per_mode(args, q) for q in chosen]
    for q in chosen:  # a shared machine: the best of a measurement before and after the runs
        peaks[q.dtype_name] = max(peaks[q.dtype_name], measured_peak(q.dtype, args.device, seconds=0.3))
    print(peak_line(peaks, args.device))
    print(f"{'precision':<28}{'s/DDIM step':>12}{'GFLOP/s':>9}{'of peak':>9}{'speedup':>9}")
    for q, (seconds, flops) in zip(chosen, rows):
        gflops = flops / seconds / 1e9
        name = q.dtype_name + (" + channels_last" if q.channels_last else "")
        print(
            f"{name:<28}{seconds / args.steps / len(args.modes):>12.2f}{gflops:>9.1f}"
            f"{gflops / peaks[q.dtype_name]:>9.1%}{rows[0][0] / seconds:>8.2f}x"
        )
    evaluations_per_image(args.batch)


def release_unet(args, dtype, memory_format=torch.contiguous_format):
    torch.manual_seed(0)
    unet = OfficialUNet(**official_unet_kwargs(tiny=getattr(args, "tiny", False))).eval()
    return torch.nn.Module.to(unet, args.device, dtype, memory_format=memory_format)


def per_mode(args, q) -> tuple[float, float]:
    """Every mode's UNet calls in precision ``q``; returns (seconds of all modes, FLOPs of all modes)."""
    dtype = q.dtype
    scheduler = DDIMScheduler.from_config(SCHEDULER)
    unet = release_unet(args, dtype, q.memory_format())
    params = sum(p.numel() for p in unet.parameters())
    shape = (3, unet.config.sample_size, unet.config.sample_size)
    flops = unet_flops(unet, dtype, args.device)
    print(
        f"release UNet: {params:,} parameters (+ 131,584 in the context encoder), {q.describe()}, "
        f"{args.threads} thread(s), batch {args.batch}, {args.steps} DDIM step(s) per mode, "
        f"{flops / 1e9:.1f} GFLOP per UNet evaluation, {load()}"
    )
    context, empty, _ = inputs(unet, args.batch, dtype, args.device)
    with torch.inference_mode():  # warm-up
        unet(torch.zeros(1, *shape, device=args.device, dtype=dtype), 999, encoder_hidden_states=empty[:1])
    print(f"{'mode':<22}{'t':>6}{'rows':>6}{'seconds':>10}")
    per_rows: dict[int, list[float]] = {}
    all_seconds = all_flops = 0.0
    for mode in args.modes:
        cfg = mode_config(mode, args.steps)
        _, _, gens = inputs(unet, args.batch, dtype, args.device)
        timer = CallTimer(unet, args.device)
        start = time.perf_counter()
        try:
            run_sampler(unet, scheduler, context, empty, gens, cfg, shape)
        finally:
            timer.remove()
        total = time.perf_counter() - start
        for t, rows, seconds in timer.calls:
            print(f"{mode:<22}{t:>6}{rows:>6}{seconds:>10.2f}")
            per_rows.setdefault(rows, []).append(seconds)
            all_flops += flops * rows
        all_seconds += total
        print(f"{mode:<22}{'all':>6}{'':>6}{total:>10.2f}   ({total / args.steps:.2f} s per DDIM step, {load()})")
    for rows, times in sorted(per_rows.items()):
        kind = "stage-1 step (c_e rows only)" if rows == args.batch else "stage-2 step (c_e + identity rows)"
        print(f"seconds per DDIM step, {kind}, {rows} rows: {sum(times) / len(times):.2f} (mean of {len(times)})")
    return all_seconds, all_flops


def unet_flops(unet, dtype, device) -> int:
    """FLOPs of one UNet evaluation (one row) of the release's UNet."""
    from torch.utils.flop_counter import FlopCounterMode

    size = unet.config.sample_size
    x = torch.zeros(1, 3, size, size, device=device, dtype=dtype)
    context = torch.zeros(1, 1, unet.config.cross_attention_dim, device=device, dtype=dtype)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        unet(x, 500, encoder_hidden_states=context)
    return int(counter.get_total_flops())


def throughput(args) -> list[dict]:
    """images/s of the uiface mode (official preset), 50 DDIM steps, per dtype, and the FLOP-bound fraction."""
    scheduler = DDIMScheduler.from_config(SCHEDULER)
    steps = 2 if args.quick else 50
    results = []
    for name in ("float16", "bfloat16"):
        dtype = getattr(torch, name)
        unet = release_unet(args, dtype, torch.channels_last)
        shape = (3, unet.config.sample_size, unet.config.sample_size)
        peak = args.peak_tflops or measured_peak(dtype, args.device, n=4096 if args.device == "cuda" else 1024) / 1e3
        flops = unet_flops(unet, dtype, args.device)
        context, empty, gens = inputs(unet, args.batch, dtype, args.device)
        cfg = mode_config("uiface", steps)
        run_sampler(unet, scheduler, context[:2], empty[:2], gens[:2], mode_config("uiface", 2), shape)  # warm-up
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = run_sampler(unet, scheduler, context, empty, gens, cfg, shape)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        evaluations = int(out.unet_evaluations.sum())
        achieved = flops * evaluations / seconds / 1e12
        print(
            f"{name}: {args.batch / seconds:.2f} images/s, {evaluations / args.batch:.1f} UNet evaluations per "
            f"image, {flops / 1e9:.1f} GFLOP per evaluation, {achieved:.1f} TFLOP/s = "
            f"{achieved / peak:.1%} of {peak:g} TFLOP/s ({'given' if args.peak_tflops else 'measured matmul'}), "
            f"{load()}",
            flush=True,
        )
        results.append({"dtype": name, "images_per_s": args.batch / seconds, "fraction_of_peak": achieved / peak})
    return results


def evaluations_per_image(batch: int, steps: int = 50) -> None:
    """UNet sample-evaluations per image at the real step count, on the tiny release-layout UNet."""
    kwargs = official_unet_kwargs(tiny=True)
    torch.manual_seed(0)
    unet = OfficialUNet(**kwargs).eval()
    scheduler = DDIMScheduler.from_config(SCHEDULER)
    context, empty, gens = inputs(unet, batch, torch.float32, "cpu", seed=1)
    print(
        f"UNet evaluations per image, {steps} DDIM steps (tiny release-layout UNet, random weights; "
        f"the release's loop: {2 * steps} in every mode):"
    )
    for mode in MODES:
        cfg = mode_config(mode, steps)
        out = run_sampler(unet, scheduler, context, empty, gens, cfg, (3, kwargs["sample_size"], kwargs["sample_size"]))
        ev = out.unet_evaluations.float()
        print(
            f"  {mode:<22} mean {ev.mean():6.1f}  min {int(ev.min()):3d}  max {int(ev.max()):3d}  "
            f"t0 {sorted(set(out.t0.tolist()), reverse=True)}"
        )


if __name__ == "__main__":
    main()
