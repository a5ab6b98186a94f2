"""Dataset metrics for a synthetic dataset or a real face table: genuine/impostor similarity under an
FR encoder (with a histogram), intra-class diversity (1 - MS-SSIM), improved precision/recall in the
FR embedding space against real faces, and LPIPS-VGG only when its weight files are given."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.evaluate.config import MetricsConfig  # noqa: E402


def body(cfg: MetricsConfig) -> None:
    from uiface_ray.evaluate.metrics import run_metrics

    m = run_metrics(cfg)
    print(f"[metrics] {m.source}: {m.num_images} images, {m.num_identities} identities, encoder {m.encoder}")
    print(f"  genuine {m.genuine_mean:.4f}  impostor {m.impostor_mean:.4f}  d' {m.d_prime:.3f}")
    print(f"  diversity (1 - MS-SSIM) {m.diversity_1_minus_msssim:.4f} over {m.diversity_identities} identities")
    if m.fr_recall is not None:
        print(f"  FR-embedding precision {m.fr_precision:.4f}  recall {m.fr_recall:.4f} (k={m.k})")
    if m.lpips_vgg is not None:
        print(f"  LPIPS-VGG {m.lpips_vgg:.4f}")
    print(f"  -> {cfg.out}/metrics.json")


def main(argv=None) -> int:
    return run_job(MetricsConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
