"""The synthesis progress line: shards and images landed (in the store and committed to the journal),
images/s of this run and ETA, from the stage's :class:`uiface_ray.progress.Progress` (images, in
shards; ``pending``: the images of the shards the actors hold, handed out and not landed: the line
shows work under way, and counts only what landed)."""

from __future__ import annotations

import sys

from uiface_ray.progress import Progress

__all__ = ["progress_line", "show_progress"]


def progress_line(progress: Progress) -> str:
    """Counts only what has landed; images inside unfinished shards are shown apart."""
    p = progress
    running = f" (+{p.pending} in unfinished shards)" if p.pending and p.done < p.total else ""
    return (
        f"[synthesize] shards {p.parts_done}/{p.parts_total}  images "
        f"{p.done}/{p.total} landed{running}  {p.rate:.2f} img/s  ETA {p.eta()}"
    )


def show_progress(progress: Progress, force: bool = False, stream=None) -> None:
    """Print the line when one is due (every ``every_s`` seconds; the last one once)."""
    if progress.due(force):
        print(progress_line(progress), file=stream or sys.stderr, flush=True)
