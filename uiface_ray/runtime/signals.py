"""A job's SIGTERM/SIGINT handling: the handler itself, and keeping it when Ray starts in the process.

:class:`JobSignals` is the handler :func:`uiface_ray.runtime.job.run_job` installs: SIGTERM
(``ray job stop``, a batch scheduler) becomes :class:`Terminated`, SIGINT ``KeyboardInterrupt``, so
that ``finally`` blocks clean up as on Ctrl-C.  This module imports no Ray at import time.

``ray.init`` replaces a driver's SIGTERM handler twice (measured on Ray 2.60): its Python code sets
one that calls ``sys.exit(15)``, then the core worker installs its C++ failure-signal handler,
which prints a stack dump (``*** SIGTERM received ...``) and aborts the process (exit 134).
``ray job stop`` and batch schedulers send SIGTERM, so neither the job's ``terminated:`` line nor
its exit 143 (:func:`uiface_ray.runtime.job.run_job`) ever happened.

:func:`handlers_kept_over_ray_init` registers a hook that Ray runs at the end of every
``ray.init`` (:func:`uiface_ray.runtime.ray_compat.post_init_hooks`, the list Ray's own Tune
registry uses) and puts back the handlers the job had when the hook was registered.  One place
covers every stage, whichever of them starts or connects to Ray.

A cluster that goes away under a direct driver (its head's processes killed, its machine gone)
interrupts the job the same way: :func:`interrupt_for_lost_cluster` (called by
:mod:`uiface_ray.runtime.cluster_watch`) records why and raises ``KeyboardInterrupt`` in the main
thread; ``run_job`` then prints that one ``error:`` line (:func:`report_lost_cluster`) and exits
:data:`EXIT_CLUSTER_GONE`.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import signal
import sys
import threading
from typing import Iterator

from uiface_ray.runtime.ray_compat import post_init_hooks

__all__ = [
    "EXIT_CLUSTER_GONE",
    "JobSignals",
    "Terminated",
    "handlers_kept_over_ray_init",
    "interrupt_for_lost_cluster",
    "lost_cluster",
    "report_lost_cluster",
    "restore_job_handlers",
]

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``ray job stop``, a scheduler) turned into an exception, so ``finally`` blocks run:
    temporary folders are removed and actors killed as on Ctrl-C.  A ``KeyboardInterrupt``, since
    Ray's waits turn an interrupt inside them into a new ``KeyboardInterrupt`` (any other exception
    raised there becomes a ``SystemError``): :class:`JobSignals` remembers which signal it was."""


class JobSignals:
    """The job's SIGTERM/SIGINT handler: SIGTERM raises :class:`Terminated`, SIGINT
    ``KeyboardInterrupt``; a repeat of either is ignored from then on, so that it cannot break the
    cleanup the first one started (a scheduler that will not wait sends SIGKILL).  A signal that
    lands inside an ``import`` is sent again 0.2 s later: raised there, it aborted the process
    (exit -6) while ``import torch`` ran."""

    def __init__(self):
        self.received: int | None = None

    def __call__(self, signum, frame):
        import os

        if _importing(frame):  # raised into a half-imported C extension (torch), it aborted the process
            threading.Timer(0.2, os.kill, (os.getpid(), signum)).start()  # ask again once it is done
            return
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        self.received = signum
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _importing(frame) -> bool:
    """Whether ``frame`` runs inside an ``import`` (importlib's frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


_kept: list = []  # the restore functions of the open handlers_kept_over_ray_init blocks, innermost last


def restore_job_handlers() -> None:
    """Put the job's SIGTERM/SIGINT handlers back now.  Ray Train's ``fit()`` sets its own SIGINT
    handler (a graceful abort of its run) and leaves it there after returning: a pipeline stage that
    trained calls this so that Ctrl-C in a later stage is the job's again."""
    if _kept:
        _kept[-1]()


@contextlib.contextmanager
def handlers_kept_over_ray_init() -> Iterator[None]:
    """While open, every ``ray.init`` of this process ends by re-installing the SIGTERM and SIGINT
    handlers in force now (main thread only: elsewhere Python cannot set them)."""
    handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def restore() -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)

    hooks = post_init_hooks()
    if hooks is None:  # another Ray: say so, the job still runs
        log.warning("cannot keep the job's SIGTERM handler over ray.init: SIGTERM may abort the job")
        hooks = []
    hooks.append(restore)
    _kept.append(restore)
    try:
        yield
    finally:
        _kept.remove(restore)
        with contextlib.suppress(ValueError):
            hooks.remove(restore)


# ---------------------------------------------------------------------------------------------
# the cluster went away

EXIT_CLUSTER_GONE = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, rerunning is the remedy

_lost: list[str] = []  # why the cluster is gone (set once)
_reported = threading.Lock()
_said: list[bool] = []


def interrupt_for_lost_cluster(message: str) -> None:
    """Record that the cluster is gone (``message``: the job's one line, without ``error:``) and
    interrupt the main thread (``KeyboardInterrupt``, as Ctrl-C: Ray's waits let only that through),
    so that the job's ``finally`` blocks run and ``run_job`` prints the line."""
    if not _lost:
        _lost.append(message)
        _thread.interrupt_main()


def lost_cluster() -> str | None:
    """Why the cluster is gone, or None while it is not."""
    return _lost[0] if _lost else None


def report_lost_cluster() -> int:
    """Print the lost cluster's ``error:`` line (once per process, whoever calls first: ``run_job``
    or the watch's last resort) and return :data:`EXIT_CLUSTER_GONE`."""
    with _reported:
        if not _said:
            _said.append(True)
            print(f"error: {lost_cluster()}", file=sys.stderr, flush=True)
    return EXIT_CLUSTER_GONE
