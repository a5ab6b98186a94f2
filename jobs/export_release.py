"""Write a model trained with model.unet=release in the official release's own files.

ema_averaged_model_<step>.ckpt (the release's diffusion checkpoint: eps_model.* and its schedule
buffers), first_stage_encoder/decoder_state_dict.pt (latent space, VQ autoencoder), unet_config.yaml
(the release's model config) and export.json; see docs/TRAINING.md.

    .venv/bin/python jobs/export_release.py --model=out/train_diffusion_paper/checkpoints/step-00900000/model \
        --output=out/paper_release
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.release.config import ReleaseExportConfig  # noqa: E402


def body(cfg: ReleaseExportConfig) -> None:
    from uiface_ray.release.exporter import export_release
    from uiface_ray.storage import resolve_urls

    result = export_release(resolve_urls(cfg))
    vq = {None: "no autoencoder", True: "loads in the release's VQ code", False: "needs its ddconfig (export.json)"}
    print(
        f"[export_release] {', '.join(result.files)} -> {result.output} (autoencoder: {vq[result.vq_release_compatible]})"
    )


def main(argv=None) -> int:
    return run_job(ReleaseExportConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
