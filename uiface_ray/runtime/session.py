"""Connect to a Ray cluster, or start an embedded local one; quiet Ray Train's start-up.

A healthy run should print our progress lines and nothing else.  What Ray Train prints on its
own, and why each setting here removes it (measured on Ray 2.60 on a 2-core machine):

- ``print`` in a Ray Train worker is patched to also go to Train's logger, so every line reached
  the driver twice: ``RAY_TRAIN_ENABLE_PRINT_PATCH=0``.
- The detached placement-group cleaner asks the state API, every second, whether the controller
  lives; without a dashboard (the state API's server) each query failed with a warning:
  the embedded Ray starts its dashboard on 127.0.0.1 (the next free port from 8265).
- The controller's first resource request gives the autoscaling-coordinator actor 5 s to start and
  logs a traceback when a loaded machine takes longer: :func:`prepare_ray_train` starts it first
  and waits for it.
- On an embedded Ray nothing is preempted, and the preemption watcher's actor logged a core-worker
  error: ``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0`` there (clusters keep it).
- Ray's processes find "their" cluster through ``RAY_ADDRESS``, else by scanning the machine, which
  fails ("Found multiple active Ray instances") when another Ray runs beside ours: the embedded Ray
  gets a GCS port chosen here and hands ``RAY_ADDRESS`` to its workers (an address, no secret).

Nothing left in the temporary folder: the dashboard starts its modules through a multiprocessing
forkserver, whose socket lives in a ``pymp-*`` folder under the temporary folder that Python removes
only at a normal exit, and ``ray.shutdown`` kills the dashboard.  After shutting down an embedded
Ray, :func:`remove_stale_forkserver_dirs` removes the ``pymp-*`` folders made since it started
whose sockets no process holds any more (Linux: ``/proc/net/unix``); a live one is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from uiface_ray.config import RayConfig

__all__ = ["init_embedded_ray", "prepare_ray_train", "ray_session", "remove_stale_forkserver_dirs"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def ray_session(cfg: RayConfig | None = None) -> Iterator[None]:
    """Use the Ray that is already up, else connect to ``cfg.address`` / ``RAY_ADDRESS``, else
    start an embedded local Ray; shut down only what this call started."""
    import ray

    cfg = cfg or RayConfig()
    if ray.is_initialized():
        yield
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    started = time.time()
    if address:
        os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
        ray.init(address=address, log_to_driver=True)
    else:
        init_embedded_ray(cfg.num_cpus, cfg.num_gpus)
    try:
        yield
    finally:
        ray.shutdown()
        if not address:
            remove_stale_forkserver_dirs(started)


def _bound_unix_sockets() -> set[str] | None:
    """Paths of the Unix sockets some process holds (Linux), or None where that cannot be read."""
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return None
    return {fields[7] for fields in (line.split() for line in lines) if len(fields) > 7}


def remove_stale_forkserver_dirs(since: float, wait_s: float = 5.0) -> list[str]:
    """Remove the ``pymp-*`` folders of the temporary folder made at or after ``since`` that hold only
    sockets no live process holds (the embedded dashboard's forkserver, killed by ``ray.shutdown``);
    waits up to ``wait_s`` for the dying processes to let go.  Returns the folders removed."""
    candidates = []
    for folder in Path(tempfile.gettempdir()).glob("pymp-*"):
        try:
            entries = list(folder.iterdir())
            if folder.stat().st_mtime >= since - 1 and entries and all(e.is_socket() for e in entries):
                candidates.append((folder, [str(e) for e in entries]))
        except OSError:
            continue
    removed = []
    deadline = time.monotonic() + wait_s
    while candidates:
        bound = _bound_unix_sockets()
        if bound is None:
            break
        for folder, sockets in list(candidates):
            if not bound.intersection(sockets):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(str(folder))
                candidates.remove((folder, sockets))
        if not candidates or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return removed


def init_embedded_ray(num_cpus: int | None = None, num_gpus: int | None = None, log_to_driver: bool = True) -> None:
    """Start an embedded local Ray the way every job (and the tests) should: token auth off unless
    the user set it (it guards nothing in-process), the dashboard up for Ray Train's state queries,
    ``RAY_ADDRESS`` handed to its workers, Ray Train's print tee and preemption watcher off."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    address = _embedded_address()
    try:
        ray.init(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            log_to_driver=log_to_driver,
            configure_logging=False,
            runtime_env={"env_vars": {"RAY_ADDRESS": address}},
        )
    finally:
        os.environ.pop("RAY_GCS_SERVER_PORT", None)


def _embedded_address() -> str:
    """host:port the embedded Ray's GCS will listen on (the port chosen free here, set through
    ``RAY_GCS_SERVER_PORT``, which Ray reads when it starts a head node)."""
    import socket

    from ray._private.services import get_node_ip_address

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)
    return f"{get_node_ip_address()}:{port}"


def _wait_for_dashboard(timeout_s: float) -> None:
    """Until the dashboard (the state API's server) has registered its address in the GCS."""
    import time

    import ray
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if internal_kv._internal_kv_get(
                ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD
            ):
                return
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(0.5)
    log.debug("the dashboard did not register within %.0f s (%s)", timeout_s, ray.get_runtime_context())


def prepare_ray_train(timeout_s: float = 120.0) -> None:
    """Wait for the dashboard and start Ray Train's autoscaling-coordinator actor, so that neither
    the placement-group cleaner's state queries nor the controller's first resource request (which
    allows 5 s) fail on a loaded machine."""
    import ray

    _wait_for_dashboard(timeout_s)

    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
    except ImportError:  # another Ray version: nothing to prepare
        return
    try:
        ray.get(get_or_create_autoscaling_coordinator().__ray_ready__.remote(), timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - Ray Train retries on its own; say so once, quietly
        log.debug("autoscaling coordinator not ready after %.0f s: %s", timeout_s, exc)
