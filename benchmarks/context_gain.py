"""Does a generator use its identity context?  Noise-prediction error with the right context, with c_e,
and with another identity's context, on the same images, timesteps and noise.

    python benchmarks/context_gain.py --model <checkpoint>/model --table faces_dlib.parquet

A model that ignores the identity predicts the noise equally well with any context (the three
columns agree); one that uses it predicts best with the right identity. Printed per timestep band.

    python benchmarks/context_gain.py --quick      # a tiny random model and table it builds: seconds
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

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

from uiface_ray.model.bundle import load_model  # noqa: E402
from uiface_ray.train.data import decode_images, load_face_data  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a saved pixel-space model (required without --quick)")
    p.add_argument("--table", default=None, help="face table with embeddings (required without --quick)")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--timesteps", default="50,150,300,500,700,900")
    p.add_argument("--min-images", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny random model and face table, 8 images, 2 timesteps")
    args = p.parse_args(argv)
    if not args.quick and not (args.model and args.table):
        p.error("--model and --table are required (or --quick)")
    torch.set_num_threads(1)
    if args.quick:
        from bench_inputs import random_face_table, tiny_model

        args.images, args.timesteps, args.min_images = 8, "100,700", 2
        with tempfile.TemporaryDirectory() as tmp:
            args.model = args.model or tiny_model(f"{tmp}/model")
            args.table = args.table or random_face_table(f"{tmp}/faces.parquet", size=16)
            return measure(args)
    return measure(args)


@torch.no_grad()
def measure(args) -> int:
    model = load_model(args.model)
    if model.autoencoder is not None:
        raise SystemExit("error: pixel-space models only")
    size = int(model.info["image_size"])
    data = load_face_data(args.table, model.embedding_dim, args.min_images, with_images=True)
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(len(data.labels), min(args.images, len(data.labels)), replace=False)
    x0 = torch.from_numpy(decode_images([data.encoded[i] for i in rows], size)).permute(0, 3, 1, 2).float() / 127.5 - 1
    emb = torch.from_numpy(np.asarray(data.embeddings[rows], np.float32))
    other = emb[torch.from_numpy(rng.permutation(len(rows)))]
    same_label = data.labels[rows] == data.labels[rows][rng.permutation(len(rows))]  # rare; reported
    enc = model.context_encoder
    contexts = {"own identity": enc(emb), "c_e": enc.empty_tokens(len(rows)), "other identity": enc(other)}
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(model.scheduler_config)
    gen = torch.Generator().manual_seed(args.seed)
    print(
        f"{args.model}: {len(rows)} training images at {size}x{size}; eps-MSE per context "
        f"({int(same_label.sum())} 'other' rows happen to share the identity)"
    )
    print("   t   " + "  ".join(f"{k:>14}" for k in contexts) + "   own/c_e")
    for t in [int(v) for v in args.timesteps.split(",")]:
        noise = torch.randn(x0.shape, generator=gen)
        ts = torch.full((len(rows),), t, dtype=torch.long)
        xt = sched.add_noise(x0, noise, ts)
        mse = {}
        for name, tokens in contexts.items():
            out = torch.cat(
                [
                    model.unet(xt[s : s + 64], ts[s : s + 64], encoder_hidden_states=tokens[s : s + 64]).sample
                    for s in range(0, len(rows), 64)
                ]
            )
            mse[name] = float(((out - noise) ** 2).mean())
        print(
            f"{t:>4}   " + "  ".join(f"{v:>14.5f}" for v in mse.values()) + f"   {mse['own identity'] / mse['c_e']:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
