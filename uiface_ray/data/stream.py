"""The streaming plan: which rows each training worker sees at each step (numpy only, no I/O).

A dataset is a list of *pieces* (a run of at most ``piece_rows`` consecutive rows of one row group
of one Parquet file).  For epoch ``e`` (mosaicml-streaming's recipe, at our scale):

  1. the pieces are permuted by a generator seeded ``(seed, e)``;
  2. consecutive pieces form *spans* of at least ``shuffle_window`` rows (the last may be smaller);
  3. the rows of span ``j`` are permuted by a generator seeded ``(seed, e, j)``.

That is the epoch's stream of ``N`` rows: a pure function of (seed, epoch), whatever the number of
workers.  Rank ``r`` of ``W`` takes the contiguous share ``[r*L, r*L + spe*b)`` with ``L = N // W``
and ``spe = L // b`` (its steps per epoch, ``b`` its batch size), so it reads only its own spans
plus at most two it shares with its neighbours; global batch ``s`` is the union of every rank's
local batch ``s``.  The rank's stream runs through epochs 0, 1, 2, ...; local step ``k`` starts
at epoch ``k // spe``, position ``r*L + (k % spe) * b``: a resume at any step is O(1) and reads
nothing that came before.

A *source row id* numbers the kept rows of the dataset in file order (piece ``p``'s kept rows are
``offset[p] .. offset[p] + kept[p] - 1``): the ids :meth:`StreamPlan.rows` and the loaders agree on.
Shuffle quality: docs/SCALE.md (training), measured by ``benchmarks/stream_shuffle_quality.py``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

__all__ = ["EpochOrder", "Piece", "StreamPlan", "StreamSource", "Unit", "make_plan"]

PIECE_TAG, SPAN_TAG = 0x91ECE5, 0x59A7


@dataclass(frozen=True, eq=False)
class Piece:
    file: int  # index into StreamSource.files
    row_group: int
    start: int  # first row inside the row group
    stop: int  # one past the last
    keys: np.ndarray  # sorted unique key values in start:stop
    counts: np.ndarray  # rows of each key


@dataclass(frozen=True, eq=False)
class StreamSource:
    """Every piece of a dataset with the keys it holds; rows whose key is in ``classes`` are kept and
    labelled by the key's index in ``classes``."""

    url: str
    files: tuple[str, ...]
    pieces: tuple[Piece, ...]
    key_column: str
    classes: np.ndarray  # sorted kept keys
    image_column: str = "image"

    @functools.cached_property
    def kept(self) -> np.ndarray:
        """(P,) rows of each piece whose key is in ``classes``."""
        return np.array(
            [int(p.counts[np.isin(p.keys, self.classes)].sum()) for p in self.pieces], dtype=np.int64
        ).reshape(-1)

    @property
    def num_rows(self) -> int:
        return int(self.kept.sum())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def key_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, rows of each) over the whole source, every key (kept or not)."""
        if not self.pieces:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        keys = np.concatenate([p.keys for p in self.pieces])
        counts = np.concatenate([p.counts for p in self.pieces])
        uniq, inverse = np.unique(keys, return_inverse=True)
        return uniq, np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)

    def restrict(self, classes: np.ndarray) -> "StreamSource":
        """The same pieces with only the rows of ``classes`` kept (sorted, made unique)."""
        return StreamSource(self.url, self.files, self.pieces, self.key_column, np.unique(classes), self.image_column)


@dataclass(frozen=True)
class Unit:
    """What one loader task reads: rows ``lo:hi`` of span ``span``'s permutation in epoch ``epoch``."""

    epoch: int
    span: int
    lo: int
    hi: int

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "span": self.span, "lo": self.lo, "hi": self.hi}

    @staticmethod
    def from_dict(d: dict) -> "Unit":
        return Unit(int(d["epoch"]), int(d["span"]), int(d["lo"]), int(d["hi"]))


@dataclass(frozen=True, eq=False)
class EpochOrder:
    pieces: np.ndarray  # (P',) piece indices in stream order (pieces with kept rows only)
    span_pieces: np.ndarray  # (S+1,) span j = pieces[span_pieces[j]:span_pieces[j+1]]
    span_starts: np.ndarray  # (S+1,) epoch position of each span's first row; the last is N

    def span_of(self, position: int) -> int:
        return int(np.searchsorted(self.span_starts, position, side="right")) - 1

    def span(self, j: int) -> np.ndarray:
        return self.pieces[self.span_pieces[j] : self.span_pieces[j + 1]]


