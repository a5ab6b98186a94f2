"""Train an IResNet face-recognition model (ArcFace or CosFace head; the paper's recipe by default) on a
synthetic dataset or a real face table, data-parallel with Ray Train or in one process (runner=local);
writes backbone.pth (insightface layout, loadable as an identity encoder with kind=iresnet),
train_log.json and, with verify_pairs, the accuracy curve verify_curve.png."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.fr.config import FRTrainConfig  # noqa: E402


def body(cfg: FRTrainConfig) -> None:
    from uiface_ray.runtime.train_fr import fit_fr

    res = fit_fr(cfg)
    print(
        f"[train_fr] {res.steps} steps in {res.elapsed_s / 60:.1f} min on {res.num_images} images of "
        f"{res.num_classes} identities; loss {res.losses[0]:.3f} -> {res.losses[-1]:.3f}"
    )
    if res.curve:
        print(f"  verification {100 * res.curve[-1].accuracy:.2f}% +- {100 * res.curve[-1].accuracy_std:.2f}")
    print(f"  -> {res.backbone_url}")


def main(argv=None) -> int:
    return run_job(FRTrainConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
