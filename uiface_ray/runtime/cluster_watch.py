"""Notice, under a direct driver, that the cluster's head has gone away, and end the job in one line.

When every process of the head node dies while a driver is connected to it, Ray's core worker
keeps dialing the GCS; after ``gcs_rpc_server_reconnect_timeout_s`` (60 s) it logs "Failed to
connect to GCS within 60 seconds ... The program will terminate" and ends the process with exit
code 1 from C++ (measured on Ray 2.60: exit 1 after 61 s, no ``finally`` block run, no line of
ours).  Ray offers no callback for it, and the driver's main thread meanwhile sits in a
``ray.get`` that never returns.

:class:`ClusterWatch` is a daemon thread that a connected :func:`uiface_ray.runtime.session.ray_session`
runs: every :data:`PROBE_EVERY_S` it opens a TCP connection to the head's GCS (or Ray client
server).  When none has succeeded for ``tolerance_s`` (``ray.connect_timeout_s``, the same patience
as at start, at most :data:`MAX_TOLERANCE_S` so as to act before Ray's 60 s), it hands the job's line to
:func:`uiface_ray.runtime.signals.interrupt_for_lost_cluster`: the main thread gets a
``KeyboardInterrupt`` inside its ``ray.get``, the ``finally`` blocks run, and ``run_job`` prints

    error: the Ray cluster at <address> is gone: ...; work already written is safe: rerun the same command ...

and exits 75.  If the process has not ended :data:`LAST_RESORT_S` later (a ``finally`` block or
``ray.shutdown`` waiting on the dead cluster), the watch prints that line itself and ends the
process with exit 75.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from uiface_ray.runtime.signals import EXIT_CLUSTER_GONE, interrupt_for_lost_cluster, report_lost_cluster

__all__ = ["ClusterWatch", "LAST_RESORT_S", "MAX_TOLERANCE_S", "PROBE_EVERY_S"]

PROBE_EVERY_S = 2.0
MAX_TOLERANCE_S = 30.0  # Ray ends the driver 60 s after the GCS went; interrupt + last resort fit before
LAST_RESORT_S = 15.0


class ClusterWatch:
    """Dial ``host:port`` every :data:`PROBE_EVERY_S`; after ``tolerance_s`` without an answer, end
    the job with its line (see the module's docstring)."""

    def __init__(self, address: str, host: str, port: int, tolerance_s: float):
        self.address, self.host, self.port = address, host, port
        self.tolerance_s = min(tolerance_s, MAX_TOLERANCE_S)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="uiface-cluster-watch", daemon=True)

    def start(self) -> "ClusterWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (a watch that has already declared the cluster gone goes on to its last resort)."""
        self._stop.set()

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=min(5.0, self.tolerance_s)):
                return True
        except OSError:
            return False

    def _run(self) -> None:
        last_answer = time.monotonic()
        while not self._stop.wait(PROBE_EVERY_S):
            if self._answers():
                last_answer = time.monotonic()
                continue
            silent = time.monotonic() - last_answer
            if silent >= self.tolerance_s and not self._stop.is_set():
                self._declare_gone(silent)
                return

    def _declare_gone(self, silent_s: float) -> None:
        interrupt_for_lost_cluster(
            f"the Ray cluster at {self.address} is gone: its head ({self.host}:{self.port}) has not answered "
            f"for {silent_s:.0f} s; work already written is safe: rerun the same command once the cluster "
            f"is back (or with another ray.address) to resume"
        )
        time.sleep(LAST_RESORT_S)
        report_lost_cluster()
        os._exit(EXIT_CLUSTER_GONE)
