"""Reading the stream: one unit's rows from storage, the decode transform, and the local runner's
prefetching iterator (the Ray Data side, :mod:`uiface_ray.runtime.ingest`, calls the same two
functions in its loader tasks, so both runners see the same batches in the same order).

A unit's rows come from the pieces of one span (:mod:`uiface_ray.data.stream`); only the pieces that
hold a wanted row are read, only the image, key and requested columns, and rows whose key is not
kept are dropped before the span's permutation is applied.
"""

from __future__ import annotations

import functools
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from uiface_ray.config import StorageConfig
from uiface_ray.data.images import decode_images
from uiface_ray.data.stream import StreamPlan, StreamSource, Unit
from uiface_ray.storage.row_groups import RowGroupError, read_rows

__all__ = ["DecodeImages", "ReadSpec", "iter_local", "read_unit"]


@dataclass(frozen=True, eq=False)
class ReadSpec:
    """What a loader needs to read any unit of a plan: small and picklable (no per-piece key arrays)."""

    url: str
    files: tuple[str, ...]
    table: np.ndarray  # (P, 4) int64: file, row group, start, stop of each piece
    kept: np.ndarray  # (P,) kept rows of each piece
    classes: np.ndarray  # sorted kept keys
    key_column: str
    image_column: str
    columns: tuple[str, ...]  # extra columns carried into the batch
    storage: StorageConfig | None
    seed: int
    shuffle_window: int
    batch_size: int
    world_size: int

    @staticmethod
    def of(plan: StreamPlan, source: StreamSource, storage: StorageConfig | None, columns=()) -> "ReadSpec":
        table = np.array([(p.file, p.row_group, p.start, p.stop) for p in source.pieces], dtype=np.int64)
        return ReadSpec(
            source.url,
            source.files,
            table.reshape(-1, 4),
            plan.kept,
            source.classes,
            source.key_column,
            source.image_column,
            tuple(columns),
            storage,
            plan.seed,
            plan.shuffle_window,
            plan.batch_size,
            plan.world_size,
        )

    @functools.cached_property
    def plan(self) -> StreamPlan:
        return StreamPlan(self.kept, self.seed, self.shuffle_window, self.batch_size, self.world_size)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "plan"}  # rebuilt where it is used


def _read_piece(spec: ReadSpec, p: int) -> dict[str, np.ndarray]:
    """The kept rows of piece ``p``, in file order."""
    f, g, start, stop = (int(v) for v in spec.table[p])
    url = spec.files[f]
    cols = read_rows(url, g, start, stop, [spec.image_column, spec.key_column, *spec.columns], spec.storage)
    keep = np.isin(cols[spec.key_column], spec.classes)
    if int(keep.sum()) != int(spec.kept[p]):
        raise RowGroupError(
            f"{url}: rows {start}:{stop} of row group {g} hold {int(keep.sum())} rows of the kept identities, "
            f"{int(spec.kept[p])} were planned (the file changed since the run was planned)"
        )
    return {k: v[keep] for k, v in cols.items()}


def read_unit(spec: ReadSpec, unit: Unit) -> dict[str, np.ndarray]:
    """The rows of ``unit`` in stream order: ``image`` (encoded bytes), ``label`` (int64, dense),
    ``row`` (source row ids), ``piece`` (the piece each came from), ``epoch`` and ``spec.columns``."""
    plan = spec.plan
    want = plan.unit_rows(unit)  # (n,) source row ids
    piece_of = np.searchsorted(plan.offsets, want, side="right") - 1  # (n,) the piece holding each
    need = np.unique(piece_of)
    parts = [_read_piece(spec, int(p)) for p in need]
    base = np.zeros(len(plan.kept), dtype=np.int64)  # where each needed piece starts in the concatenation
    base[need] = np.concatenate([[0], np.cumsum([len(part[spec.key_column]) for part in parts])[:-1]])
    at = base[piece_of] + want - plan.offsets[piece_of]  # (n,) index of each wanted row in the concatenation
    cols = {k: np.concatenate([part[k] for part in parts])[at] for k in parts[0]} if parts else {}
    out = {
        "image": cols.get(spec.image_column, np.zeros(0, dtype=object)),
        "label": np.searchsorted(spec.classes, cols[spec.key_column]).astype(np.int64)
        if parts
        else np.zeros(0, dtype=np.int64),
        "row": want.astype(np.int64),
        "piece": piece_of.astype(np.int64),
        "epoch": np.full(len(want), unit.epoch, dtype=np.int64),
    }
    out.update({c: cols[c] for c in spec.columns})
    return out


@dataclass(frozen=True, eq=False)
class DecodeImages:
    """Batch transform: encoded ``image`` -> uint8 (n, size, size, 3) (``data.images.decode_images``;
    ``size`` None keeps the stored size); an undecodable image names its file and row group (``spec``
    given) or its source row id."""

    size: int | None
    spec: ReadSpec | None = None

    def _name(self, piece: int, row: int) -> str:
        if self.spec is None:
            return f"row {row}"
        f, g, start, stop = (int(v) for v in self.spec.table[piece])
        return f"{self.spec.files[f]} row group {g} (rows {start}:{stop})"

    def __call__(self, batch: dict) -> dict:
        names = [self._name(int(p), int(r)) for p, r in zip(batch["piece"], batch["row"])]
        return {**batch, "image": decode_images(list(batch["image"]), self.size, names)}  # (n, s, s, 3)


def _batches(spec: ReadSpec, rank: int, start: int, stop: int, transform: Callable) -> Iterator[dict]:
    """Batches of exactly ``spec.batch_size`` rows over local steps ``start:stop``, transformed."""
    b, pending = spec.batch_size, []
    for unit in spec.plan.units(rank, start, stop):
        pending.append(read_unit(spec, unit))
        rows = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
        n = len(rows["row"]) // b * b
        for i in range(0, n, b):
            yield transform({k: v[i : i + b] for k, v in rows.items()})
        pending = [{k: v[n:] for k, v in rows.items()}] if n < len(rows["row"]) else []


def iter_local(
    spec: ReadSpec, rank: int, start_step: int, stop_step: int, transform: Callable, prefetch_batches: int = 2
) -> Iterator[dict]:
    """The local runner's stream (no Ray): :func:`_batches` run in one background thread at most
    ``prefetch_batches`` batches ahead; an error there is raised here; closing the iterator stops it."""
    q: queue.Queue = queue.Queue(maxsize=prefetch_batches)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        try:
            for batch in _batches(spec, rank, start_step, stop_step, transform):
                if not put(batch):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=fill, name="uiface-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
