"""Driver-side cost of synthesis at scale: commit, resume, export, identity filtering (issue 13).

    python benchmarks/bench_scale.py --job 1000 10000 --driver 1000 10000 100000 --filter 100000

Every code path is the real one; only the arithmetic is small: a near-free generator (an 8x8
UNet, 1 DDIM step), 1 image per identity, 16 identities per shard.  Each size runs on local disk
and on a loopback S3 server (moto, started and stopped here).  Three parts:

* ``--job N``: the real synthesis job (Ray, 2 sampler actors) for N identities, then a resume with
  nothing to do, a resume with 1% of the shards deleted (rerun: only those are regenerated), and
  an export (image folders + RecordIO + card) through the Ray export (2 worker actors), in a
  driver subprocess connected to the same Ray: its time, the stitch's time and its peak RSS.
* ``--driver N``: the driver alone, at sizes the actors of this 2-core machine cannot reach in a
  benchmark's time: N/16 shards written by this process (the real encoder and shard writer), each
  committed through the real journal (``ManifestWriter``), then resume planning (one listing,
  the manifest, the journal) with nothing to do and with 1% of the shards deleted; then, for N up
  to ``--export-max``, an export of that dataset through the Ray export (``--driver-formats``:
  RecordIO + card by default, since a folder export is one PUT per image).
* ``--filter N``: the blockwise greedy identity filter keeping N of N candidates (128-d random
  unit vectors, threshold 0.5: the similarity work of make_identities without the generator),
  with time and memory per block and an exact check of the kept set's maximum similarity.

Printed: one table row per (part, store, size).  Driver memory is this process's peak RSS.  S3 requests
are every request the loopback server answered (its access log), from the driver, the actors and the
export workers together: per shard while the dataset is written and committed, in all for a resume
with nothing to do (model, identity table, manifest, journal, listing), and per shard for the export.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from uiface_ray.runtime.job import torch_cache_outside_tmp  # noqa: E402

torch_cache_outside_tmp()  # before diffusers' import of torch._dynamo: its compile cache is not made in /tmp

IMAGES, PER_SHARD = 1, 16


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmHWM")).split()[1]) / 1024


class S3Requests:
    """Requests the loopback S3 server answered, from every process (driver, actors, export workers),
    counted from its access log (one line per request)."""

    PATTERN = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|HEAD|POST|DELETE) ')

    def __init__(self, log: Path | None):
        self.log = log

    def total(self) -> int | None:
        if self.log is None:
            return None
        time.sleep(0.2)  # let the server finish writing the last lines
        return len(self.PATTERN.findall(self.log.read_text(errors="replace")))


def start_s3(log: Path) -> tuple[subprocess.Popen, str]:
    exe = str(Path(sys.executable).with_name("moto_server"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=sink, start_new_session=True
        )
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
        }
    )
    return proc, endpoint


def new_bucket(endpoint: str) -> str:
    import boto3
    import fsspec

    name = f"bench-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    fsspec.filesystem("s3").invalidate_cache()
    return f"s3://{name}"


def make_inputs(directory: Path, n: int) -> tuple[str, str]:
    """A near-free generator and an identity table of n random identities."""
    from uiface_ray.identities.filtering import FilterResult, FilterSummary
    from uiface_ray.identities.table import write_identity_table
    from uiface_ray.model import ModelConfig, build_model, save_model

    dim = 16
    cfg = ModelConfig.tiny(
        image_size=8,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        attention_head_dim=4,
        cross_attention_dim=8,
        num_tokens=4,
        embedding_dim=dim,
        context_hidden_dim=16,
    )
    model = str(directory / "model")
    if not Path(model).exists():
        save_model(build_model(cfg, {"kind": "bench", "dim": dim}, seed=0), model)
    table = str(directory / f"ids-{n}.parquet")
    if not Path(table).exists():
        emb = np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        # random identities as they are (the filter's O(n^2) pass is measured by --filter instead)
        summary = FilterSummary(n, n, 0, 0, n, 1.0, None, 0)
        result = FilterResult(emb, np.arange(n, dtype=np.int64), np.zeros(n, np.float32), summary)
        write_identity_table(table, result, {"kind": "bench", "dim": dim})
    return model, table


def synth_config(model: str, table: str, out: str):
    from uiface_ray.synth.config import SynthesisConfig

    return SynthesisConfig.model_validate(
        dict(
            model=model,
            identities=table,
            output=out,
            images_per_identity=IMAGES,
            identities_per_shard=PER_SHARD,
            batch_size=PER_SHARD,
            progress_every_s=60.0,
            sampler={"mode": "uiface", "num_inference_steps": 1},
            actors={"num_actors": 2, "use_gpu": False, "tasks_per_actor": 4},
        )
    )


def _delete_one_percent(out: str, n_shards: int) -> int:
    from uiface_ray import storage
    from uiface_ray.synth.plan import shard_name

    victims = list(range(0, n_shards, 100))
    for i in victims:
        storage.remove(storage.join(out, "shards", shard_name(i)))
    return len(victims)


def _plan(cfg):
    """The job's plan as its driver makes it: its actors' precision decided the way run_synthesis
    decides it (dtype ``auto``: what the CPU runs fastest), so the plan resumes the job's dataset."""
    from uiface_ray.runtime.device_probe import actor_precision
    from uiface_ray.synth.synthesis_plan import plan_synthesis

    precision = actor_precision(cfg.actors.dtype, use_gpu=False)
    return plan_synthesis(cfg, precision.dtype_name, precision.device)


