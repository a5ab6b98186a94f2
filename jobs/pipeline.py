"""The whole UIFace chain at small scale (what scripts/run.sh runs): prepare faces -> embed (dlib) ->
train a small generator (or reuse a cached one) -> make identities -> synthesize with 2 sampler actors ->
metrics -> export -> report (<workdir>/report.md, the newest of <workdir>/runs/). Reruns skip what is
complete and resume the rest; --dry_run=true prints what each stage would do and an estimate of each from
a short probe of its real work (about the time of a toy run), and writes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.runtime.config import PipelineConfig  # noqa: E402


def body(cfg: PipelineConfig) -> None:
    import logging

    from uiface_ray.runtime.pipeline_stages import run_pipeline

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from uiface_ray.storage import read_bytes

    if cfg.dry_run:
        from uiface_ray.runtime.pipeline_stages import dry_run_pipeline

        dry_run_pipeline(cfg)
        return
    result = run_pipeline(cfg)
    print(read_bytes(result.report, cfg.storage).decode())
    print(f"[pipeline] report -> {result.report}")


def main(argv=None) -> int:
    return run_job(PipelineConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
