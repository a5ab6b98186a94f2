"""Import the released UIFace model (Tencent/TFace generation/uiface): its diffusion checkpoint
(EMA or non-EMA), its VQ-f4 encoder and decoder state dicts -> one uiface-ray model folder that
jobs/synthesize.py, jobs/make_identities.py and UIFaceSampler load.  Files are read without running
pickled code; every key must match the release's layout."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.release.config import OfficialImportConfig  # noqa: E402


def body(cfg: OfficialImportConfig) -> None:
    from uiface_ray.release.importer import import_official

    model = import_official(cfg)
    official = model.info["official"]
    params = sum(p.numel() for m in (model.unet, model.context_encoder) for p in m.parameters())
    print(
        f"[import_official] {official['weights']} weights of {official['sources']['checkpoint']['file']} "
        f"({params:,} parameters) + VQ-f4 -> {cfg.output}"
    )


def main(argv=None) -> int:
    return run_job(OfficialImportConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
