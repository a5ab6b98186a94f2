"""Do a trained model's samples look like their identity?  dlib similarity of samples vs real faces.

For the grid identities of a run (the ``--num-identities`` with the most images), sample
``--samples`` images per identity with plain DDIM from the identity context (the embedding of the
identity's first image, as in the sample grid) and from c_e, embed them with the project's dlib
encoder (centred, L2-normalised; images upsampled to 112 px), and compare with the real images
of the same identity and of the other identities, degraded to the model's resolution and back
the same way.  Reference rows: real-vs-real at the same resolution.

    python benchmarks/train_demo_eval.py --model out/h2/demo/checkpoints/step-00002000/model \
        --table out/h2/faces_devtrain5_dlib.parquet
    python benchmarks/train_demo_eval.py --quick    # a tiny random model and face table: seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
import numpy as np
import torch
from PIL import Image

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

from uiface_ray.encoders import load_encoder  # noqa: E402
from uiface_ray.model.bundle import load_model  # noqa: E402
from uiface_ray.train.data import decode_images, load_face_data  # noqa: E402
from uiface_ray.train.grid import conditional_images, grid_png  # noqa: E402


def grid_rows(data, count: int) -> np.ndarray:
    """Row indices of the first image of the ``count`` identities with the most images (ties: by name)."""
    counts = np.bincount(data.labels)
    labels = sorted(range(len(counts)), key=lambda lab: (-counts[lab], data.identities[lab]))[:count]
    return np.array([int(np.flatnonzero(data.labels == lab)[0]) for lab in labels], dtype=np.int64)


def up(images: np.ndarray, size: int = 112) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])


@torch.no_grad()
def samples_for(model, embeddings: torch.Tensor, per_identity: int, steps: int, seed: int) -> np.ndarray:
    """(K * per_identity, S, S, 3) uint8; the noise of sample j is shared across identities."""
    tokens = model.context_encoder(embeddings).repeat_interleave(per_identity, dim=0)
    seeds = [seed + j for _ in range(embeddings.shape[0]) for j in range(per_identity)]
    return conditional_images(model, tokens, seeds, steps, batch_size=64)


def sampler_samples(
    model, embeddings: np.ndarray, per_identity: int, steps: int, seed: int, mode: str, guidance_scale: float
) -> np.ndarray:
    """Like samples_for, through the project's sampler (UIFaceSampler) in ``mode`` with CFG weight w."""
    from uiface_ray.sample.api import UIFaceSampler
    from uiface_ray.sample.config import SamplerConfig

    sampler = UIFaceSampler(model, SamplerConfig(mode=mode, num_inference_steps=steps, guidance_scale=guidance_scale))
    contexts = np.repeat(embeddings, per_identity, axis=0)
    seeds = [seed + j for _ in range(len(embeddings)) for j in range(per_identity)]
    return np.concatenate(
        [sampler.sample(contexts[s : s + 64], seeds[s : s + 64]).images for s in range(0, len(seeds), 64)]
    )


def similarity_table(
    sample_emb: np.ndarray, real_emb: np.ndarray, real_labels: np.ndarray, sample_labels: np.ndarray
) -> tuple[float, float]:
    """Mean cosine similarity of each sample to real images of its identity / of the others."""
    sims = sample_emb @ real_emb.T  # (S, R)
    same = sample_labels[:, None] == real_labels[None, :]
    return float(sims[same].mean()), float(sims[~same].mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a saved model (required without --quick)")
    p.add_argument("--table", default=None, help="face table with embeddings (required without --quick)")
    p.add_argument("--num-identities", type=int, default=8)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--real-per-identity", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--min-images", type=int, default=5)
    p.add_argument(
        "--mode",
        default=None,
        choices=["baseline", "two_stage_fixed", "two_stage_adaptive", "attention_injection", "uiface"],
        help="sample identities with UIFaceSampler in this mode and --guidance-scale (default: plain "
        "conditional DDIM, no guidance)",
    )
    p.add_argument("--guidance-scale", type=float, default=1.0, help="w of (w+1)*eps(c) - w*eps(c_e) with --mode")
    p.add_argument("--png", default=None, help="write the samples as a grid PNG here")
    p.add_argument(
        "--clip-sample",
        action="store_true",
        help="clip the x0 estimate to [-1, 1] (for pixel-space checkpoints saved before clip_sample)",
    )
    p.add_argument("--quick", action="store_true", help="a tiny random model and table, 2 identities x 2, 2 steps")
    args = p.parse_args(argv)
    if not args.quick and not (args.model and args.table):
        p.error("--model and --table are required (or --quick)")
    torch.set_num_threads(1)
    if not args.quick:
        return evaluate(args)
    from bench_inputs import random_face_table, skip, tiny_model

    try:
        load_encoder({"kind": "dlib"})
    except Exception as exc:  # noqa: BLE001 - any reason dlib cannot load here is a reason to skip
        skip(f"the dlib encoder does not load here ({type(exc).__name__}: {exc})")
    args.num_identities, args.samples, args.real_per_identity, args.steps, args.min_images = 2, 2, 2, 2, 2
    with tempfile.TemporaryDirectory() as tmp:
        args.model = args.model or tiny_model(f"{tmp}/model")
        args.table = args.table or random_face_table(f"{tmp}/faces.parquet", num_people=3, per_person=3, size=16)
        return evaluate(args)


