"""The paper's ablation (Table 2) at our scale: for one generator, the same identities and seeds through
each sampler mode; dataset metrics for each; an FR model (Ray Train) trained on each dataset and on the
real faces (LFW DevTrain, or your own face table with real_faces), verified on pairsDevTest (or pairs of
held-out identities of your table); Figure 2 (identity only in a timestep interval); an HTML
report with image grids, d_t curves and genuine/impostor histograms."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.paper.config import AblationConfig  # noqa: E402


def body(cfg: AblationConfig) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from uiface_ray.paper.ablation import run_ablation
    from uiface_ray.paper.ablation_report import TABLE2_NAMES, write_report
    from uiface_ray.runtime.session import ray_session
    from uiface_ray.runtime.train_fr import fit_fr

    with ray_session(cfg.ray):  # one session for every FR training of the table
        res = run_ablation(cfg, fit_fr)
    page = write_report(cfg, res)
    print(f"[ablation] method | 1-MS-SSIM | FR-recall | genuine | impostor | {res.verify_name} acc")
    for r in res.rows:
        m = r.metrics
        rec = "-" if m.fr_recall is None else f"{m.fr_recall:.3f}"
        print(
            f"  {TABLE2_NAMES.get(r.name, r.name)} | {m.diversity_1_minus_msssim:.4f} | {rec} | "
            f"{m.genuine_mean:.3f} | {m.impostor_mean:.3f} | {100 * r.verify_accuracy:.2f}%"
        )
    print(f"  -> {res.results_url}\n  -> {page}")


def main(argv=None) -> int:
    return run_job(AblationConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
