"""Synthesize a face dataset: every identity of an identity table x images_per_identity images, by a pool
of Ray sampler actors, into <output>/shards/shard-NNNNN.parquet + <output>/manifest.json (written last).
Rerunning the same command after a crash finishes the missing shards only."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.synth.config import SynthesisConfig  # noqa: E402


def body(cfg: SynthesisConfig, faults=None) -> None:
    """The job; ``faults`` is the tests' fault plan (tests/fault_seam/synthesize_with_faults.py), None here."""
    from uiface_ray.runtime.synthesis import run_synthesis

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if cfg.dry_run:
        from uiface_ray.runtime.synthesis_estimate import estimate_synthesis

        for line in estimate_synthesis(cfg).lines(cfg):
            print(f"[synthesize] {line}")
        return
    result = run_synthesis(cfg, faults=faults)
    print(
        f"[synthesize] done: {result.num_rows} images in {result.num_shards} shards -> {result.output} "
        f"({result.shards_run} run now, {result.shards_skipped} already done and skipped "
        f"({result.shards_adopted} of them adopted: written by an earlier run, verified), {result.shard_retries} re-dispatched; "
        f"{result.images_per_second:.2f} img/s with {result.actors} actors)"
    )


def main(argv=None) -> int:
    return run_job(SynthesisConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
