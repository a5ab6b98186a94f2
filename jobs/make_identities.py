"""Make synthetic identities (paper section 3.5): draw random faces with the empty context c_e, embed them
with the identity encoder, keep a candidate only if it is far from every kept identity and from every
identity of the generator's training set; write the identity table (Parquet) and a summary (JSON)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.identities.config import MakeIdentitiesConfig  # noqa: E402


def body(cfg: MakeIdentitiesConfig) -> None:
    from uiface_ray.runtime.identities import make_identities

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = make_identities(cfg)
    print(
        f"[make_identities] kept {summary.kept} of {summary.candidates_drawn} candidates "
        f"({summary.rejected_similar} too similar, {summary.rejected_leakage} too close to training identities) "
        f"-> {cfg.output}"
    )


def main(argv=None) -> int:
    return run_job(MakeIdentitiesConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
