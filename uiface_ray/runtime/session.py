"""Connect to a Ray cluster, or start an embedded local Ray that only its user can reach; quiet Ray
Train's start-up.

An embedded Ray is one user's (a job started with no address, or ``address: local``):

- Token auth is on whatever ``RAY_AUTH_MODE`` says: the job makes a fresh random token and keeps it
  in a 0600 file of its private folder; ``RAY_AUTH_TOKEN_PATH`` (a path, no secret) tells the driver
  and every Ray process to read it from there.  Its GCS, raylet, workers and dashboard (the job API
  included) answer only to that token, so nobody else on the machine can run code as the job's user.
- Every socket is on loopback: the node's address is ``127.0.0.1`` (Ray 2.60 then binds its gRPC
  servers and agents there) and the dashboard listens on ``127.0.0.1``.
- It holds none of the ports a real head takes by default (:data:`HEAD_DEFAULT_PORTS`, and its
  workers' range): every port it listens on is a free one chosen here (:data:`PORTS`; ``ray.init``
  starts no Ray client server), or, for Ray's workers, one the kernel picks.  Before, its dashboard
  agent took 52365, and a ``ray start --head`` beside a running job refused every job.
- Everything lives in one private folder (mode 0700, under the temporary folder): the token, Ray's
  session folder and the temporary files of Ray's processes (``TMPDIR`` for them, e.g. the
  dashboard forkserver's ``pymp-*`` socket folder).  Shutting the session down removes it all;
  with ``RAY_TMPDIR`` set the folder is made there and Ray's logs stay for the user to read (the
  token does not).
- A job killed with ``kill -9`` cannot clean up: its reaper (:mod:`uiface_ray.runtime.reaper`)
  ends the session's processes and removes its folder; failing that, the next embedded session does.

A wrong address must not hang: before ``ray.init`` a job checks, for at most
``ray.connect_timeout_s``, that the cluster's address answers gRPC, else it ends with one line
naming the address (Ray itself retries for minutes with a warning every few seconds).  A cluster
that goes away mid-run ends a connected job in one line too (:mod:`uiface_ray.runtime.cluster_watch`).

A healthy run should print our progress lines and nothing else.  What Ray Train prints on its
own, and why each setting here removes it (measured on Ray 2.60 on a 2-core machine):

- ``print`` in a Ray Train worker is patched to also go to Train's logger, so every line reached
  the driver twice: ``RAY_TRAIN_ENABLE_PRINT_PATCH=0``.
- The detached placement-group cleaner asks the state API, every second, whether the controller
  lives; without a dashboard (the state API's server) each query failed with a warning:
  the embedded Ray starts its dashboard on 127.0.0.1 (on a free port).
- The controller's first resource request gives the autoscaling-coordinator actor 5 s to start and
  logs a traceback when a loaded machine takes longer: :func:`prepare_ray_train` starts it first
  and waits for it.
- On an embedded Ray nothing is preempted, and the preemption watcher's actor logged a core-worker
  error: ``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0`` there (clusters keep it).
- Ray's processes find "their" cluster through ``RAY_ADDRESS``, else by scanning the machine, which
  fails ("Found multiple active Ray instances") when another Ray runs beside ours: the embedded Ray
  hands ``RAY_ADDRESS`` (its GCS) to its workers (an address, no secret).

Ray's private API is used only through :mod:`uiface_ray.runtime.ray_compat`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

from uiface_ray.config import RayConfig
from uiface_ray.errors import InputError
from uiface_ray.runtime import ray_compat
from uiface_ray.runtime.cluster_watch import ClusterWatch
from uiface_ray.runtime.reaper import MARKER, Reaper, end_session, start_reaper

__all__ = [
    "connect_ray",
    "embedded_ray",
    "init_embedded_ray",
    "prepare_ray_train",
    "ray_session",
    "shutdown_embedded_ray",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's processes keep 127.0.0.1 as the node's address
# what an embedded session changes in this process's environment for its lifetime
_SESSION_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_DRIVER_FILE = "driver.pid"  # in a private folder: the pid of the process whose session it is
#: Ray's default ports for a head started with ``ray start --head`` (GCS, dashboard, Ray client server,
#: dashboard agent), and its default worker port range: an embedded Ray takes none of them
HEAD_DEFAULT_PORTS = frozenset({6379, 8265, 10001, 52365})
HEAD_WORKER_PORTS = range(10002, 20000)
#: the ports an embedded Ray listens on, each a free loopback port chosen at start: what ray.init
#: takes itself, then the fields of the node's RayParams that ray.init has no argument for
PORTS = (
    "dashboard_port",
    "metrics_export_port",
    "gcs_server_port",
    "dashboard_agent_listen_port",
    "metrics_agent_port",
    "runtime_env_agent_port",
    "node_manager_port",
    "object_manager_port",
)


class RayUnreachableError(InputError):
    """The Ray address given does not answer."""


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
    if not address or address == "local":
        with embedded_ray(cfg.num_cpus, cfg.num_gpus):
            yield
        return
    source = "--ray.address" if cfg.address else "RAY_ADDRESS"
    watch = connect_ray(address, cfg.connect_timeout_s, source)
    try:
        yield
    finally:
        watch.stop()
        ray.shutdown()


# --------------------------------------------------------------------------------------------
# an existing cluster


def connect_ray(address: str, timeout_s: float = 20.0, source: str = "--ray.address") -> ClusterWatch:
    """``ray.init(address)`` once the address answers gRPC; :class:`RayUnreachableError` (one
    line: the address, why, what to check) when it does not within ``timeout_s``.  Returns the
    running :class:`ClusterWatch` that ends the job in one line if the cluster goes away (stop it
    before ``ray.shutdown``)."""
    import ray

    host, port = _dial_target(address, source)
    _wait_until_answers(address, host, port, timeout_s, source)
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    saved = _set_env({"RAY_ADDRESS": address})  # Ray prefers RAY_ADDRESS to its argument: ours wins
    try:
        ray.init(address=address, log_to_driver=True)
    finally:
        _set_env(saved)
    return ClusterWatch(address, host, port, timeout_s).start()


def _dial_target(address: str, source: str) -> tuple[str, int]:
    """The host and port Ray will dial for ``address`` ('auto' resolved as Ray resolves it)."""
    hint = f"check {source} (host:port of the head's GCS, 'auto', or ray://host:10001)"
    if address.startswith(("http://", "https://")):
        raise RayUnreachableError(
            f"{source}={address} is a dashboard address (for 'ray job submit'); a job connects to "
            f"the cluster itself: {hint}"
        )
    client = address.startswith("ray://")
    target = address[len("ray://") :] if client else address
    if not client:
        try:
            target = ray_compat.canonical_address(target)
        except (ConnectionError, ValueError) as exc:
            raise RayUnreachableError(f"cannot reach the Ray cluster at {address}: {exc}; {hint}") from None
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnreachableError(f"{source}={address} is not a Ray address; {hint}")
    return host.strip("[]"), int(port)


def _wait_until_answers(address: str, host: str, port: int, timeout_s: float, source: str) -> None:
    """Until a gRPC server answers at host:port (a refused or silent port is retried until the
    deadline: a head may be starting)."""
    deadline = time.monotonic() + timeout_s
    reason = "no answer"
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(left, 5.0))):
                pass
            if _answers_grpc(host, port, max(0.1, deadline - time.monotonic())):
                return
            reason = "the port answers but not as a Ray cluster (gRPC)"
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
        if time.monotonic() + 0.5 >= deadline:
            break
        time.sleep(0.5)
    raise RayUnreachableError(
        f"cannot reach the Ray cluster at {address}: {reason} (dialing {host}:{port} for {timeout_s:g} s); "
        f"check {source} and that the cluster is up ('ray status'), or raise ray.connect_timeout_s"
    )


def _answers_grpc(host: str, port: int, timeout_s: float) -> bool:
    """Whether an HTTP/2 (gRPC) server completes a handshake at host:port (TLS clusters: not
    checked here, Ray's own connect decides)."""
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return True
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


# --------------------------------------------------------------------------------------------
# an embedded local Ray, one user's


@dataclasses.dataclass
class _Embedded:
    folder: Path  # private (0700): the token, Ray's session folder, its processes' temporary files
    saved_env: dict[str, str | None]
    keep: bool  # under RAY_TMPDIR: Ray's files stay there after shutdown (the token does not)
    reaper: Reaper  # ends the session's processes (and removes the folder) if the driver dies


_embedded: _Embedded | None = None


@contextlib.contextmanager
def embedded_ray(
    num_cpus: int | None = None, num_gpus: int | None = None, log_to_driver: bool = True
) -> Iterator[None]:
    """An embedded local Ray for the ``with`` block (see :func:`init_embedded_ray`)."""
    init_embedded_ray(num_cpus, num_gpus, log_to_driver)
    try:
        yield
    finally:
        shutdown_embedded_ray()


def init_embedded_ray(num_cpus: int | None = None, num_gpus: int | None = None, log_to_driver: bool = True) -> None:
    """Start an embedded local Ray the way every job (and the tests) should: token auth on with a
    private token, every socket on loopback and on a free port (none of a real head's defaults),
    everything in a private folder watched by a reaper, the dashboard up for Ray Train's state
    queries, ``RAY_ADDRESS`` handed to its workers, Ray Train's print tee and preemption watcher
    off.  End it with :func:`shutdown_embedded_ray`."""
    global _embedded
    if _embedded is not None:
        raise RuntimeError("an embedded Ray is already up in this process")
    tempfile.gettempdir()  # fix the driver's own temporary folder before TMPDIR points into ours
    keep_in = os.environ.get("RAY_TMPDIR") or None  # where the user wants Ray's files, to read them later
    if keep_in is None:
        _remove_dead_sessions(Path(tempfile.gettempdir()))
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir=keep_in))  # 0700, short: Ray's socket paths live under it
    (folder / _DRIVER_FILE).write_text(str(os.getpid()))
    saved_env = {k: os.environ.get(k) for k in _SESSION_ENV}
    _embedded = _Embedded(folder, saved_env, keep=keep_in is not None, reaper=start_reaper(folder, keep_in is not None))
    token = folder / "auth_token"
    with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(secrets.token_hex(32))
    _set_env({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_AUTH_TOKEN": None})
    ray_compat.reload_auth()
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    try:
        _start_node(folder, num_cpus, num_gpus, log_to_driver)
    except BaseException:
        shutdown_embedded_ray()
        raise


def _start_node(folder: Path, num_cpus: int | None, num_gpus: int | None, log_to_driver: bool) -> None:
    """``ray.init`` of a head node on loopback, on free ports (:data:`PORTS`), with its files in ``folder``."""
    import ray

    ports = dict(zip(PORTS, _free_loopback_ports(len(PORTS))))
    gcs = f"{LOOPBACK}:{ports['gcs_server_port']}"
    # what Ray's processes inherit from ray.init: TMPDIR, the session's marker (the reaper finds them
    # by it), and "no cluster": Ray then keeps 127.0.0.1 as the node's address (else it swaps in the
    # machine's); no RAY_ADDRESS (ray.init would join that cluster instead of starting ours: 'address: local')
    daemons = {"TMPDIR": str(folder), MARKER: str(folder), _LOCAL_ONLY_ENV: "0", "RAY_ADDRESS": None}
    saved = _set_env(daemons)
    try:
        with ray_compat.clusters_disabled(), ray_compat.node_ports(**{k: ports[k] for k in PORTS[2:]}):
            ray.init(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=True,
                dashboard_host=LOOPBACK,
                dashboard_port=ports["dashboard_port"],
                log_to_driver=log_to_driver,
                configure_logging=False,
                runtime_env={"env_vars": {"RAY_ADDRESS": gcs}},
                _node_ip_address=LOOPBACK,
                _metrics_export_port=ports["metrics_export_port"],
                _temp_dir=str(folder / "r"),  # Ray makes its temp root world-writable: a folder inside ours
            )
    finally:
        _set_env(saved)


def shutdown_embedded_ray(wait_s: float = 10.0) -> None:
    """``ray.shutdown``, its reaper's last sweep, then this process's auth settings back as they were
    and the private folder removed (waiting up to ``wait_s`` for Ray's dying processes to let go of
    it); under ``RAY_TMPDIR`` only the token is removed and Ray's files stay for the user to read."""
    import ray

    global _embedded
    ray.shutdown()
    embedded, _embedded = _embedded, None
    if embedded is None:
        return
    embedded.reaper.stop()  # ends any process of the session that outlived ray.shutdown
    _set_env(embedded.saved_env)
    ray_compat.reload_auth()
    if embedded.keep:
        (embedded.folder / "auth_token").unlink(missing_ok=True)
        return
    deadline = time.monotonic() + wait_s
    while True:
        shutil.rmtree(embedded.folder, ignore_errors=True)
        if not embedded.folder.exists() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if embedded.folder.exists():
        log.warning("could not remove the embedded Ray's folder %s", embedded.folder)


def _remove_dead_sessions(parent: Path) -> None:
    """End the processes of this user's embedded sessions whose driver is gone (killed with ``kill
    -9``, its reaper killed too: nothing ran its shutdown) and remove their private folders; a
    folder whose driver lives, or that is not one of ours, stays."""
    for folder in parent.glob("ray-*"):
        try:
            if folder.stat().st_uid != os.getuid():
                continue
            pid = int((folder / _DRIVER_FILE).read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or another user's process with that pid): keep
        except ProcessLookupError:
            end_session(str(folder), pid)
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _set_env(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set (None: remove) environment variables; returns their previous values."""
    before = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return before


def _free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct ports free on loopback now, none of them a port a real head takes by
    default (:data:`HEAD_DEFAULT_PORTS`, :data:`HEAD_WORKER_PORTS`): all held at once while chosen."""
    held: list[socket.socket] = []
    chosen: list[int] = []
    try:
        while len(chosen) < count:
            if len(held) > count + 64:
                raise RuntimeError("no free loopback ports outside Ray's head defaults")
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(probe)
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
            if port not in HEAD_DEFAULT_PORTS and port not in HEAD_WORKER_PORTS:
                chosen.append(port)
        return chosen
    finally:
        for probe in held:
            probe.close()


def _wait_for_dashboard(timeout_s: float) -> None:
    """Until the dashboard (the state API's server) has registered its address in the GCS."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray_compat.dashboard_registered():
            return
        time.sleep(0.5)
    log.debug("the dashboard did not register within %.0f s", timeout_s)


def prepare_ray_train(timeout_s: float = 120.0) -> None:
    """Wait for the dashboard and start Ray Train's autoscaling-coordinator actor, so that neither
    the placement-group cleaner's state queries nor the controller's first resource request (which
    allows 5 s) fail on a loaded machine."""
    import ray

    _wait_for_dashboard(timeout_s)
    try:
        coordinator = ray_compat.start_autoscaling_coordinator()
        if coordinator is None:  # another Ray version: nothing to prepare
            return
        ray.get(coordinator.__ray_ready__.remote(), timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - Ray Train retries on its own; say so once, quietly
        log.debug("autoscaling coordinator not ready after %.0f s: %s", timeout_s, exc)
