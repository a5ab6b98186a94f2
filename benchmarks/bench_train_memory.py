"""Memory, time to the first step and images/s of the training jobs, old data path against new, as N grows.

For each stage (FR: ``jobs/train_fr.py``; diffusion: ``jobs/train_diffusion.py``), each data path
(``new``: this checkout; ``old``: a temporary ``git worktree`` of ``--old-ref``, run with its own
code) and each N, the job runs as a user runs it (its own private embedded Ray, 2 Ray Train workers)
on a face table of N rows built from the shared LFW JPEGs, repeated (labels: the person, repeated
copies are new identities; diffusion also gets random unit embeddings).  Sampled every 0.2 s from
/proc over the job's process tree:

- peak RSS of one training worker (``RayTrainWorker`` processes: the largest), and of the whole job
  (the sum over its processes; shared pages count in each process, as ``ps`` shows them);
- time to the first step: when the run's first checkpoint (at step S/2) appears, less S/2 - 1 step
  times, all from the job's start (Ray's start-up included);
- images/s: S/2 steps x batch x workers over the time between the two checkpoints (S/2 and S; one
  checkpoint written in each interval, in both paths).

The load average is printed beside each row: compare rows of one run only.

    python benchmarks/bench_train_memory.py --sizes 5000,50000,200000 --stages fr
    python benchmarks/bench_train_memory.py --quick        # tiny N, both paths, seconds per job
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "data" / "lfw112" / "images"


def lfw_rows(limit: int | None = None) -> list[tuple[bytes, str]]:
    """(JPEG bytes, person) of the shared LFW faces, sorted by file name."""
    if not LFW.is_dir():
        raise SystemExit(f"error: {LFW} not found (see ../shared/data/README.md)")
    files = sorted(LFW.glob("*/*.jpg"))[:limit]
    return [(f.read_bytes(), f.parent.name) for f in files]


def build_table(path: Path, n: int, embeddings: bool, rows: list[tuple[bytes, str]]) -> None:
    """A face table of ``n`` rows (row groups of 1024, as ``storage.tables`` writes): the LFW faces
    repeated, labelled by their person (the identities, and so the FR head, do not grow with N: what
    grows is the data)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    people = {p: i for i, p in enumerate(sorted({p for _, p in rows}))}
    rng = np.random.default_rng(0)
    writer, at = None, 0
    while at < n:
        chunk = range(at, min(at + 4096, n))
        cols = {
            "image": [rows[i % len(rows)][0] for i in chunk],
            "label": [people[rows[i % len(rows)][1]] for i in chunk],
            "identity": [rows[i % len(rows)][1] for i in chunk],
            "source": [f"lfw:{i % len(rows)}" for i in chunk],
            "width": [112] * len(chunk),
            "height": [112] * len(chunk),
        }
        if embeddings:
            e = rng.standard_normal((len(chunk), 128)).astype("float32")
            cols["embedding"] = list(e / np.linalg.norm(e, axis=1, keepdims=True))
        table = pa.table(cols)
        writer = writer or pq.ParquetWriter(str(path), table.schema, compression="zstd")
        writer.write_table(table, row_group_size=1024)
        at += len(chunk)
    writer.close()


@dataclass
class Job:
    args: list[str]
    checkpoints: Path  # the folder where the job's checkpoints appear
    workers: int
    batch: int  # global images per step


def fr_job(tree: Path, table: Path, scratch: Path, steps: int, workers: int, batch: int) -> Job:
    return Job(
        [
            sys.executable,
            str(tree / "jobs" / "train_fr.py"),
            f"--data={table}",
            f"--out={scratch / 'out'}",
            "--runner=ray_train",
            f"--num_workers={workers}",
            "--depth=18",
            "--width=0.5",
            "--input_size=112",
            f"--batch_size={batch}",
            f"--max_steps={steps}",
            f"--checkpoint_every={steps // 2}",
            f"--ray_storage={scratch / 'ray'}",
            "--run_name=bench",
            f"--ray.num_cpus={workers}",
        ],
        scratch / "ray" / "bench",
        workers,
        batch * workers,
    )


def diffusion_job(tree: Path, table: Path, scratch: Path, steps: int, workers: int, batch: int) -> Job:
    return Job(
        [
            sys.executable,
            str(tree / "jobs" / "train_diffusion.py"),
            f"--config={tree / 'configs' / 'train_diffusion_tiny.yaml'}",
            f"--data.table={table}",
            f"--output={scratch / 'out'}",
            f"--max_steps={steps}",
            f"--checkpoint_every={steps // 2}",
            f"--batch_size={batch * workers}",
            f"--num_workers={workers}",
            "--grid.num_identities=0",
            f"--ray.num_cpus={workers}",
        ],
        scratch / "out" / "checkpoints",
        workers,
        batch * workers,
    )


STAGES = {"fr": (fr_job, False), "diffusion": (diffusion_job, True)}