def _time_resume(cfg) -> float:
    plan = _plan(cfg)
    start = time.perf_counter()
    plan.resume()
    return time.perf_counter() - start


def _delta(after: int | None, before: int | None, per: int = 1) -> float | None:
    return None if after is None else (after - before) / per


def bench_job(n: int, store: str, work: Path, req: S3Requests) -> dict:
    from uiface_ray.runtime.synthesis import run_synthesis

    model, table = make_inputs(work, n)
    out = store + f"/job-{n}"
    cfg = synth_config(model, table, out)
    r0 = req.total()
    first = run_synthesis(cfg)
    shards = first.num_shards
    r1 = req.total()
    idle = _time_resume(cfg)
    r2 = req.total()
    deleted = _delete_one_percent(out, shards)
    missing = _time_resume(cfg)
    start = time.perf_counter()
    rerun = run_synthesis(cfg)
    rerun_s = time.perf_counter() - start
    assert rerun.shards_run == deleted, (rerun.shards_run, deleted)
    r3 = req.total()
    exported = bench_export(out, store + f"/export-{n}")
    r4 = req.total()
    return {
        "shards": shards,
        "images": first.num_rows,
        "job_s": first.seconds,
        "driver_ms_per_shard": None,
        "commit_bytes": first.commit_bytes,
        "commit_writes": first.commit_writes,
        "resume_idle_s": idle,
        "resume_1pct_plan_s": missing,
        "rerun_1pct_s": rerun_s,
        "run_requests_per_shard": _delta(r1, r0, shards),
        "resume_idle_requests": _delta(r2, r1),
        "export_requests_per_shard": _delta(r4, r3, shards),
        **exported,
        "driver_rss_mb": _rss_mb(),
    }


def bench_export(dataset: str, out: str, formats: tuple[str, ...] = ("folders", "recordio", "card")) -> dict:
    """The Ray export in a driver subprocess connected to this process's Ray (2 worker actors);
    peak RSS from its VmHWM (reset at exec; ru_maxrss keeps the forking parent's peak)."""
    import json

    import ray

    code = (
        "import json, sys; sys.path.insert(0, %r)\n"
        "from uiface_ray.config import RayConfig\nfrom uiface_ray.export.config import ExportConfig\n"
        "from uiface_ray.runtime.export import run_export_on_ray\nfrom uiface_ray.runtime.session import ray_session\n"
        "with ray_session(RayConfig(address=%r)):\n"
        "    r = run_export_on_ray(ExportConfig(dataset=%r, output=%r, formats=%r, workers={'num_workers': 2},"
        " progress_every_s=600))\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(json.dumps({'s': r.seconds, 'stitch_s': r.finish_seconds, 'mb': int(hwm) / 1024}))"
        % (str(ROOT), ray.get_runtime_context().gcs_address, dataset, out, tuple(formats))
    )
    # the embedded Ray listens on loopback only: Ray's "clusters off" switch keeps the driver's address
    # 127.0.0.1 (else Ray swaps in the machine's address, where nothing listens); the session's token
    # path is inherited from this process's environment
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"export failed: {proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"export_s": r["s"], "export_stitch_s": r["stitch_s"], "export_peak_mb": r["mb"]}


