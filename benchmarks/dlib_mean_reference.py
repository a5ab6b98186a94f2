"""Recompute the fixed mean of dlib's raw descriptors (uiface_ray/encoders/dlib_mean.py) from LFW DevTrain:
``.venv/bin/python benchmarks/dlib_mean_reference.py ../shared/data/lfw112``.

``--quick``: the first image of 8 people only, compared with the stored mean (seconds; skipped where
the LFW faces are absent)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

from uiface_ray.encoders.dlib_resnet import RECOGNITION_MODEL, DlibResNetEncoder, default_model_dir  # noqa: E402


def reference_mean(lfw_dir: str | Path, every: int = 4, limit: int | None = None) -> np.ndarray:
    """Mean raw descriptor over the first image of every ``every``-th DevTrain person (the first
    ``limit`` of them when given)."""
    from PIL import Image

    lfw_dir = Path(lfw_dir)
    lines = (lfw_dir / "peopleDevTrain.txt").read_text().splitlines()[1:]
    people = [line.split("\t")[0] for line in lines][::every][:limit]
    encoder = DlibResNetEncoder(default_model_dir() / RECOGNITION_MODEL, centre=False)
    total = np.zeros(128, dtype=np.float64)
    for n, person in enumerate(people, start=1):
        first = sorted((lfw_dir / "images" / person).glob("*.jpg"))[0]
        chip = np.asarray(Image.open(first).convert("RGB"))[None]  # (1, H, W, 3)
        total += encoder.raw_descriptors(chip)[0]
        if n % 200 == 0:
            print(f"{n}/{len(people)} people", file=sys.stderr)
    return (total / len(people)).astype(np.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("lfw", nargs="?", default=None, help="lfw112 folder (default: ../shared/data/lfw112)")
    p.add_argument("--quick", action="store_true", help="8 people, compared with the stored mean")
    args = p.parse_args(argv)
    from bench_inputs import lfw_dir, skip

    lfw = lfw_dir(args.lfw)
    if lfw is None:
        skip(f"LFW faces not found ({args.lfw or 'set UIFACE_LFW_DIR or put them at ../shared/data/lfw112'})")
    start = time.perf_counter()
    mean = reference_mean(lfw, limit=8 if args.quick else None)
    if args.quick:
        from uiface_ray.encoders.dlib_mean import DLIB_MEAN_DESCRIPTOR

        stored = np.asarray(DLIB_MEAN_DESCRIPTOR, np.float32)
        cosine = float(mean @ stored / np.linalg.norm(mean) / np.linalg.norm(stored))
        print(f"8 people in {time.perf_counter() - start:.1f} s; cosine with the stored mean {cosine:.3f}")
        return 0
    rows = [", ".join(f"{v:+.6f}" for v in mean[i : i + 8]) for i in range(0, 128, 8)]
    print("DLIB_MEAN_DESCRIPTOR: tuple[float, ...] = (\n    " + ",\n    ".join(rows) + ",\n)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