def _tree(pid: int) -> dict[int, str]:
    """pid -> command line of ``pid`` and every process below it."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            out[p] = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        todo += [c for c, parent in parents.items() if parent == p]
    return out


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """Peak RSS (largest training worker, whole tree) and checkpoint arrival times, every ``every`` s."""

    def __init__(self, pid: int, checkpoints: Path, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.checkpoints, self.every = pid, checkpoints, every
        self.start_t, self.worker_peak, self.job_peak, self.arrivals = time.monotonic(), 0.0, 0.0, {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            procs = _tree(self.pid)
            rss = {p: _rss_mib(p) for p in procs}
            self.job_peak = max(self.job_peak, sum(rss.values()))
            workers = [rss[p] for p, cmd in procs.items() if "RayTrainWorker" in cmd]
            self.worker_peak = max([self.worker_peak, *workers])
            if self.checkpoints.is_dir():
                for name in os.listdir(self.checkpoints):
                    if not name.startswith(".") and (self.checkpoints / name).is_dir():
                        self.arrivals.setdefault(name, time.monotonic() - self.start_t)
            time.sleep(self.every)


def run_job(job: Job, steps: int, cwd: Path, env: dict) -> dict:
    proc = subprocess.Popen(job.args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid, job.checkpoints)
    sampler.start()
    output = proc.communicate()[0]
    sampler.stop.set()
    sampler.join()
    times = sorted(sampler.arrivals.values())
    row = {"rc": proc.returncode, "worker_mib": sampler.worker_peak, "job_mib": sampler.job_peak}
    if proc.returncode != 0 or len(times) < 2:
        row["error"] = output.strip().splitlines()[-1] if output.strip() else f"exit {proc.returncode}"
        return row
    half = steps // 2
    step_s = (times[-1] - times[0]) / half
    row.update(first_step_s=times[0] - (half - 1) * step_s, images_per_s=half * job.batch / (times[-1] - times[0]))
    return row


def ref_tree(ref: str, where: Path, name: str) -> Path:
    """A temporary ``git worktree`` of ``ref`` (removed by main's cleanup)."""
    path = where / f"{name}-tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True, capture_output=True
    )
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,50000,200000", help="table rows, comma-separated")
    ap.add_argument("--stages", default="fr", help="fr,diffusion")
    ap.add_argument("--paths", default="old,new", help="old,new")
    ap.add_argument("--old-ref", default="4c98b94", help="git ref of the old data path")
    ap.add_argument("--new-ref", default=None, help="git ref of the new data path (default: this checkout as it is)")
    ap.add_argument("--steps", type=int, default=20, help="steps per job (checkpoints at steps/2 and steps)")
    ap.add_argument("--batch", type=int, default=8, help="images per step per worker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="N = 200 and 400, 4 steps: the benchmark's own smoke test")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.steps = "200,400", 4
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = lfw_rows(min(max(sizes), 13233))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.pop("RAY_ADDRESS", None)  # a private embedded Ray per job, never a running cluster
    work = Path(tempfile.mkdtemp(prefix="uiface-bench-memory-"))
    print(f"(tables and trees in {work}, removed at the end)", file=sys.stderr, flush=True)
    trees = {}
    try:
        paths = args.paths.split(",")
        trees = {"new": ref_tree(args.new_ref, work, "new") if args.new_ref else ROOT}
        if "old" in paths:
            trees["old"] = ref_tree(args.old_ref, work, "old")
        print(
            f"{'stage':9} {'path':4} {'rows':>7} {'worker MiB':>10} {'job MiB':>8} {'1st step s':>10} "
            f"{'img/s':>7}  load average",
            flush=True,
        )
        for stage in args.stages.split(","):
            make, embeddings = STAGES[stage]
            for n in sizes:
                table = work / f"faces-{stage}-{n}.parquet"
                build_table(table, n, embeddings, rows)
                for path in paths:
                    scratch = work / f"{stage}-{path}-{n}"
                    scratch.mkdir()
                    job = make(trees[path], table, scratch, args.steps, args.workers, args.batch)
                    r = run_job(job, args.steps, scratch, {**env, "PYTHONPATH": str(trees[path])})
                    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                    if "error" in r:
                        print(
                            f"{stage:9} {path:4} {n:7d} {r['worker_mib']:10.0f} {r['job_mib']:8.0f}  failed: "
                            f"{r['error'][:80]}  ({load})",
                            flush=True,
                        )
                    else:
                        print(
                            f"{stage:9} {path:4} {n:7d} {r['worker_mib']:10.0f} {r['job_mib']:8.0f} "
                            f"{r['first_step_s']:10.1f} {r['images_per_s']:7.1f}  {load}",
                            flush=True,
                        )
                    shutil.rmtree(scratch, ignore_errors=True)
                table.unlink()
    finally:
        if "old" in trees:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["old"])], capture_output=True
            )
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