def _write_shard(prep, spec, ids: np.ndarray, image: bytes):
    """Write the planned shard ``spec`` (its real rows, every image ``image``) as an actor would: one
    PUT, then a HEAD for its size and version; returns its record for the manifest."""
    from uiface_ray import storage
    from uiface_ray.synth.manifest import ShardRecord
    from uiface_ray.synth.resume import expected_rows
    from uiface_ray.synth.shard import ShardRows, encode_shard, sha256, shard_metadata

    idn, idx = expected_rows(spec, ids)
    rows = ShardRows(
        idn,
        idx,
        idn,
        [image] * len(idn),
        np.zeros(len(idn)),
        "uiface",
        prep.model_hash,
        shard_metadata("png", 8, 8, "uiface", "x"),
    )
    data = encode_shard(rows)
    url = storage.join(prep.cfg.output, "shards", spec.name)
    storage.write_bytes_atomic(url, data)
    info = storage.file_info(url)
    return ShardRecord(spec.name, spec.index, len(idn), sha256(data), info.size, info.version)


def bench_driver(n: int, store: str, work: Path, export_formats: tuple[str, ...] | None, req: S3Requests) -> dict:
    """N/16 shards written here and committed through the journal; then resume planning."""
    from uiface_ray.identities.table import read_identity_table
    from uiface_ray.synth.shard import encode_image

    model, table = make_inputs(work, n)
    out = store + f"/driver-{n}"
    cfg = synth_config(model, table, out)
    prep = _plan(cfg)
    state = prep.resume()
    ids = read_identity_table(table).identity_ids
    writer = prep.writer(state)
    writer.begin()
    image = encode_image(np.zeros((8, 8, 3), np.uint8))
    commit_s = 0.0
    r0 = req.total()
    for spec in state.todo:
        record = _write_shard(prep, spec, ids, image)
        start = time.perf_counter()
        writer.add(record)
        commit_s += time.perf_counter() - start
    start = time.perf_counter()
    writer.finish()
    final_s = time.perf_counter() - start
    shards = len(prep.shards)
    r1 = req.total()
    idle = _time_resume(cfg)
    r2 = req.total()
    _delete_one_percent(out, shards)
    missing = _time_resume(cfg)
    rss = _rss_mb()
    exported = {}
    if export_formats:
        state = prep.resume()  # put the deleted shards back: an export needs the whole dataset
        fix = prep.writer(state)
        for spec in state.todo:
            fix.add(_write_shard(prep, spec, ids, image))
        fix.finish()
        r3 = req.total()
        exported = bench_export(out, store + f"/driver-export-{n}", export_formats)
        exported["export_requests_per_shard"] = _delta(req.total(), r3, shards)
    return {
        "shards": shards,
        "images": shards * PER_SHARD * IMAGES,
        "job_s": None,
        "driver_ms_per_shard": 1000 * commit_s / shards,
        "final_manifest_s": final_s,
        "commit_bytes": writer.bytes_written,
        "commit_writes": writer.writes,
        "resume_idle_s": idle,
        "resume_1pct_plan_s": missing,
        "driver_rss_mb": rss,
        "run_requests_per_shard": _delta(r1, r0, shards),
        "resume_idle_requests": _delta(r2, r1),
        **exported,
    }


