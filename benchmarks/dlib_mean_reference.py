"""Recompute the fixed mean of dlib's raw descriptors (uiface_ray/encoders/dlib_mean.py) from LFW DevTrain:
``.venv/bin/python benchmarks/dlib_mean_reference.py ../shared/data/lfw112``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.encoders.dlib_resnet import RECOGNITION_MODEL, DlibResNetEncoder, default_model_dir  # noqa: E402


def reference_mean(lfw_dir: str | Path, every: int = 4) -> np.ndarray:
    """Mean raw descriptor over the first image of every ``every``-th DevTrain person."""
    from PIL import Image

    lfw_dir = Path(lfw_dir)
    lines = (lfw_dir / "peopleDevTrain.txt").read_text().splitlines()[1:]
    people = [line.split("\t")[0] for line in lines][::every]
    encoder = DlibResNetEncoder(default_model_dir() / RECOGNITION_MODEL, centre=False)
    total = np.zeros(128, dtype=np.float64)
    for n, person in enumerate(people, start=1):
        first = sorted((lfw_dir / "images" / person).glob("*.jpg"))[0]
        chip = np.asarray(Image.open(first).convert("RGB"))[None]  # (1, H, W, 3)
        total += encoder.raw_descriptors(chip)[0]
        if n % 200 == 0:
            print(f"{n}/{len(people)} people", file=sys.stderr)
    return (total / len(people)).astype(np.float32)


if __name__ == "__main__":
    mean = reference_mean(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/lfw112")
    rows = [", ".join(f"{v:+.6f}" for v in mean[i : i + 8]) for i in range(0, 128, 8)]
    print("DLIB_MEAN_DESCRIPTOR: tuple[float, ...] = (\n    " + ",\n    ".join(rows) + ",\n)")
