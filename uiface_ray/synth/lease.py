"""A lease on an output: one job at a time writes a dataset.

``<out>/.lease.json`` names the job that holds the output (a random token, host, pid, start time)
and when the lease expires.  The holder refreshes it every ``ttl_s / 3`` seconds from a
background thread and removes it when the job ends.  Another job finds a live lease and is
refused with a message naming the holder; a lease is free when it has expired (its holder died
on another machine) or its holder is a process of this host that no longer runs (a driver
killed here and rerun at once is not kept waiting).

Two jobs that start within ``settle_s`` of each other both write; each reads the lease back
after ``settle_s`` and only the one whose token is there goes on.  A holder that finds another
token at a refresh stops the job (``check()`` raises) before it writes another record.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Callable

from uiface_ray import jsonfile, storage
from uiface_ray.errors import InputError

__all__ = ["LEASE_NAME", "LeaseRecord", "OutputBusyError", "OutputLease"]

log = logging.getLogger(__name__)

LEASE_NAME = ".lease.json"


class OutputBusyError(InputError):
    """Another job holds the output; the message names it."""


@dataclass(frozen=True)
class LeaseRecord:
    token: str
    host: str
    pid: int
    started: float  # epoch seconds
    expires: float  # epoch seconds

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"pid {self.pid} on {self.host}, started {started}"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLease:
    """Acquire with :meth:`acquire` (or ``with``); :meth:`check` raises if another job took over."""

    def __init__(
        self,
        out_url: str,
        storage_cfg=None,
        ttl_s: float = 120.0,
        settle_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        self.url = storage.join(out_url, LEASE_NAME)
        self.out_url = out_url
        self.storage_cfg = storage_cfg
        self.ttl_s = ttl_s
        self.settle_s = settle_s
        self.clock = clock
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.started = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None

    # -- the record -------------------------------------------------------------------------

    def read(self) -> LeaseRecord | None:
        if not storage.exists(self.url, self.storage_cfg):
            return None
        try:
            return LeaseRecord(**jsonfile.loads(storage.read_bytes(self.url, self.storage_cfg)))
        except (ValueError, TypeError) as exc:
            log.warning("ignoring an unreadable lease %s: %s", self.url, exc)
            return None

    def _write(self) -> None:
        record = LeaseRecord(self.token, self.host, os.getpid(), self.started, self.clock() + self.ttl_s)
        storage.write_bytes_atomic(self.url, json.dumps(asdict(record)).encode(), self.storage_cfg)

    def is_free(self, record: LeaseRecord | None) -> bool:
        if record is None or record.token == self.token or record.expires <= self.clock():
            return True
        return record.host == self.host and not _pid_running(record.pid)

    def _busy(self, record: LeaseRecord) -> OutputBusyError:
        left = max(record.expires - self.clock(), 0)
        return OutputBusyError(
            f"output {self.out_url} is in use by another job ({record.describe()}); wait for it to finish or "
            f"choose another output (its lease expires in {left:.0f} s if that job died)"
        )

    # -- life cycle -------------------------------------------------------------------------

    def acquire(self) -> "OutputLease":
        current = self.read()
        if not self.is_free(current):
            raise self._busy(current)
        if current is not None and current.token != self.token:
            log.info("taking over the lease of %s from a job that ended (%s)", self.out_url, current.describe())
        self._write()
        time.sleep(self.settle_s)
        current = self.read()
        if current is None or current.token != self.token:
            raise self._busy(current) if current else OutputBusyError(f"lost the lease on {self.out_url}")
        self._thread = threading.Thread(target=self._refresh_loop, name="uiface-lease", daemon=True)
        self._thread.start()
        return self

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                current = self.read()
                if current is not None and current.token != self.token:
                    self._lost = current.describe()
                    return
                self._write()
            except storage.StorageError as exc:  # the next refresh tries again; the job's writes report it
                log.warning("cannot refresh the lease %s: %s", self.url, exc)

    def check(self) -> None:
        """Raise :class:`OutputBusyError` if another job took the output over."""
        if self._lost:
            raise OutputBusyError(
                f"output {self.out_url} was taken over by another job ({self._lost}); "
                "this job stopped: run one job per output"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            current = self.read()
            if current is not None and current.token == self.token:
                storage.remove(self.url, self.storage_cfg)
        except storage.StorageError as exc:
            log.warning("cannot remove the lease %s (it expires by itself): %s", self.url, exc)

    def __enter__(self) -> "OutputLease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
