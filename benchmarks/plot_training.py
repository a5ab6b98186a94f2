"""Loss curve of a diffusion training run from a checkpoint's metrics.jsonl (every line of the run).

    python benchmarks/plot_training.py --checkpoint out/h2/demo32/checkpoints/step-00005000 \
        --png loss.png [--log-y]

Prints the loss averaged over windows of steps (a table for notes) and writes the curve as PNG:
the logged loss and its moving average over ``--window`` log lines.  ``--quick``: the same on a
made-up run of 200 steps (a decaying loss) written as a checkpoint's metrics.jsonl, PNG included.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray import storage  # noqa: E402
from uiface_ray.evaluate.plots import line_plot  # noqa: E402


def read_metrics(checkpoint: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, loss, images_per_s) of every metrics line, in step order."""
    url = storage.join(checkpoint, "metrics.jsonl")
    lines = [json.loads(x) for x in storage.read_bytes(url).decode().splitlines() if x.strip()]
    if not lines:
        raise SystemExit(f"error: {url} holds no metrics lines")
    lines.sort(key=lambda d: d["step"])
    return (
        np.array([d["step"] for d in lines]),
        np.array([d["loss"] for d in lines], float),
        np.array([d.get("images_per_s", np.nan) for d in lines], float),
    )


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i in range(len(values)):
        out[i] = values[max(0, i - window + 1) : i + 1].mean()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (or URL) with metrics.jsonl")
    p.add_argument("--png", default=None, help="write the loss curve here")
    p.add_argument("--window", type=int, default=10, help="moving-average window in log lines")
    p.add_argument("--table-every", type=int, default=500, help="steps per row of the printed table")
    p.add_argument("--log-y", action="store_true", help="plot log10(loss)")
    p.add_argument("--quick", action="store_true", help="a made-up 200-step run, table and PNG")
    args = p.parse_args(argv)
    if not args.quick:
        if not args.checkpoint:
            p.error("--checkpoint is required (or --quick)")
        return report(args)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        lines = [
            {"step": s, "loss": float(0.05 + np.exp(-s / 40) + 0.01 * rng.random()), "images_per_s": 40.0}
            for s in range(5, 201, 5)
        ]
        storage.write_bytes_atomic(f"{tmp}/metrics.jsonl", "".join(json.dumps(m) + "\n" for m in lines).encode())
        args.checkpoint, args.png, args.table_every = tmp, args.png or f"{tmp}/loss.png", 50
        return report(args)


def report(args) -> int:
    steps, loss, speed = read_metrics(args.checkpoint)
    print(f"{len(steps)} metrics lines, steps {steps[0]}..{steps[-1]}; median {np.nanmedian(speed):.1f} img/s")
    print("steps            mean loss")
    for lo in range(0, int(steps[-1]), args.table_every):
        sel = (steps > lo) & (steps <= lo + args.table_every)
        if sel.any():
            print(f"{lo + 1:>6}-{lo + args.table_every:<8} {loss[sel].mean():.4f}")
    if args.png:
        f = np.log10 if args.log_y else (lambda v: v)
        img = line_plot(
            {
                "loss": (steps, f(loss)),
                f"moving average ({args.window})": (steps, f(moving_average(loss, args.window))),
            },
            "diffusion training loss (eq. 3)",
            "step",
            "log10 loss" if args.log_y else "loss",
        )
        img.save(args.png)
        print(f"-> {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
