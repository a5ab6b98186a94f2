"""Shared by the benchmarks: which dtypes to compare, the device's measured peak, FLOP counts, load.

Peak: the best GFLOP/s of a square matmul in that dtype on this device, timed in the same run as
the benchmark (``measured_peak``), so "fraction of peak" compares like with like on a shared
machine: on a CPU the matmul goes through oneDNN/MKL (AMX or AVX512-BF16 kernels for bfloat16),
on a GPU through cuBLAS (tensor cores for float16/bfloat16, TF32 off).

Run alone, it prints the measured peak of each precision (what the other benchmarks divide by):

    python benchmarks/perf.py                  # 1024x1024 matmuls, 1 s each, float32 and auto
    python benchmarks/perf.py --quick          # 256x256, 0.2 s each
"""

from __future__ import annotations

import argparse
import os
import time

from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
import torch
from torch.utils.flop_counter import FlopCounterMode

from uiface_ray.precision import Precision, resolve


def load() -> str:
    """The load averages (1, 5, 15 min), printed beside every timing: the machine is shared."""
    return "load " + "/".join(f"{x:.1f}" for x in os.getloadavg())


def precisions(spec: str, device: str) -> list[Precision]:
    """``"float32,auto"`` -> the resolved precisions, in order, without repeats (auto may be float32)."""
    out: list[Precision] = []
    for name in spec.split(","):
        p = resolve(device, name.strip())
        if all(q.dtype != p.dtype or q.channels_last != p.channels_last for q in out):
            out.append(p)
    return out


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measured_peak(dtype: torch.dtype, device="cpu", n: int = 1024, seconds: float = 1.0) -> float:
    """Best GFLOP/s of an ``n`` x ``n`` matmul in ``dtype`` over about ``seconds`` (TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up (kernel choice)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def count_flops(fn) -> int:
    """FLOPs of ``fn()`` as torch's FlopCounterMode counts them (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def peak_line(peaks: dict[str, float], device: str) -> str:
    body = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
    return f"# peak on {device}: {body} (best 1024x1024 matmul in that dtype, measured in this run, before and after)"


def sampler_flops_per_image(sampler, contexts, seeds) -> float:
    """UNet FLOPs per image of ``sampler.sample(contexts, seeds)``: one captured UNet call counted
    per row (under inference_mode, as the sampler runs), times the UNet evaluations per image."""
    calls: list = []
    handle = sampler.model.unet.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((args, kwargs)) if not calls else None, with_kwargs=True
    )
    try:
        batch = sampler.sample(contexts, seeds)
    finally:
        handle.remove()
    args, kwargs = calls[0]
    with torch.inference_mode():
        per_call = count_flops(lambda: sampler.model.unet(*args, **kwargs))
    return per_call / args[0].shape[0] * float(batch.unet_evaluations.mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="The measured matmul peak of each precision on this device.")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32,auto", help="comma list of float32, bfloat16, float16, auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="256x256 matmuls, 0.2 s per precision")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, seconds = (256, 0.2) if args.quick else (1024, 1.0)
    before = load()
    peaks = {q.describe(): measured_peak(q.dtype, args.device, n, seconds) for q in precisions(args.dtype, args.device)}
    print(f"# {n}x{n} matmul, best of {seconds} s, {args.threads} thread(s); {before}, after: {load()}")
    print(peak_line(peaks, args.device).replace("1024x1024", f"{n}x{n}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
