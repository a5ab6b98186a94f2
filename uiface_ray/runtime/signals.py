"""Keep a job's own SIGTERM/SIGINT handlers when Ray starts in its process.

``ray.init`` replaces a driver's SIGTERM handler twice (measured on Ray 2.60): its Python code sets
one that calls ``sys.exit(15)``, then the core worker installs its C++ failure-signal handler,
which prints a stack dump (``*** SIGTERM received ...``) and aborts the process (exit 134).
``ray job stop`` and batch schedulers send SIGTERM, so neither the job's ``terminated:`` line nor
its exit 143 (:func:`uiface_ray.config.run_job`) ever happened.

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

__all__ = ["handlers_kept_over_ray_init", "restore_job_handlers"]

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)

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
