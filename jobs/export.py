"""Export a synthetic dataset: image folders <identity>/<index>.jpg, insightface train.rec/.idx/property,
and a dataset card (README.md + dataset_card.json)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.config import run_job  # noqa: E402
from uiface_ray.export.config import ExportConfig  # noqa: E402


def body(cfg: ExportConfig) -> None:
    from uiface_ray.export.run import run_export

    result = run_export(cfg)
    print(f"[export] {result.images} images of {result.identities} identities -> {result.output}")
    for url in result.written:
        print(f"  {url}")


def main(argv=None) -> int:
    return run_job(ExportConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
