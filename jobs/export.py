"""Export a synthetic dataset: image folders images/<label>/<index>.jpg (zero-padded, so folder loaders
number the classes as train.rec does; labels.tsv maps each folder to its identity id), insightface
train.rec/.idx/property, and a dataset card (README.md + dataset_card.json). The output must be new,
empty, or made by an earlier export (it holds .uiface-export.json), and must not overlap the dataset.
The shards are exported by a pool of Ray workers into <output>/.staging-<key>/, stitched, then moved
into place; rerunning the same command after an interrupt skips the shards already exported."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.export.config import ExportConfig  # noqa: E402


def body(cfg: ExportConfig) -> None:
    from uiface_ray.runtime.export import run_export_on_ray

    result = run_export_on_ray(cfg)  # validates first: bad input is one line before any Ray starts
    print(
        f"[export] {result.images} images of {result.identities} identities -> {result.output} "
        f"({result.shards_run} shards exported now, {result.shards_skipped} already done and skipped; "
        f"{result.seconds:.1f} s)"
    )
    for url in result.written:
        print(f"  {url}")


def main(argv=None) -> int:
    return run_job(ExportConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
