"""Prepare faces: an image-folder tree (one folder per identity, e.g. ../shared/data/lfw112/images,
optionally restricted to a people list and a minimum number of images) or an insightface
train.rec/.idx -> a Parquet face table (image, label, identity, source, width, height)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.data.config import PrepareFacesConfig  # noqa: E402


def body(cfg: PrepareFacesConfig) -> None:
    from uiface_ray.data.prepare import prepare_faces

    result = prepare_faces(cfg)
    table = result.table
    print(
        f"[prepare_faces] {table.images} images of {table.identities} identities -> {table.output} "
        f"({result.seconds:.1f} s)"
    )


def main(argv=None) -> int:
    return run_job(PrepareFacesConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
