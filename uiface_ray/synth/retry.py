"""Storage writes retried as writes: a short outage costs a wait, not a regenerated shard.

``write_with_retries`` calls ``write()`` up to ``attempts`` times, sleeping ``backoff_s``,
``2 * backoff_s``, ... between tries; a :class:`uiface_ray.storage.StorageError` that survives
every try becomes :class:`StoreUnavailableError`, one line saying what failed and what to do.
Only storage errors are retried: anything else is a bug and goes up at once.  A full disk
(:class:`uiface_ray.storage.StorageFullError`) is not retried either: it goes up at once with its
own line ("no space left ...", naming the path), not as an unreachable store.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from uiface_ray import storage

__all__ = ["StoreUnavailableError", "write_with_retries"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreUnavailableError(storage.StorageError):
    """The store stayed unreachable through every retry; the message says what to do."""


def write_with_retries(
    write: Callable[[], T], url: str, *, attempts: int, backoff_s: float, sleep: Callable[[float], None] = time.sleep
) -> T:
    """``write()`` with retries on storage errors; raises :class:`StoreUnavailableError` at the end."""
    waited = 0.0
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except storage.StorageFullError:
            raise
        except storage.StorageError as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if attempt == attempts:
                raise StoreUnavailableError(
                    f"storage unreachable: {last} (tried {attempts} times over {waited:.0f} s). Work already "
                    "written is safe: check the endpoint, credentials and network, then rerun the same "
                    "command to resume"
                ) from None
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning("write to %s failed (%s); retry %d/%d in %.0f s", url, last, attempt, attempts - 1, delay)
            sleep(delay)
            waited += delay
    raise AssertionError("unreachable")  # attempts >= 1