def bench_filter(n: int) -> dict:
    from uiface_ray.identities.filtering import GreedyIdentityFilter, max_similarity

    dim, block = 128, 1024
    rng = np.random.default_rng(0)
    filt = GreedyIdentityFilter(n, dim, similarity_threshold=0.5)
    per_block, start = [], time.perf_counter()
    seed = 0
    while not filt.done:
        emb = rng.standard_normal((block, dim)).astype(np.float32)
        t = time.perf_counter()
        filt.offer(emb, np.arange(seed, seed + block))
        per_block.append(time.perf_counter() - t)
        seed += block
    result = filt.result()
    worst = float(max_similarity(result.embeddings[:2000], result.embeddings).max())  # itself: 1.0
    exact = float(np.max(result.nn_similarity))
    return {
        "kept": filt.kept,
        "drawn": filt.drawn,
        "seconds": time.perf_counter() - start,
        "first_block_s": per_block[0],
        "last_block_s": per_block[-1],
        "max_nn_similarity": exact,
        "self_check": worst,
        "rss_mb": _rss_mb(),
        "block_mb": block * min(filt.kept, 4096) * 4 / 2**20,
    }


def _row(part: str, store: str, n: int, r: dict) -> str:
    def f(key, fmt="{:.2f}"):
        v = r.get(key)
        return "-" if v is None else fmt.format(v)

    return (
        f"| {part} | {store} | {n} | {r['shards']} | {f('job_s', '{:.0f}')} | {f('driver_ms_per_shard', '{:.2f}')} "
        f"| {r['commit_bytes'] / 1024:.0f} | {r['commit_writes']} | {r['commit_bytes'] / r['shards']:.0f} "
        f"| {f('resume_idle_s')} | {f('resume_1pct_plan_s')} | {f('export_s', '{:.1f}')} "
        f"| {f('export_stitch_s', '{:.1f}')} | {f('export_peak_mb', '{:.0f}')} | {r['driver_rss_mb']:.0f} "
        f"| {f('run_requests_per_shard', '{:.2f}')} | {f('resume_idle_requests', '{:.0f}')} "
        f"| {f('export_requests_per_shard', '{:.2f}')} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", type=int, nargs="*", default=[1000])
    parser.add_argument("--driver", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--filter", type=int, nargs="*", default=[])
    parser.add_argument("--stores", nargs="*", default=["local", "s3"], choices=["local", "s3"])
    parser.add_argument("--export-max", type=int, default=10000, help="export the --driver datasets up to this size")
    parser.add_argument(
        "--driver-formats",
        nargs="*",
        default=["recordio", "card"],
        choices=["folders", "recordio", "card"],
        help="formats of the --driver exports",
    )
    parser.add_argument("--quick", action="store_true", help="--job 32 --driver 64 --filter 1024: seconds per part")
    args = parser.parse_args()
    if args.quick:
        args.job, args.driver, args.filter = [32], [64], [1024]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import logging

    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="uiface-bench-scale-"))
    server = None
    rows = []
    try:
        if "s3" in args.stores:
            server, endpoint = start_s3(work / "s3-access.log")
        print(
            "| part | store | identities | shards | job s | driver ms/shard | commit KB | commit writes "
            "| commit B/shard | resume idle s | resume 1% plan s | export s | export stitch+card s "
            "| export driver peak MB | driver RSS MB | S3 requests/shard (write + commit) | S3 requests, resume idle "
            "| S3 requests/shard, export |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        from uiface_ray.config import RayConfig
        from uiface_ray.runtime.session import ray_session

        with ray_session(RayConfig(address="local", num_cpus=2)):  # private: never a cluster running here
            for store in args.stores:
                base = new_bucket(endpoint) if store == "s3" else str(work / "out")
                req = S3Requests(work / "s3-access.log" if store == "s3" else None)
                for n in args.driver:
                    formats = tuple(args.driver_formats) if n <= args.export_max else None
                    rows.append(_row("driver", store, n, bench_driver(n, base, work, formats, req)))
                    print(rows[-1], flush=True)
                for n in args.job:
                    rows.append(_row("job", store, n, bench_job(n, base, work, req)))
                    print(rows[-1], flush=True)
        for n in args.filter:
            r = bench_filter(n)
            print(
                f"filter {n}: kept {r['kept']} of {r['drawn']} in {r['seconds']:.1f} s (block of 1024: first "
                f"{r['first_block_s'] * 1000:.1f} ms, last {r['last_block_s'] * 1000:.1f} ms, similarity chunk "
                f"{r['block_mb']:.0f} MB); max similarity "
                f"between kept identities {r['max_nn_similarity']:.3f} (< 0.5); peak RSS {r['rss_mb']:.0f} MB",
                flush=True,
            )
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
