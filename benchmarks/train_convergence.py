"""Short, measured comparison of training settings: held-out eps-MSE curves (raw and EMA weights).

Each setting trains the same small UNet from the same initial weights on the same batches for
``--steps`` steps in this process (no Ray), and every ``--eval-every`` steps scores the plain
eq. 3 loss on a fixed held-out set (fixed images, timesteps, noise; identity contexts, no c_e),
so curves are comparable across learning rates and loss weightings.  Prints a table, writes
``curves.json`` and ``curves.png`` under ``--out``.

    python benchmarks/train_convergence.py --table out/h2/faces_devtrain5_dlib.parquet \
        --out out/h2/convergence --steps 150 --image-size 32

A table without ``embedding`` gets one random unit direction per identity (``--random-embeddings``).
``--quick``: two settings, 4 steps at batch 4 on 16 px, on a random face table it builds (seconds).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

from diffusers import DDPMScheduler  # noqa: E402

from uiface_ray.storage.parquet import read_table, write_table  # noqa: E402
from uiface_ray.train.config import TrainConfig  # noqa: E402
from uiface_ray.train.data import BatchOrder  # noqa: E402
from uiface_ray.optim.context import WorkerContext  # noqa: E402
from uiface_ray.train.loop import build_state, load_training_data, train_step  # noqa: E402
from uiface_ray.train.objective import StepNoise, diffusion_loss  # noqa: E402

SMALL_MODEL = dict(
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    attention_head_dim=32,
    norm_num_groups=16,
    cross_attention_dim=64,
    num_tokens=32,
    context_hidden_dim=128,
)

SETTINGS = {
    "paper_lr1e-4": {},
    "lr1e-3_warmup": {"optim": {"lr": 1e-3, "warmup_steps": 20}, "diffusion": {"ema_warmup": True}},
    "lr1e-3_warmup_minsnr": {
        "optim": {"lr": 1e-3, "warmup_steps": 20},
        "diffusion": {"ema_warmup": True, "loss_weighting": "min_snr"},
    },
    "lr3e-4_warmup": {"optim": {"lr": 3e-4, "warmup_steps": 20}, "diffusion": {"ema_warmup": True}},
}


def with_random_embeddings(table_url: str, out_url: str, dim: int = 128, seed: int = 0) -> str:
    table = read_table(table_url)
    ids = table.column("identity").to_pylist()
    rng = np.random.default_rng(seed)
    centres = {name: rng.standard_normal(dim) for name in sorted(set(ids))}
    rows = []
    for name in ids:
        e = centres[name] / np.linalg.norm(centres[name]) + 0.2 * rng.standard_normal(dim) / np.sqrt(dim)
        rows.append((e / np.linalg.norm(e)).astype(np.float32).tolist())
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    columns["embedding"] = rows
    write_table(out_url, columns)
    return out_url


def base_config(args, table: str, name: str, overrides: dict) -> TrainConfig:
    values = {
        "model": dict(SMALL_MODEL, image_size=args.image_size),
        "data": {"table": table},
        "output": f"{args.out}/{name}",
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "log_every": args.eval_every,
        "seed": 0,
        "torch_threads": args.threads,
        "grid": {"num_identities": 0},
    }
    for key, sub in overrides.items():
        values[key] = dict(values.get(key, {}), **sub)
    return TrainConfig.model_validate(values)


def held_out(cfg: TrainConfig, data, images: np.ndarray, count: int, shape) -> tuple:
    """A fixed evaluation set: the last ``count`` rows, 8 timesteps spread over [0, T)."""
    rows = np.arange(data.num_rows - count, data.num_rows)
    x0 = torch.from_numpy(images[rows]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    emb = torch.from_numpy(data.embeddings[rows])
    g = torch.Generator().manual_seed(99)
    t = torch.linspace(0, cfg.model.num_train_timesteps - 1, count).round().long()
    draws = StepNoise(
        t,
        torch.randn((count, *shape), generator=g),
        torch.zeros(count, dtype=torch.bool),
        torch.zeros(count, dtype=torch.bool),
    )
    return x0, emb, draws


@torch.no_grad()
def eval_loss(module, scheduler, evalset, cfg) -> float:
    x0, emb, draws = evalset
    plain = cfg.diffusion.model_copy(update={"loss_weighting": "none"})
    return float(diffusion_loss(module, scheduler, x0, emb, draws, plain))


def run_setting(args, table: str, name: str, overrides: dict) -> dict:
    cfg = base_config(args, table, name, overrides)
    torch.set_num_threads(args.threads)
    data, images = load_training_data(cfg)
    state = build_state(cfg, data, torch.device("cpu"))
    scheduler = DDPMScheduler.from_config(state.model.scheduler_config)
    evalset = held_out(cfg, data, images, args.eval_size, state.model.latent_shape())
    train_rows = data.num_rows - args.eval_size
    order = BatchOrder(train_rows, cfg.seed)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)
    embeddings = torch.from_numpy(data.embeddings)
    curve, start, train_losses = [], time.time(), []
    ctx = WorkerContext()
    while state.step < cfg.max_steps:
        idx = torch.from_numpy(order.global_batch(state.step, cfg.batch_size))
        batch = pixels[idx].float() / 127.5 - 1.0
        train_losses.append(train_step(state, state.module, scheduler, batch, embeddings[idx], cfg, ctx))
        if state.step % args.eval_every == 0 or state.step == cfg.max_steps:
            ema_module = copy.deepcopy(state.module)
            state.ema.copy_to(ema_module)
            point = {
                "step": state.step,
                "train_loss": float(np.mean(train_losses[-args.eval_every :])),
                "eval_raw": eval_loss(state.module, scheduler, evalset, cfg),
                "eval_ema": eval_loss(ema_module, scheduler, evalset, cfg),
                "wall_s": time.time() - start,
            }
            curve.append(point)
            print(
                f"  {name:24s} step {point['step']:4d} train {point['train_loss']:.4f} "
                f"eval raw {point['eval_raw']:.4f} ema {point['eval_ema']:.4f} ({point['wall_s']:.0f} s)",
                flush=True,
            )
    return {
        "name": name,
        "overrides": overrides,
        "curve": curve,
        "params": sum(p.numel() for p in state.module.parameters()),
    }


def plot(results: list[dict], key: str, path: Path) -> None:
    """A minimal line plot with PIL (no matplotlib here)."""
    w, h, pad = 640, 400, 50
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    values = [p[key] for r in results for p in r["curve"]]
    steps = [p["step"] for r in results for p in r["curve"]]
    lo, hi, smax = min(values), max(values), max(steps)
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    draw.rectangle([pad, pad, w - pad, h - pad], outline="black")
    for i, r in enumerate(results):
        pts = [
            (pad + (w - 2 * pad) * p["step"] / smax, h - pad - (h - 2 * pad) * (p[key] - lo) / max(1e-9, hi - lo))
            for p in r["curve"]
        ]
        draw.line(pts, fill=colours[i % len(colours)], width=2)
        draw.text((pad + 5, pad + 5 + 14 * i), r["name"], fill=colours[i % len(colours)])
    draw.text((pad, h - pad + 8), f"step 0 .. {smax}", fill="black")
    draw.text((5, pad - 15), f"{key}: {lo:.3f} .. {hi:.3f}", fill="black")
    img.save(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default=None, help="face table (required without --quick)")
    p.add_argument("--out", default=None, help="curves.json and the plots (required without --quick)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--eval-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    p.add_argument("--random-embeddings", action="store_true")
    p.add_argument("--quick", action="store_true", help="2 settings, 4 steps, batch 4, 16 px, a random table")
    args = p.parse_args(argv)
    if not args.quick:
        if not (args.table and args.out):
            p.error("--table and --out are required (or --quick)")
        return compare(args)
    from bench_inputs import random_face_table

    args.steps, args.batch_size, args.image_size, args.eval_every, args.eval_size = 4, 4, 16, 2, 8
    args.settings = ",".join(list(SETTINGS)[:2])
    with tempfile.TemporaryDirectory() as tmp:
        args.out = args.out or f"{tmp}/out"
        args.table = args.table or random_face_table(f"{tmp}/faces.parquet", num_people=4, per_person=6, size=16)
        return compare(args)


def compare(args) -> int:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    table = args.table
    if args.random_embeddings:
        table = with_random_embeddings(args.table, f"{args.out}/faces_random_emb.parquet")
    results = []
    for name in args.settings.split(","):
        results.append(run_setting(args, table, name, SETTINGS[name]))
        (Path(args.out) / "curves.json").write_text(json.dumps(results, indent=1))
    for key in ("eval_raw", "eval_ema"):
        plot(results, key, Path(args.out) / f"curves_{key}.png")
    print(f"{'setting':24s} " + " ".join(f"{p['step']:>7d}" for p in results[0]["curve"]))
    for r in results:
        print(f"{r['name']:24s} " + " ".join(f"{p['eval_raw']:7.4f}" for p in r["curve"]) + "  (eval, raw)")
        print(f"{'':24s} " + " ".join(f"{p['eval_ema']:7.4f}" for p in r["curve"]) + "  (eval, EMA)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
