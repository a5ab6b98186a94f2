"""Does the FR trainer learn on this machine?  Train on real LFW DevTrain faces within a time budget and
print the pairsDevTest accuracy curve (10-fold, flip-fused features) as it trains.

    python benchmarks/fr_calibration.py                                  # our 32 px recipe, 10 minutes
    python benchmarks/fr_calibration.py --size 64
    python benchmarks/fr_calibration.py --recipe configs/train_fr_paper_cpu.yaml   # the paper's recipe
    python benchmarks/fr_calibration.py --set max_minutes=2.5 --set ema_decay=0 --out out/fr-cal

Training set: the DevTrain people with at least ``--min-images`` images (298 people, 4,436 faces at
5), read straight from the lfw112 folder (no face detector needed: the faces are aligned chips).
Verification: pairsDevTest (500 same, 500 different pairs of other people).  The machine's load
average is printed before and after, since the CPU may be shared.

``--dtype`` (default ``float32,auto``): the same budget once per precision, in this process, then a
table of steps, images/s, the last accuracy, achieved GFLOP/s of training (forward + backward
FLOPs of one image counted by torch's FlopCounterMode, times images/s) and its fraction of the
matmul peak measured here in that dtype (benchmarks/perf.py).  ``--quick``: 0.2 minutes, 200 pairs,
the DevTrain people with at least 20 images (skipped where the LFW faces are absent).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw112"), help="lfw112 folder")
    p.add_argument("--recipe", default=str(ROOT / "configs" / "train_fr_cpu32.yaml"), help="FR config (YAML)")
    p.add_argument("--size", type=int, default=None, help="input side (overrides the recipe's input_size)")
    p.add_argument("--minutes", type=float, default=None, help="time budget (overrides max_minutes)")
    p.add_argument("--min-images", type=int, default=5, help="DevTrain people with at least this many images")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config override")
    p.add_argument("--out", default=None, help="keep backbone.pth, train_log.json, verify_curve.png here")
    p.add_argument("--dtype", default="float32,auto", help="comma list of float32, bfloat16, float16, auto")
    p.add_argument(
        "--quick", action="store_true", help="0.2 minutes per precision, 200 pairs, people with >= 20 images"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.minutes = 0.2
        args.min_images = max(args.min_images, 20)
        args.set = [*args.set, "verify_max_pairs=200"]
    from bench_inputs import lfw_dir, skip

    if lfw_dir(args.lfw) is None:
        skip(f"LFW faces not found at {args.lfw} (give --lfw)")

    from uiface_ray.cli import load_config
    from uiface_ray.evaluate.faceset import read_image_folder
    from uiface_ray.fr.config import FRTrainConfig

    lfw = Path(args.lfw)
    out = args.out or "uiface-fr-calibration"  # each run's own folder: see calibrate
    overrides = [
        f"--data={lfw}",
        f"--out={os.path.abspath(out)}",
        f"--verify_pairs={lfw / 'pairsDevTest.txt'}",
        f"--verify_images={lfw / 'images'}",
        "--runner=local",
    ]
    overrides += [f"--input_size={args.size}"] if args.size else []
    overrides += [f"--max_minutes={args.minutes}"] if args.minutes else []
    overrides += [f"--{kv}" for kv in args.set]
    cfg = load_config(FRTrainConfig, args.recipe, overrides)
    faces = read_image_folder(str(lfw / "images"), str(lfw / "peopleDevTrain.txt"), min_images=args.min_images)
    print(
        f"[fr_calibration] {len(faces.labels)} DevTrain faces of {faces.num_classes} people; recipe "
        f"{Path(args.recipe).name}: IR-{cfg.depth} x{cfg.width} at {cfg.input_size} px, {cfg.head} "
        f"s={cfg.head_s} m={cfg.head_m}, lr {cfg.lr} {cfg.lr_schedule}, ema {cfg.ema_decay}, budget "
        f"{cfg.max_minutes} min, {cfg.torch_threads} threads",
        flush=True,
    )
    from perf import load, measured_peak, precisions

    rows = []
    for q in precisions(args.dtype, "cuda" if cfg.use_gpu else "cpu"):
        peak = measured_peak(q.dtype, q.device, seconds=0.3 if args.quick else 1.0)
        run_cfg = cfg.model_copy(update={"dtype": q.dtype_name})
        res, img_s = calibrate(run_cfg, faces, args)
        gflops = image_flops(run_cfg, faces.num_classes) * img_s / 1e9
        acc = res.curve[-1].accuracy if res.curve else float("nan")
        rows.append((q.dtype_name, res.steps, img_s, acc, gflops, gflops / peak, load()))
    print(f"\n{'dtype':<10}{'steps':>7}{'img/s':>8}{'acc %':>8}{'GFLOP/s':>9}{'of peak':>9}{'speedup':>9}  load")
    for name, steps, img_s, acc, gflops, frac, ld in rows:
        print(
            f"{name:<10}{steps:>7}{img_s:>8.0f}{100 * acc:>8.2f}{gflops:>9.1f}{frac:>9.1%}"
            f"{img_s / rows[0][2]:>8.2f}x  {ld}"
        )
    return 0


def image_flops(cfg, num_classes: int) -> float:
    """Training FLOPs (forward + backward) of one image of the recipe's model."""
    import torch

    from perf import count_flops
    from uiface_ray.fr.model import FRModel

    size = cfg.input_size or 112
    model = FRModel(cfg.depth, num_classes, cfg.embedding_dim, cfg.head_s, cfg.head_m, None, cfg.head, size, cfg.width)
    x, y = torch.zeros(2, 3, size, size), torch.zeros(2, dtype=torch.long)
    return count_flops(lambda: model(x, y).backward()) / 2


def calibrate(cfg, faces, args):
    """One timed run of ``cfg``; prints its curve; returns (result, training images/s)."""
    from uiface_ray.fr.loop import fit_fr_local

    out = os.path.join(args.out, cfg.dtype) if args.out else tempfile.mkdtemp(prefix="uiface-fr-calibration-")
    cfg = cfg.model_copy(update={"out": os.path.abspath(out)})
    load_before, start = os.getloadavg(), time.time()
    try:
        res = fit_fr_local(cfg, faces)
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    load_after = os.getloadavg()
    img_s = res.steps * cfg.batch_size / max(res.elapsed_s, 1e-9)
    print(
        f"\n[fr_calibration] {cfg.dtype}: {res.steps} steps in {res.elapsed_s / 60:.2f} min "
        f"({img_s:.0f} img/s incl. verification), "
        f"wall {(time.time() - start) / 60:.2f} min; load average before {load_before[0]:.2f} "
        f"after {load_after[0]:.2f} (1 min), {load_after[1]:.2f} (5 min), {os.cpu_count()} CPUs"
    )
    print("minutes | step | pairsDevTest acc (%) | +-")
    for c in res.curve:
        print(f"{c.elapsed_s / 60:7.2f} | {c.step:4d} | {100 * c.accuracy:6.2f} | {100 * c.accuracy_std:.2f}")
    if args.out:
        print(f"  -> {res.backbone_url}")
    return res, img_s


if __name__ == "__main__":
    raise SystemExit(main())
