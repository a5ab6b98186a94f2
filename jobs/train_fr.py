"""Train an IResNet face-recognition model with the ArcFace loss (s=64, m=0.5) on a synthetic dataset
or a real face table, data-parallel with Ray Train; writes backbone.pth (insightface layout, loadable
as an identity encoder with kind=iresnet) and train_log.json."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.config import run_job  # noqa: E402
from uiface_ray.evaluate.settings import FRTrainConfig  # noqa: E402


def body(cfg: FRTrainConfig) -> None:
    from uiface_ray.runtime.session import ray_session
    from uiface_ray.runtime.train_fr import fit_fr

    with ray_session(cfg.ray):
        res = fit_fr(cfg)
    print(f"[train_fr] {res.steps} steps on {res.num_images} images of {res.num_classes} identities; "
          f"loss {res.losses[0]:.3f} -> {res.losses[-1]:.3f}")
    print(f"  -> {res.backbone_url}")


def main(argv=None) -> int:
    return run_job(FRTrainConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
