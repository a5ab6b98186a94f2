"""Progress of every stage: work counted toward a total, this run's rate, the time left, and when a
line is due.  One :class:`Progress` keeps the counts and the clock; each stage formats its own line
from it (what it counts, its unit), always counting only what has landed.

    done         everything counted so far, including what an earlier run did (a resume)
    done_before  what was already done when the clock started: the rate is this run's alone
    parts        the units the work lands in (shards), counted beside it when a stage shows them
    pending      work inside parts not landed yet: shown apart, never counted as done
    rate         (done - done_before) / elapsed, per second
    ETA          (total - done) / rate: 0:00:00 when nothing is left, '?' while the rate is unknown
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Progress", "eta_text", "hms", "progress_text"]


def hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def eta_text(left: float, rate: float) -> str:
    """``h:mm:ss`` until ``left`` more are done at ``rate`` per second; '?' while nothing is known."""
    if left <= 0:
        return "0:00:00"
    return hms(left / rate) if rate > 0 else "?"


def progress_text(done: int, total: int, seconds: float, unit: str = "images") -> str:
    """``'120/4436 images (3.1/s, ETA 0:23:13)'``; the ETA is '?' until something is done."""
    rate = done / seconds if seconds > 0 else 0.0
    return f"{done}/{total} {unit} ({rate:.1f}/s, ETA {eta_text(total - done, rate)})"


@dataclass
class Progress:
    """Work counted toward ``total`` since a start; :meth:`due` rate-limits the lines to one every
    ``every_s`` seconds, and the last one (all done, or forced) is given once."""

    total: int
    done: int = 0
    every_s: float = 5.0
    parts_total: int = 0
    parts_done: int = 0
    pending: int = 0
    clock: Callable[[], float] = time.perf_counter
    start: float | None = None  # default: now
    done_before: int | None = None  # default: ``done`` (what was done before this run)
    _last_line: float = field(default=float("-inf"), repr=False)
    _last_lap: float = field(default=0.0, repr=False)
    _final: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.start = self.clock() if self.start is None else self.start
        self.done_before = self.done if self.done_before is None else self.done_before
        self._last_lap = self.start

    def restart(self) -> float:
        """Start the rate clock now (after the workers are ready), counting from what is done now."""
        self.start = self._last_lap = self.clock()
        self.done_before = self.done
        return self.start

    def add(self, n: int = 1, parts: int = 0) -> None:
        """``n`` more landed, in ``parts`` more parts."""
        self.done += n
        self.parts_done += parts

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    @property
    def rate(self) -> float:
        """Done by this run per second."""
        elapsed = self.elapsed
        return (self.done - self.done_before) / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this run's rate; None while the rate is unknown."""
        left, rate = self.total - self.done, self.rate
        return 0.0 if left <= 0 else (left / rate if rate > 0 else None)

    def eta(self) -> str:
        return eta_text(self.total - self.done, self.rate)

    def text(self, unit: str = "images") -> str:
        """:func:`progress_text` of this run: ``'192/1000 images (31.0/s, ETA 0:00:26)'``."""
        return progress_text(self.done - self.done_before, self.total - self.done_before, self.elapsed, unit)

    def lap(self) -> float:
        """Seconds since the previous lap (or the start)."""
        now = self.clock()
        seconds, self._last_lap = now - self._last_lap, now
        return seconds

    def due(self, force: bool = False) -> bool:
        """Whether a line is due now: ``every_s`` seconds after the previous one, or ``force``d;
        never again once the last one (everything done, or forced) was given."""
        now = self.clock()
        if self._final or not (force or now - self._last_line >= self.every_s):
            return False
        self._last_line = now
        self._final = force or self.done >= self.total
        return True
