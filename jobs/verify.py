"""10-fold verification accuracy of an identity encoder (e.g. a trained FR backbone) on LFW-format
pairs files and insightface .bin benchmarks (lfw, cfp_fp, agedb_30, calfw, cplfw)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.evaluate.config import VerifyConfig  # noqa: E402


def body(cfg: VerifyConfig) -> None:
    from uiface_ray.evaluate.verify import run_verify

    for r in run_verify(cfg):
        print(
            f"[verify] {r.name}: {100 * r.accuracy:.2f}% +- {100 * r.accuracy_std:.2f} "
            f"({r.num_pairs} pairs, encoder {r.encoder})"
        )


def main(argv=None) -> int:
    return run_job(VerifyConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
