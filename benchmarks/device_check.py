"""The prepared GPU check (issue 25, item 4): one table in under 8 minutes on one GPU.

    bash benchmarks/device_check.sh              # on a machine with a CUDA GPU
    bash benchmarks/device_check.sh --quick      # anywhere: small sizes on the CPU (what the test runs)

1. parity: the official preset (uiface mode, 10 DDIM steps) on the tiny release-layout model in
   float32 on the device against the CPU's images for the same seeds and identities.  Tolerance:
   every sample's adaptive t0 equal, max |pixel difference| <= 8 levels and mean <= 1 level
   (uint8): float32 GPU convolutions are not bit-equal to the CPU's, and a difference near the t0
   threshold would move t0 (that would be reported as a failure, not hidden).
2. throughput: the ``uiface`` mode on the full-size release architecture (216M UNet, random
   weights, VQ-f4 latents 3x32x32), 50 DDIM steps, batch 50, in float16 and bfloat16
   (channels_last): images/s and the fraction of the UNet's FLOP bound (FLOPs per evaluation from
   torch's FlopCounterMode x evaluations / seconds / peak; peak: ``--peak-tflops`` if given, else
   the best 4096^3 matmul measured in this run in that dtype).
3. job: ``jobs/synthesize.py`` on an embedded local Ray with ``actors.use_gpu=true`` and
   ``dtype: auto`` (tiny model, 4 identities x 2 images), ending in a complete manifest; the table
   shows the device and dtype the manifest records.
``--quick`` (CPU, for the test): tiny architecture, batch 2, 2 steps, and a fake GPU resource for
the job (its actors fall back to the CPU, :mod:`uiface_ray.runtime.device_probe`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp
import numpy as np  # noqa: E402
import torch  # noqa: E402

from perf import load  # noqa: E402

MAX_DIFF, MEAN_DIFF = 8, 1.0  # uint8 levels


def parity(device: str, tmp: str) -> tuple[str, str, bool]:
    from uiface_ray.model import save_model
    from uiface_ray.release.importer import build_official_model
    from uiface_ray.sample import SamplerConfig, UIFaceSampler

    save_model(build_official_model("tiny", seed=3), f"{tmp}/official-tiny")
    cfg = SamplerConfig.official(num_inference_steps=10)
    emb = np.random.default_rng(0).normal(size=(8, 512)).astype(np.float32)
    seeds = list(range(100, 108))
    out = {}
    for where in ("cpu", device):
        sampler = UIFaceSampler.from_pretrained(f"{tmp}/official-tiny", device=where, dtype="float32", config=cfg)
        out[where] = sampler.sample(emb, seeds)
    a, b = out["cpu"], out[device]
    diff = np.abs(a.images.astype(np.int16) - b.images.astype(np.int16))
    t0_same = bool(np.array_equal(a.t0, b.t0))
    ok = t0_same and diff.max() <= MAX_DIFF and diff.mean() <= MEAN_DIFF
    figure = f"max |dpix| {diff.max()}, mean {diff.mean():.3f}; t0 {'equal' if t0_same else 'DIFFERS'} (8 seeds)"
    return figure, f"t0 equal, max <= {MAX_DIFF}, mean <= {MEAN_DIFF}", ok


def throughput(device: str, quick: bool, peak_tflops: float | None) -> list[tuple[str, str, str, bool]]:
    from bench_official import throughput as run

    args = SimpleNamespace(device=device, batch=2 if quick else 50, quick=quick, tiny=quick, peak_tflops=peak_tflops)
    rows = []
    for r in run(args):
        ok = r["images_per_s"] > 0
        fig = f"{r['images_per_s']:.2f} img/s, {r['fraction_of_peak']:.1%} of the FLOP bound"
        rows.append((f"throughput {r['dtype']}", fig, "runs; figure reported", ok))
    return rows


def job(quick: bool, tmp: str) -> tuple[str, str, bool]:
    from tiny_assets import make_tiny_synthesis_inputs
    from uiface_ray.synth.manifest import read_manifest

    model, identities = make_tiny_synthesis_inputs(f"{tmp}/inputs", num_identities=4)
    out = f"{tmp}/synthetic"
    cmd = [sys.executable, str(ROOT / "jobs" / "synthesize.py"), "--config", str(ROOT / "configs" / "synthesize.yaml")]
    cmd += [f"--model={model}", f"--identities={identities}", f"--output={out}", "--images_per_identity=2"]
    cmd += ["--identities_per_shard=2", "--batch_size=8", "--sampler.num_inference_steps=4", "--actors.use_gpu=true"]
    cmd += ["--actors.dtype=auto", "--actors.max_restarts=0", "--ray.num_cpus=2", "--progress_every_s=1000"]
    cmd += ["--ray.num_gpus=1"] if quick else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    said = [ln for ln in proc.stdout.splitlines() if "precision:" in ln]
    print("\n".join(said) or proc.stdout[-2000:] + proc.stderr[-3000:], flush=True)
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1][:120]}", "manifest", False
    m = read_manifest(out)
    g = m.generation
    ok = m.complete and m.num_rows == 8
    return f"manifest complete, {m.num_rows} images, {g['device']} {g['dtype']}, {seconds:.0f} s", "complete", ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU, tiny sizes, a fake GPU for the job (the test)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense 16-bit peak (default: measured)")
    p.add_argument("--json", default=None, help="also write the table here")
    args = p.parse_args(argv)
    device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    if device == "cuda":
        print(f"# device: {torch.cuda.get_device_name(0)}, sm_{''.join(map(str, torch.cuda.get_device_capability(0)))}")
    else:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        print(f"# device: cpu ({'quick' if args.quick else 'no CUDA device'}); {load()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="uiface-device-check-") as tmp:
        for name, fn in (
            ("parity float32 vs cpu", lambda: [("parity float32 vs cpu", *parity(device, tmp))]),
            ("throughput", lambda: throughput(device, args.quick, args.peak_tflops)),
            ("synthesize use_gpu", lambda: [("synthesize use_gpu", *job(args.quick, tmp))]),
        ):
            start = time.perf_counter()
            try:
                got = fn()
            except Exception as exc:  # a check that crashes is a row that failed, the others still run
                got = [(name, f"{type(exc).__name__}: {str(exc)[:150]}", "runs", False)]
            rows += [(n, fig, tol, bool(ok), round(time.perf_counter() - start, 1)) for n, fig, tol, ok in got]
    width = max(len(r[1]) for r in rows)
    print(f"\n{'check':<24} {'result':<{width}}  {'tolerance':<36} {'ok':<4} {'s':>5}")
    for name, fig, tol, ok, sec in rows:
        print(f"{name:<24} {fig:<{width}}  {tol:<36} {'PASS' if ok else 'FAIL':<4} {sec:>5.0f}")
    print(f"# {load()}")
    if args.json:
        Path(args.json).write_text(
            json.dumps([dict(zip(("check", "result", "tolerance", "ok", "s"), r)) for r in rows])
        )
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
