"""Diffusion training steps/s in float32 and in auto precision, side by side in one run.

The 32 px demo generator (``configs/train_diffusion_demo32.yaml``'s model, optimiser and batch)
trains on random images and embeddings through the job's own ``train_step`` (autocast, gradient
scaler, channels_last as :mod:`uiface_ray.precision` decides); prints steps/s, images/s, achieved
GFLOP/s (forward + backward FLOPs counted by torch's FlopCounterMode) and the fraction of the
measured matmul peak for that dtype (benchmarks/perf.py), with the load average.

    python benchmarks/bench_train_diffusion.py --threads 2 --steps 10
    python benchmarks/bench_train_diffusion.py --quick

``--latent-cache``: the tiny paper config (``configs/train_diffusion_paper_tiny.yaml``, latent space
on the autoencoder of ``configs/train_autoencoder_paper_tiny.yaml``, see docs/TRAINING.md) timed
step by step with the autoencoder encoding every batch (the path before the latent cache) and with
the batch's cached latents (``train/latent_cache.py``), alternated in one run, best of ``--steps``:

    python benchmarks/bench_train_diffusion.py --latent-cache --batch 4 --steps 20
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from diffusers import DDPMScheduler  # noqa: E402

from perf import count_flops, load, measured_peak, peak_line, precisions  # noqa: E402
from uiface_ray.train.config import TrainConfig  # noqa: E402
from uiface_ray.optim.context import WorkerContext  # noqa: E402
from uiface_ray.train.loop import CachedLatents, build_state, train_step, use_precision  # noqa: E402


def demo_config(batch: int) -> TrainConfig:
    raw = yaml.safe_load((ROOT / "configs" / "train_diffusion_demo32.yaml").read_text())
    raw.update(output="/nonexistent/bench", batch_size=batch, grid={"num_identities": 0})
    raw["data"]["table"] = "/nonexistent/table.parquet"
    return TrainConfig.model_validate(raw)


def run(cfg: TrainConfig, precision, steps: int, device: torch.device) -> tuple[float, int]:
    """Seconds per step (best of ``steps`` after a warm-up) and FLOPs of one step."""
    data = SimpleNamespace(encoder_info=None, training_record=lambda: {})
    state = build_state(cfg, data, device)
    use_precision(state, precision)
    ctx = WorkerContext(device=device)
    scheduler = DDPMScheduler.from_config(state.model.scheduler_config)
    g = torch.Generator().manual_seed(0)
    size, dim = cfg.model.image_size, cfg.model.embedding_dim
    images = torch.rand(cfg.batch_size, 3, size, size, generator=g).to(device) * 2 - 1  # (B, 3, S, S)
    emb = torch.nn.functional.normalize(torch.randn(cfg.batch_size, dim, generator=g), dim=1).to(device)  # (B, E)
    step = lambda: train_step(state, state.module, scheduler, images, emb, cfg, ctx)  # noqa: E731
    step()  # warm-up: kernel choice
    flops = count_flops(step)
    best = float("inf")
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, flops


def paper_tiny_config(batch: int, autoencoder: str) -> TrainConfig:
    raw = yaml.safe_load((ROOT / "configs" / "train_diffusion_paper_tiny.yaml").read_text())
    raw.update(output="/nonexistent/bench", batch_size=batch, grid={"num_identities": 0})
    raw["model"]["autoencoder"] = autoencoder
    return TrainConfig.model_validate(raw)


def latent_cache_figures(args, device: torch.device) -> None:
    """s/step of the tiny paper config: encoding every batch vs the cached latents (module docstring)."""
    from uiface_ray.train.latent_cache import encode_latents

    cfg = paper_tiny_config(args.batch, args.autoencoder)
    data = SimpleNamespace(encoder_info=None, training_record=lambda: {})
    print(f"# tiny paper config, batch {args.batch}, {args.threads} thread(s), {args.device}, best of {args.steps}")
    print(f"{'precision':<12}{'encode/step s':>15}{'cached s':>10}{'speedup':>9}  load")
    for q in precisions(args.dtype, args.device):
        q = replace(q, channels_last=False) if q.device == "cpu" else q
        state = build_state(cfg, data, device)
        use_precision(state, q)
        ctx = WorkerContext(device=device)
        scheduler = DDPMScheduler.from_config(state.model.scheduler_config)
        g = torch.Generator().manual_seed(0)
        size, dim = cfg.model.image_size, cfg.model.embedding_dim
        uint8 = torch.randint(0, 256, (cfg.batch_size, size, size, 3), generator=g, dtype=torch.uint8).numpy()
        pixels = torch.from_numpy(uint8).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1.0  # (B, 3, S, S)
        both = [encode_latents(state.model.autoencoder, x, device) for x in (uint8, uint8[:, :, ::-1].copy())]
        cached = CachedLatents(torch.from_numpy(np.stack(both, axis=1)).to(device), "vq", state.model.latent_shape())
        emb = torch.nn.functional.normalize(torch.randn(cfg.batch_size, dim, generator=g), dim=1).to(device)  # (B, E)
        best = {"pixels": float("inf"), "cached": float("inf")}
        for _ in range(args.steps + 1):  # the first of each is a warm-up
            for name, x in (("pixels", pixels), ("cached", cached)):
                t = time.perf_counter()
                train_step(state, state.module, scheduler, x, emb, cfg, ctx)
                best[name] = min(best[name], time.perf_counter() - t)
        print(
            f"{q.dtype_name:<12}{best['pixels']:>15.4f}{best['cached']:>10.4f}"
            f"{best['pixels'] / best['cached']:>8.2f}x  {load()}",
            flush=True,
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtype", default="float32,auto", help="comma list of float32, bfloat16, float16, auto")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps per precision (best of)")
    p.add_argument("--quick", action="store_true", help="batch 4, 1 timed step")
    p.add_argument("--latent-cache", action="store_true", help="the tiny paper config: encode per step vs cache")
    p.add_argument("--autoencoder", default="out/autoencoder_paper_tiny", help="with --latent-cache")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps = 4, 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.latent_cache:
        latent_cache_figures(args, device)
        return 0
    cfg = demo_config(args.batch)
    # as the job decides (train.loop.training_precision): contiguous on a CPU, channels_last measured slower there
    chosen = [replace(q, channels_last=False) if q.device == "cpu" else q for q in precisions(args.dtype, args.device)]
    peaks = {q.dtype_name: measured_peak(q.dtype, args.device, seconds=0.3 if args.quick else 1.0) for q in chosen}
    runs = [(q, *run(cfg, q, args.steps, device), load()) for q in chosen]
    for q in chosen:  # a shared machine: the best of a measurement before and after the runs
        peaks[q.dtype_name] = max(peaks[q.dtype_name], measured_peak(q.dtype, args.device, seconds=0.3))
    print(f"# demo32 generator, batch {args.batch}, {args.threads} thread(s), {args.device}, best of {args.steps}")
    print(peak_line(peaks, args.device))
    print(f"{'precision':<28}{'s/step':>8}{'steps/s':>9}{'img/s':>8}{'GFLOP/s':>9}{'of peak':>9}{'speedup':>9}  load")
    base = runs[0][1]
    for q, seconds, flops, ld in runs:
        gflops = flops / seconds / 1e9
        name = q.dtype_name + (" + channels_last" if q.channels_last else "")
        print(
            f"{name:<28}{seconds:>8.3f}{1 / seconds:>9.2f}{args.batch / seconds:>8.1f}{gflops:>9.1f}"
            f"{gflops / peaks[q.dtype_name]:>9.1%}{base / seconds:>8.2f}x  {ld}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
