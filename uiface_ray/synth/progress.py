"""The live progress line: shards and images landed (in the store and committed to the journal),
images/s of this run and ETA."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from uiface_ray.progress import hms


@dataclass
class Progress:
    """Counts shards/images done; :meth:`line` formats them, :meth:`maybe_print` rate-limits printing."""

    total_shards: int
    total_images: int
    shards_done: int = 0
    images_done: int = 0
    every_s: float = 5.0
    stream: object = None
    _start: float = field(default_factory=time.perf_counter)
    _images_this_run: int = 0
    in_progress: int = 0  # images of shards not finished yet (reported by the actors per batch)
    _last_print: float = 0.0
    _final_printed: bool = False

    def restart(self) -> float:
        """Start the rate clock now (after the workers are ready); returns the start time."""
        self._start = time.perf_counter()
        return self._start

    def update(self, images: int) -> None:
        self.shards_done += 1
        self.images_done += images
        self._images_this_run += images

    @property
    def images_per_second(self) -> float:
        """Images landed (written and committed) by this run per second: one rate, whatever was
        done before a resume and whatever is still inside unfinished shards."""
        elapsed = time.perf_counter() - self._start
        return self._images_this_run / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """Counts only what has landed; images inside unfinished shards are shown apart."""
        rate = self.images_per_second
        left = self.total_images - self.images_done
        eta = hms(left / rate) if rate > 0 else ("0:00:00" if left <= 0 else "?")
        running = f" (+{self.in_progress} in unfinished shards)" if self.in_progress and left > 0 else ""
        return (
            f"[synthesize] shards {self.shards_done}/{self.total_shards}  images "
            f"{self.images_done}/{self.total_images} landed{running}  {rate:.2f} img/s  ETA {eta}"
        )

    def maybe_print(self, force: bool = False) -> None:
        now = time.perf_counter()
        done = self.shards_done == self.total_shards
        if (force and not self._final_printed) or (not self._final_printed and now - self._last_print >= self.every_s):
            print(self.line(), file=self.stream or sys.stderr, flush=True)
            self._last_print = now
            self._final_printed = done
