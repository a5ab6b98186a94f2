"""Loss curves of the 32 px demo generator in float32 and in bf16 autocast, same steps (issue 25, item 2).

Two copies of the demo generator (``configs/train_diffusion_demo32.yaml``: model, optimiser, lr
schedule, batch, seed) start from the same weights and train on the same batches (the job's
``BatchOrder``) with the same noise (the job's per-step generator) through the job's own
``train_step``; one in float32, one in the precision ``--dtype`` names (default ``auto``: bf16
autocast on this CPU). The two run in alternating chunks of ``--chunk`` steps in this one process,
in turns (who goes first alternates), so both see the same machine load; each chunk's seconds per step and the load average are kept.

Writes ``<out>/curves.csv`` (per step: both losses and the chunk's s/step and load) and
``<out>/curves.png`` (both losses, moving averages), prints the table (loss at step k, mean
absolute difference, s/step), and saves both EMA models under ``<out>/model_<dtype>`` (for
``benchmarks/precision_cost.py --model``).

    python benchmarks/precision_train_curves.py --table out/h2/faces_devtrain5_dlib.parquet --steps 300
    python benchmarks/precision_train_curves.py --table TABLE --quick     # 4 steps at batch 4
    python benchmarks/precision_train_curves.py --quick                   # the same on a random table it builds
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from perf import load  # noqa: E402

MAP = {"float32": "no", "bfloat16": "bf16", "float16": "fp16", "auto": "auto"}


def config(table: str, batch: int, min_images: int | None):
    from uiface_ray.train.config import TrainConfig

    raw = yaml.safe_load((ROOT / "configs" / "train_diffusion_demo32.yaml").read_text())
    raw.update(output="/nonexistent/curves", batch_size=batch, grid={"num_identities": 0})
    raw["data"]["table"] = table
    if min_images is not None:
        raw["data"]["min_images_per_identity"] = min_images
    return TrainConfig.model_validate(raw)


class Run:
    """One precision's training state, stepping through the job's batches."""

    def __init__(self, cfg, data, pixels, embeddings, mixed_precision: str):
        from diffusers import DDPMScheduler

        from uiface_ray.train.data import BatchOrder
        from uiface_ray.optim.context import WorkerContext
        from uiface_ray.train.loop import build_state, training_precision, use_precision

        self.cfg, self.pixels, self.embeddings = cfg, pixels, embeddings
        self.ctx = WorkerContext()
        self.precision = training_precision(mixed_precision, self.ctx.device)
        self.state = build_state(cfg, data, self.ctx.device)
        use_precision(self.state, self.precision)
        self.scheduler = DDPMScheduler.from_config(self.state.model.scheduler_config)
        self.order = BatchOrder(data.num_rows, cfg.seed)
        self.losses: list[float] = []
        self.seconds: list[float] = []  # per step: its chunk's mean

    def chunk(self, steps: int) -> float:
        from uiface_ray.train.loop import train_step

        start = time.perf_counter()
        for _ in range(steps):
            idx = torch.from_numpy(self.order.worker_batch(self.state.step, self.cfg.batch_size, 0, 1))
            batch = self.pixels[idx].float() / 127.5 - 1.0  # (b, 3, S, S) in [-1, 1]
            s = self.state
            self.losses.append(train_step(s, s.module, self.scheduler, batch, self.embeddings[idx], self.cfg, self.ctx))
        per_step = (time.perf_counter() - start) / steps
        self.seconds += [per_step] * steps
        return per_step


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    return np.array([values[max(0, i - window + 1) : i + 1].mean() for i in range(len(values))])


def write_outputs(out: Path, runs: list[Run], names: list[str], loads: list[float], window: int) -> None:
    from uiface_ray.evaluate.plots import line_plot

    out.mkdir(parents=True, exist_ok=True)
    steps = np.arange(1, len(runs[0].losses) + 1)
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *(f"loss_{n}" for n in names), *(f"s_per_step_{n}" for n in names), "load1"])
        for i, k in enumerate(steps):
            w.writerow([k, *(f"{r.losses[i]:.6f}" for r in runs), *(f"{r.seconds[i]:.4f}" for r in runs), loads[i]])
    series = {}
    for n, r in zip(names, runs):
        series[f"{n} (moving average {window})"] = (steps, moving_average(np.array(r.losses), window))
    for n, r in zip(names, runs):
        series[n] = (steps, np.array(r.losses))
    line_plot(series, "demo32 generator: training loss, float32 vs reduced precision", "step", "loss").save(
        out / "curves.png"
    )


def report(runs: list[Run], names: list[str], loads: list[float], window: int) -> None:
    a, b = (np.array(r.losses) for r in runs)
    ma, mb = moving_average(a, window), moving_average(b, window)
    n = len(a)
    marks = sorted({k for k in (1, 10, 50, 100, 200, 300, 500, 1000, n) if k <= n})
    print(f"\n{'step':>6}{'loss ' + names[0]:>18}{'loss ' + names[1]:>18}{'diff':>9}   moving average ({window} steps)")
    for k in marks:
        i = k - 1
        print(
            f"{k:>6}{a[i]:>18.4f}{b[i]:>18.4f}{b[i] - a[i]:>+9.4f}   {ma[i]:.4f} vs {mb[i]:.4f} ({mb[i] - ma[i]:+.4f})"
        )
    noise = np.abs(a - moving_average(a, 2 * window)).mean()
    tail = slice(max(0, n - 50), n)
    print(
        f"\nmean |loss difference| per step: {np.abs(a - b).mean():.4f} "
        f"(relative {np.mean(np.abs(a - b) / np.abs(a)):.1%}); step-to-step noise of the {names[0]} loss "
        f"(mean |loss - its {2 * window}-step moving average|): {noise:.4f}"
    )
    print(
        f"mean loss of the last {tail.stop - tail.start} steps: {names[0]} {a[tail].mean():.4f}, "
        f"{names[1]} {b[tail].mean():.4f}; of all steps: {a.mean():.4f}, {b.mean():.4f}"
    )
    pa = torch.cat([p.detach().flatten() for p in runs[0].state.module.parameters()])
    pb = torch.cat([p.detach().flatten() for p in runs[1].state.module.parameters()])
    print(f"weights after step {n}: relative L2 distance {float((pa - pb).norm() / pa.norm()):.2%}")
    for name, r in zip(names, runs):
        s = np.array(r.seconds)
        print(f"s/step {name:<10} median {np.median(s):.3f}, mean {s.mean():.3f}, best chunk {s.min():.3f}")
    print(
        f"speedup (median s/step): {np.median(runs[0].seconds) / np.median(runs[1].seconds):.2f}x; "
        f"load (1 min) during the chunks: {min(loads):.1f}-{max(loads):.1f}, median {np.median(loads):.1f}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--table", default=None, help="face table with dlib embeddings (jobs/prepare_faces + embed; --quick: random)"
    )
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--chunk", type=int, default=10, help="steps per precision before switching")
    p.add_argument("--dtype", default="auto", help="the precision set against float32 (bfloat16, float16, auto)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-minutes", type=float, default=None, help="start no chunk after this (a shared machine)")
    p.add_argument("--window", type=int, default=10, help="moving average in steps")
    p.add_argument("--out", default=None, help="CSV, PNG and the two models (default out/precision_curves)")
    p.add_argument("--quick", action="store_true", help="4 steps at batch 4, chunks of 2, identities of >= 2 images")
    args = p.parse_args(argv)
    if not args.quick:
        if not args.table:
            p.error("--table is required (or --quick)")
        args.out = args.out or "out/precision_curves"
        return compare(args)
    args.steps, args.chunk, args.batch, args.window = 4, 2, 4, 2
    with tempfile.TemporaryDirectory() as tmp:
        from bench_inputs import random_face_table

        args.table = args.table or random_face_table(f"{tmp}/faces.parquet", num_people=3, per_person=3)
        args.out = args.out or f"{tmp}/curves"
        return compare(args)


def compare(args) -> int:
    torch.set_num_threads(args.threads)
    from uiface_ray.model import save_model
    from uiface_ray.train.loop import ema_model, load_training_data

    cfg = config(args.table, args.batch, 2 if args.quick else None)
    data, images = load_training_data(cfg)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, 3, S, S) uint8
    embeddings = torch.from_numpy(data.embeddings)
    runs = [Run(cfg, data, pixels, embeddings, MAP["float32"]), Run(cfg, data, pixels, embeddings, MAP[args.dtype])]
    names = [r.precision.dtype_name for r in runs]
    print(
        f"# demo32 generator, {data.num_rows} images, batch {args.batch}, {args.steps} steps, chunks of {args.chunk}, "
        f"{args.threads} thread(s); {runs[0].precision.describe()} vs {runs[1].precision.describe()}; {load()}",
        flush=True,
    )
    loads: list[float] = []
    begin = time.time()
    for start in range(0, args.steps, args.chunk):
        if args.max_minutes is not None and time.time() - begin > 60 * args.max_minutes:
            print(f"stopped after {start} steps: --max-minutes {args.max_minutes} spent", flush=True)
            break
        n = min(args.chunk, args.steps - start)
        order = runs if (start // args.chunk) % 2 == 0 else runs[::-1]  # alternate who goes first
        done = {id(r): r.chunk(n) for r in order}
        secs = [done[id(r)] for r in runs]
        loads += [round(os.getloadavg()[0], 2)] * n
        print(
            f"steps {start + 1}-{start + n}: "
            + ", ".join(f"{m} {s:.3f} s/step" for m, s in zip(names, secs))
            + f"; loss {runs[0].losses[-1]:.4f} / {runs[1].losses[-1]:.4f}; {load()}",
            flush=True,
        )
    out = Path(args.out)
    write_outputs(out, runs, names, loads, args.window)
    for name, r in zip(names, runs):
        save_model(ema_model(r.state), str(out / f"model_{name}"))
    report(runs, names, loads, args.window)
    print(f"-> {out / 'curves.csv'}, {out / 'curves.png'}, {out}/model_{{{','.join(names)}}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
