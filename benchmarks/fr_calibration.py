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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw112"), help="lfw112 folder")
    p.add_argument("--recipe", default=str(ROOT / "configs" / "train_fr_cpu32.yaml"), help="FR config (YAML)")
    p.add_argument("--size", type=int, default=None, help="input side (overrides the recipe's input_size)")
    p.add_argument("--minutes", type=float, default=None, help="time budget (overrides max_minutes)")
    p.add_argument("--min-images", type=int, default=5, help="DevTrain people with at least this many images")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config override")
    p.add_argument("--out", default=None, help="keep backbone.pth, train_log.json, verify_curve.png here")
    args = p.parse_args(argv)

    from uiface_ray.config import load_config
    from uiface_ray.evaluate.faceset import read_image_folder
    from uiface_ray.evaluate.fr_loop import fit_fr_local
    from uiface_ray.evaluate.config import FRTrainConfig

    lfw = Path(args.lfw)
    out = args.out or tempfile.mkdtemp(prefix="uiface-fr-calibration-")
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
    load_before, start = os.getloadavg(), time.time()
    try:
        res = fit_fr_local(cfg, faces)
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    load_after = os.getloadavg()
    print(
        f"\n[fr_calibration] {res.steps} steps in {res.elapsed_s / 60:.2f} min "
        f"({res.steps * cfg.batch_size / max(res.elapsed_s, 1e-9):.0f} img/s incl. verification), "
        f"wall {(time.time() - start) / 60:.2f} min; load average before {load_before[0]:.2f} "
        f"after {load_after[0]:.2f} (1 min), {load_after[1]:.2f} (5 min), {os.cpu_count()} CPUs"
    )
    print("minutes | step | pairsDevTest acc (%) | +-")
    for c in res.curve:
        print(f"{c.elapsed_s / 60:7.2f} | {c.step:4d} | {100 * c.accuracy:6.2f} | {100 * c.accuracy_std:.2f}")
    if args.out:
        print(f"  -> {res.backbone_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