def evaluate(args) -> int:
    model = load_model(args.model)
    if args.clip_sample:
        model.scheduler_config = dict(model.scheduler_config, clip_sample=True)
    size = int(model.info["image_size"])
    data = load_face_data(args.table, model.embedding_dim, args.min_images, with_images=True)
    rows = grid_rows(data, args.num_identities)
    labels = data.labels[rows]
    real_rows = np.concatenate([np.flatnonzero(data.labels == lab)[: args.real_per_identity] for lab in labels])
    real = up(decode_images([data.encoded[i] for i in real_rows], size))  # degraded like the samples
    if args.mode:
        gen = sampler_samples(
            model,
            np.asarray(data.embeddings[rows], np.float32),
            args.samples,
            args.steps,
            args.seed,
            args.mode,
            args.guidance_scale,
        )
    else:
        gen = samples_for(model, torch.from_numpy(data.embeddings[rows]), args.samples, args.steps, args.seed)
    empty = samples_for(model, model.context_encoder.empty_context[None].detach(), args.samples, args.steps, args.seed)
    encoder = load_encoder({"kind": "dlib"})
    real_emb = encoder.embed(real)
    gen_emb = encoder.embed(up(gen))
    empty_emb = encoder.embed(up(empty))
    real_labels = data.labels[real_rows]
    gen_labels = np.repeat(labels, args.samples)
    same, other = similarity_table(gen_emb, real_emb, real_labels, gen_labels)
    # real vs real at the model's resolution (excluding an image with itself)
    sims = real_emb @ real_emb.T
    same_mask = (real_labels[:, None] == real_labels[None, :]) & ~np.eye(len(real_labels), dtype=bool)
    how = f"{args.mode}, w={args.guidance_scale}" if args.mode else "plain conditional DDIM"
    print(
        f"model {args.model} ({size}x{size}); {len(rows)} identities x {args.samples} samples ({how}), "
        f"{len(real_rows)} real images; dlib cosine similarity (centred, normalised)"
    )
    print(f"  samples vs own identity  {same:.3f}   vs other identities {other:.3f}")
    print(f"  c_e samples vs all real  {float((empty_emb @ real_emb.T).mean()):.3f}")
    print(f"  samples of one identity among themselves {_within(gen_emb, gen_labels):.3f}")
    print(
        f"  real vs real, same {float(sims[same_mask].mean()):.3f}   different "
        f"{float(sims[real_labels[:, None] != real_labels[None, :]].mean()):.3f}"
    )
    if args.png:
        tiles = gen.reshape(len(rows), args.samples, size, size, 3)
        grid = tiles.transpose(0, 2, 1, 3, 4).reshape(len(rows) * size, args.samples * size, 3)
        Path(args.png).write_bytes(grid_png(grid, scale=max(1, 64 // size)))
    return 0


def _within(emb: np.ndarray, labels: np.ndarray) -> float:
    sims = emb @ emb.T
    mask = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    return float(sims[mask].mean())


if __name__ == "__main__":
    raise SystemExit(main())
