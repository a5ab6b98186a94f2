"""What reduced precision costs the images (issue 25, item 2): float32 against auto, same seeds.

For the same identities and seeds, samples with the official preset in float32 and in the
precision ``auto`` picks here, then prints the mean and max absolute pixel difference (uint8),
the fraction of samples whose adaptive t0 differs and by how many DDIM steps, the dlib cosine
between each float32/auto pair (the project's dlib encoder: centred, L2-normalised; images
upsampled to 112 px), beside the mean dlib cosine between different float32 samples as the
yardstick of "another face", and the speedup (wall time of the two ``sample`` calls, in this
process, with the load average).

    python benchmarks/precision_cost.py                      # tiny release-layout model, random weights
    python benchmarks/precision_cost.py --model out/model --table faces.parquet   # a trained model, real identities
    python benchmarks/precision_cost.py --quick

On random weights the images are noise: their dlib cosine says little (dlib sees no face).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
import numpy as np  # noqa: E402
import torch  # noqa: E402

from perf import load  # noqa: E402
from PIL import Image  # noqa: E402
from uiface_ray.sample import SamplerConfig, UIFaceSampler  # noqa: E402


def sample(model: str, dtype: str, emb, seeds, steps: int, batch: int):
    sampler = UIFaceSampler.from_pretrained(
        model, dtype=dtype, config=SamplerConfig.official(num_inference_steps=steps)
    )
    sampler.sample(emb[:1], seeds[:1])  # warm-up
    start, images, t0 = time.perf_counter(), [], []
    for b in range(0, len(seeds), batch):
        out = sampler.sample(emb[b : b + batch], seeds[b : b + batch])
        images.append(out.images)
        t0.append(out.t0)
    return sampler, np.concatenate(images), np.concatenate(t0), time.perf_counter() - start, out.timesteps


def contexts(model: str, table: str | None, count: int) -> np.ndarray:
    """``count`` context embeddings: one per identity of ``table`` (its first image), else random."""
    if table is None:
        dim = UIFaceSampler.from_pretrained(model, dtype="float32").model.embedding_dim
        return np.random.default_rng(0).normal(size=(count, dim)).astype(np.float32)
    from uiface_ray.train.data import load_face_data

    data = load_face_data(table, UIFaceSampler.from_pretrained(model, dtype="float32").model.embedding_dim, 1, None)
    first = [int(np.flatnonzero(data.labels == lab)[0]) for lab in range(int(data.labels.max()) + 1)]
    if len(first) < count:
        raise SystemExit(f"error: --table {table} has {len(first)} identities, --images asks for {count}")
    return data.embeddings[first[:count]].astype(np.float32)


def dlib_cosines(ref: np.ndarray, got: np.ndarray) -> tuple[np.ndarray, float]:
    """dlib cosine of each (float32, auto) pair, and the mean over pairs of different float32 samples."""
    from uiface_ray.encoders import load_encoder

    encoder = load_encoder({"kind": "dlib"})
    up = lambda ims: np.stack([np.asarray(Image.fromarray(im).resize((112, 112), Image.BICUBIC)) for im in ims])  # noqa: E731
    a, b = encoder.embed(up(ref)), encoder.embed(up(got))  # (N, 128) each, unit rows
    sims = a @ a.T
    return (a * b).sum(1), float(sims[~np.eye(len(a), dtype=bool)].mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a saved model (default: the tiny release layout, random weights)")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", default=None, help="face table: the contexts are its identities' embeddings")
    p.add_argument("--no-dlib", action="store_true", help="skip the dlib cosines")
    p.add_argument("--quick", action="store_true", help="4 images, 10 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.batch, args.steps = 4, 4, 10
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from uiface_ray.model import save_model
            from uiface_ray.release.importer import build_official_model

            model = f"{tmp}/official-tiny"
            save_model(build_official_model("tiny", seed=3), model)
        emb = contexts(model, args.table, args.images)
        seeds = list(range(1000, 1000 + args.images))
        _, ref, t0_ref, s_ref, timesteps = sample(model, "float32", emb, seeds, args.steps, args.batch)
        load_ref = load()
        auto, got, t0_got, s_got, _ = sample(model, "auto", emb, seeds, args.steps, args.batch)
    diff = np.abs(ref.astype(np.int16) - got.astype(np.int16))
    step_of = {int(t): k for k, t in enumerate(timesteps)}
    step_of.setdefault(1000, -1)  # t0 = T: never switched
    moved = [abs(step_of.get(int(a), 0) - step_of.get(int(b), 0)) for a, b in zip(t0_ref, t0_got) if a != b]
    print(
        f"# {model if args.model else 'tiny release-layout model, random weights'}: {args.images} images "
        f"({'identities of ' + args.table if args.table else 'random contexts'}), "
        f"{args.steps} DDIM steps, official preset, {args.threads} thread(s)"
    )
    print(
        f"float32: {s_ref:.1f} s ({load_ref}); {auto.precision.describe()}: {s_got:.1f} s ({load()}); "
        f"speedup {s_ref / s_got:.2f}x"
    )
    print(
        f"pixels (uint8): mean |diff| {diff.mean():.2f}, max |diff| {diff.max()}, "
        f"per-image mean |diff| max {diff.reshape(len(ref), -1).mean(1).max():.2f}"
    )
    print(
        f"adaptive t0 differs for {len(moved)}/{args.images} samples ({len(moved) / args.images:.0%})"
        + (f", by {min(moved)}-{max(moved)} DDIM steps" if moved else "")
    )
    if not args.no_dlib:
        cos, other = dlib_cosines(ref, got)
        print(
            f"dlib cosine of each float32/{auto.precision.dtype_name} pair: mean {cos.mean():.3f}, "
            f"min {cos.min():.3f}, median {np.median(cos):.3f}, below 0.9: {(cos < 0.9).mean():.0%}; "
            f"different float32 samples: mean {other:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
