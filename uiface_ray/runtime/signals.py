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
``ray.init`` (``ray._private.worker._post_init_hooks``, the list Ray's own Tune registry uses) and
puts back the handlers the job had when the hook was registered.  One place covers every stage,
whichever of them starts or connects to Ray.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator

__all__ = ["JobSignals", "Terminated", "handlers_kept_over_ray_init", "restore_job_handlers"]

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

    try:
        from ray._private import worker

        hooks = worker._post_init_hooks
    except (ImportError, AttributeError) as exc:  # another Ray: say so, the job still runs
        log.warning("cannot keep the job's SIGTERM handler over ray.init (%s): SIGTERM may abort the job", exc)
        hooks = []
    hooks.append(restore)
    _kept.append(restore)
    try:
        yield
    finally:
        _kept.remove(restore)
        with contextlib.suppress(ValueError):
            hooks.remove(restore)
