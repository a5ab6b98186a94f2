"""Embed a face table: add an `embedding` column (L2-normalised identity embeddings from dlib's
ResNet descriptor or an IResNet checkpoint), computed by a pool of Ray actors, and record the
encoder in the schema metadata key `uiface.encoder`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.runtime.job import run_job  # noqa: E402
from uiface_ray.encoders.config import EmbedConfig  # noqa: E402


def body(cfg: EmbedConfig) -> None:
    from uiface_ray.runtime.embed import run_embed

    result = run_embed(cfg)
    print(
        f"[embed] {result.images} x {result.dim}-d embeddings ({result.encoder['name']}, "
        f"{result.encoder['hash']}) -> {result.output} ({result.seconds:.1f} s, "
        f"{result.images_per_second:.1f} images/s on {result.num_actors} actors)"
    )


def main(argv=None) -> int:
    return run_job(EmbedConfig, body, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