def epoch_order(kept: np.ndarray, seed: int, epoch: int, window: int) -> EpochOrder:
    """Steps 1 and 2 of the module docstring."""
    order = np.random.default_rng([seed, epoch, PIECE_TAG]).permutation(len(kept))
    order = order[kept[order] > 0]
    sizes = kept[order]
    span_pieces, starts, acc = [0], [0], 0
    for i, size in enumerate(sizes.tolist()):
        acc += size
        if acc - starts[-1] >= window or i == len(sizes) - 1:
            span_pieces.append(i + 1)
            starts.append(acc)
    return EpochOrder(order, np.array(span_pieces, dtype=np.int64), np.array(starts, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class StreamPlan:
    kept: np.ndarray  # (P,) kept rows of each piece
    seed: int
    shuffle_window: int
    batch_size: int  # the local batch size b
    world_size: int  # W
    offsets: np.ndarray = field(init=False)  # (P,) source row id of each piece's first kept row
    _epochs: dict = field(init=False, repr=False)  # the last epochs' orders

    def __post_init__(self) -> None:
        object.__setattr__(self, "offsets", np.concatenate([[0], np.cumsum(self.kept)[:-1]]).astype(np.int64))
        object.__setattr__(self, "_epochs", {})
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{self.num_rows} rows give {self.num_rows // self.world_size} per worker, fewer than "
                f"batch_size={self.batch_size}; lower batch_size or num_workers"
            )

    @property
    def num_rows(self) -> int:
        return int(self.kept.sum())

    @property
    def share(self) -> int:
        """L: epoch positions per rank."""
        return self.num_rows // self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.share // self.batch_size

    def epoch(self, e: int) -> EpochOrder:
        """The order of epoch ``e`` (the last two are kept)."""
        if e not in self._epochs:
            if len(self._epochs) >= 2:
                self._epochs.pop(next(iter(self._epochs)))
            self._epochs[e] = epoch_order(self.kept, self.seed, e, self.shuffle_window)
        return self._epochs[e]

    def span_rows(self, e: int, j: int) -> np.ndarray:
        """Source row ids of span ``j`` of epoch ``e`` in stream order (step 3)."""
        ids = np.concatenate([self.offsets[p] + np.arange(self.kept[p]) for p in self.epoch(e).span(j)])
        return ids[np.random.default_rng([self.seed, e, j, SPAN_TAG]).permutation(len(ids))]

    def position(self, rank: int, step: int) -> tuple[int, int]:
        """(epoch, epoch position of the first row) of local step ``step`` of ``rank``: O(1)."""
        e, k = divmod(step, self.steps_per_epoch)
        return e, rank * self.share + k * self.batch_size

    def units(self, rank: int, start_step: int, stop_step: int) -> Iterator[Unit]:
        """The units that cover local steps ``start_step:stop_step`` of ``rank`` exactly, in order."""
        step = start_step
        while step < stop_step:
            e, a = self.position(rank, step)
            last = min(stop_step, (e + 1) * self.steps_per_epoch)  # this epoch's part
            b = a + (last - step) * self.batch_size
            order = self.epoch(e)
            j = order.span_of(a)
            while j < len(order.span_starts) - 1 and order.span_starts[j] < b:
                s0, s1 = int(order.span_starts[j]), int(order.span_starts[j + 1])
                yield Unit(e, j, max(a, s0) - s0, min(b, s1) - s0)
                j += 1
            step = last

    def unit_rows(self, unit: Unit) -> np.ndarray:
        return self.span_rows(unit.epoch, unit.span)[unit.lo : unit.hi]

    def rows(self, rank: int, start_step: int, stop_step: int) -> np.ndarray:
        """Source row ids ``rank`` sees over local steps ``start_step:stop_step``, in order (reads nothing)."""
        parts = [self.unit_rows(u) for u in self.units(rank, start_step, stop_step)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def make_plan(source: StreamSource, seed: int, shuffle_window: int, batch_size: int, world_size: int) -> StreamPlan:
    return StreamPlan(source.kept, seed, shuffle_window, batch_size, world_size)
