"""How well the streaming shuffle mixes, against a full permutation (the plan alone: no data is read).

A dataset stored identity after identity (as ``jobs/prepare_faces.py`` and synthesis write it:
``--per-identity`` images each, row groups of ``--piece-rows``) is ordered for one epoch by
:mod:`uiface_ray.data.stream` with several shuffle windows, and by one full permutation (a window of
the whole dataset).  For every two rows of one identity that are neighbours in the file, how far
apart they land in the epoch's stream, in global batches; and how many distinct identities a global
batch holds.

    python benchmarks/stream_shuffle_quality.py --rows 500000 --per-identity 50 --batch 512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uiface_ray.data.stream import StreamPlan  # noqa: E402


def epoch_positions(plan: StreamPlan, epoch: int) -> np.ndarray:
    """pos[row]: where source row ``row`` lands in the epoch's stream."""
    order = plan.epoch(epoch)
    stream = np.concatenate([plan.span_rows(epoch, j) for j in range(len(order.span_starts) - 1)])
    pos = np.empty(len(stream), dtype=np.int64)
    pos[stream] = np.arange(len(stream))
    return pos


def measure(rows: int, per_identity: int, piece_rows: int, window: int, batch: int, seed: int) -> dict:
    kept = np.full(rows // piece_rows, piece_rows, dtype=np.int64)
    if rows % piece_rows:
        kept = np.append(kept, rows % piece_rows)
    plan = StreamPlan(kept, seed, window, batch, 1)
    pos = epoch_positions(plan, 0)
    ident = np.arange(rows) // per_identity
    same = ident[1:] == ident[:-1]  # file neighbours of one identity
    gap = np.abs(pos[1:] - pos[:-1])[same] // batch  # in global batches
    batches = pos // batch
    usable = batches < rows // batch
    per_batch = np.array([len(np.unique(ident[usable][batches[usable] == b])) for b in range(min(200, rows // batch))])
    return {
        "window": window,
        "median": float(np.median(gap)),
        "p10": float(np.percentile(gap, 10)),
        "same_batch": float((gap == 0).mean()),
        "ids_per_batch": float(per_batch.mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--per-identity", type=int, default=50)
    ap.add_argument("--piece-rows", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=512, help="global batch (all workers)")
    ap.add_argument("--windows", default="8192,65536", help="shuffle windows to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="20,000 rows, windows 1,024 and 4,096: seconds")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.windows = 20_000, "1024,4096"
    steps = args.rows // args.batch
    print(
        f"{args.rows} rows stored identity after identity ({args.per_identity} each), pieces of {args.piece_rows}, "
        f"global batch {args.batch} ({steps} steps per epoch)"
    )
    print(f"{'shuffle':>22} {'median gap':>11} {'10% gap':>8} {'same batch':>11} {'identities/batch':>17}")
    windows = [int(w) for w in args.windows.split(",")] + [args.rows]
    for w in windows:
        m = measure(args.rows, args.per_identity, args.piece_rows, w, args.batch, args.seed)
        name = "full permutation" if w >= args.rows else f"window {w}"
        print(
            f"{name:>22} {m['median']:9.0f} b {m['p10']:6.0f} b {100 * m['same_batch']:10.2f}% "
            f"{m['ids_per_batch']:17.1f}"
        )
    print("gap: how many global batches apart two file-neighbour rows of one identity land in the epoch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
