"""What every job's ``main()`` runs: parse its config, run its body, and end the way a user can read.

Bad input (any :class:`uiface_ray.errors.InputError`, also one raised inside a Ray task or actor) is
one ``error: ...`` line and exit 2; Ctrl-C or SIGTERM is one ``interrupted:``/``terminated:`` line
and exit 130 or 143 after cleaning up (:mod:`uiface_ray.runtime.signals`); a cluster that went away
under the job (:mod:`uiface_ray.runtime.cluster_watch`) is one ``error:`` line and exit 75; bugs
keep their traceback.
Imports no Ray at import time, so that ``--help`` stays light.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any, Callable, Sequence, TypeVar

from uiface_ray.cli import parse_args
from uiface_ray.config import Config, ConfigError
from uiface_ray.errors import input_error_of
from uiface_ray.runtime.signals import (
    JobSignals,
    Terminated,
    handlers_kept_over_ray_init,
    lost_cluster,
    report_lost_cluster,
)

__all__ = ["run_job", "torch_cache_outside_tmp"]

C = TypeVar("C", bound=Config)


def torch_cache_outside_tmp() -> None:
    """Point torch's compile cache at the user's cache folder unless the user chose one.

    torch creates ``$TMPDIR/torchinductor_<user>`` as soon as diffusers imports ``torch._dynamo``
    (the folder of its on-disk compile cache), and nothing ever removes it; a job must leave nothing
    in /tmp. The variable is inherited by the processes of an embedded Ray."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache, "uiface-ray", "torchinductor")


def run_job(
    cls: type[C], body: Callable[[C], Any], argv: Sequence[str] | None = None, description: str | None = None
) -> int:
    """Parse the config and run ``body``.  Bad input (a :class:`uiface_ray.errors.InputError`: config,
    file, checkpoint, table, storage) prints one ``error: ...`` line and returns 2 (with the
    traceback too under ``--debug``); Ctrl-C or SIGTERM prints one ``interrupted:``/``terminated:``
    line and returns 130 or 143 after cleaning up; a cluster gone mid-run prints one ``error:`` line
    and returns 75; bugs keep their traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    previous, handler = {}, JobSignals()
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (a test calling main() from a thread)
        pass
    try:
        cfg = parse_args(cls, argv, description)
        torch_cache_outside_tmp()
        # the job's handlers kept over any ray.init inside the body (Ray puts its own SIGTERM
        # handler in, which aborts with exit 134)
        with handlers_kept_over_ray_init():
            body(cfg)
    except KeyboardInterrupt as exc:
        if lost_cluster() is not None:
            return report_lost_cluster()
        if isinstance(exc, Terminated) or handler.received == signal.SIGTERM:
            print("terminated: stopped; rerun the same command to resume", file=sys.stderr, flush=True)
            return 143
        print("interrupted: stopped; rerun the same command to resume", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - bad input is one line; anything else re-raised
        if lost_cluster() is not None:  # whatever failed, it failed because the cluster went away
            return report_lost_cluster()
        user = input_error_of(exc)
        if user is None:
            raise
        if debug:
            traceback.print_exception(exc)
        text = str(user) if isinstance(user, ConfigError) else "; ".join(str(user).strip().splitlines())
        print(f"error: {text}", file=sys.stderr)
        return 2
    finally:
        for sig, old in previous.items():
            if old is not None:
                signal.signal(sig, old)
    return 0
