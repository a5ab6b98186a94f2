"""The fixed mean of dlib's raw face descriptors, subtracted before normalising (see dlib_resnet.py).

Computed by :func:`reference_mean` from the first image of every 4th person of LFW's
``peopleDevTrain.txt`` (1,010 people, one image each, 112x112 chips; DevTest people never used):
``python -m uiface_ray.encoders.dlib_mean ../shared/data/lfw112`` prints this table again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

__all__ = ["DLIB_MEAN_DESCRIPTOR", "reference_mean"]

DLIB_MEAN_DESCRIPTOR: tuple[float, ...] = (
    -0.098864, +0.086780, +0.053618, -0.044421, -0.096524, -0.014719, -0.014641, -0.110448,
    +0.143083, -0.065143, +0.192506, -0.033885, -0.243662, -0.037378, -0.031961, +0.122950,
    -0.150800, -0.124618, -0.114648, -0.079195, +0.018163, +0.035501, +0.029610, +0.020272,
    -0.136051, -0.302317, -0.071586, -0.089936, +0.051115, -0.090137, +0.020075, +0.055628,
    -0.179131, -0.052985, +0.029714, +0.062993, -0.046267, -0.067252, +0.210584, +0.011507,
    -0.174060, +0.008969, +0.057856, +0.246022, +0.198665, +0.000956, +0.020167, -0.071509,
    +0.118721, -0.259566, +0.048235, +0.141773, +0.118219, +0.072138, +0.081825, -0.144230,
    +0.022137, +0.135911, -0.185195, +0.075996, +0.075181, -0.096079, -0.039659, -0.033465,
    +0.155457, +0.087001, -0.091296, -0.140935, +0.164421, -0.141532, -0.042727, +0.079239,
    -0.093724, -0.165921, -0.258149, +0.036004, +0.374722, +0.128759, -0.174016, +0.014871,
    -0.071349, -0.017821, +0.036765, +0.037608, -0.074190, -0.049050, -0.091386, +0.024089,
    +0.194718, -0.025257, -0.022779, +0.216657, +0.012353, -0.006602, +0.038438, +0.048190,
    -0.113560, -0.008679, -0.113702, -0.015255, +0.045347, -0.097015, +0.011313, +0.087088,
    -0.174822, +0.160960, -0.021072, -0.026559, -0.008265, -0.020210, -0.081298, -0.002017,
    +0.170957, -0.246551, +0.208399, +0.174400, +0.001498, +0.129944, +0.064191, +0.058246,
    +0.005149, -0.003194, -0.130573, -0.105776, +0.034304, -0.029193, +0.021460, +0.032260,
)


def reference_mean(lfw_dir: str | Path, every: int = 4) -> np.ndarray:
    """Mean raw descriptor over the first image of every ``every``-th DevTrain person."""
    from PIL import Image

    from uiface_ray.encoders.dlib_resnet import DlibResNetEncoder, default_model_dir, RECOGNITION_MODEL

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
    rows = [", ".join(f"{v:+.6f}" for v in mean[i:i + 8]) for i in range(0, 128, 8)]
    print("DLIB_MEAN_DESCRIPTOR: tuple[float, ...] = (\n    " + ",\n    ".join(rows) + ",\n)")
