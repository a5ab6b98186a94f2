"""The one module that reaches into Ray's private API; everything else in the package uses Ray's public one.

Written for Ray :data:`WRITTEN_FOR` (pinned in pyproject.toml).  Each function names the private
attribute it uses and why no public one does, so that a Ray upgrade that moves one breaks here and
only here.  The first call of any of them in a process checks the installed Ray's version and, when
it is not the one these were written for, says so in one line on stderr (once per process; nothing
in a healthy run).  ``tests/test_ray_compat.py`` fails when another module of the package uses a
private Ray name.  Imports no Ray at import time.

What is private, and where it is used:

============================  ============================================================  ======================
function                      Ray's private name                                            used by
============================  ============================================================  ======================
canonical_address             ``ray._private.services.canonicalize_bootstrap_address``       session.connect_ray
clusters_disabled             ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``              the embedded Ray
node_ports                    ``ray._private.parameter.RayParams`` (ports ray.init lacks)    the embedded Ray
reload_auth                   ``ray._raylet.Config``, ``AuthenticationTokenLoader``          the embedded Ray
dashboard_registered          ``ray.experimental.internal_kv._internal_kv_get``              prepare_ray_train
start_autoscaling_coordinator ``ray.data._internal.cluster_autoscaler``                      prepare_ray_train
post_init_hooks               ``ray._private.worker._post_init_hooks``                       signals
cluster_is_fixed              ``ray._private.worker._global_node``                           pool
quiet_train_report_lines      ``ray.train.v2._internal.execution.context``                   train_fr's workers
quiet_train_worker_errors     the logger ``ray.train.v2._internal.util``                     training workers
quiet_ray_data_progress_notice the logger ``ray.data._internal.progress``                    ingest
============================  ============================================================  ======================
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from typing import Any, Iterator

__all__ = [
    "WRITTEN_FOR",
    "canonical_address",
    "cluster_is_fixed",
    "clusters_disabled",
    "dashboard_registered",
    "node_ports",
    "post_init_hooks",
    "quiet_train_report_lines",
    "quiet_train_worker_errors",
    "quiet_ray_data_progress_notice",
    "reload_auth",
    "start_autoscaling_coordinator",
    "version_line",
]

log = logging.getLogger(__name__)

WRITTEN_FOR = "2.60.0"  # the Ray version every function below was written for and tested on

_checked = threading.Event()


def version_line(installed: str | None = None) -> str | None:
    """The one line that says the installed Ray is not the one this module was written for (None
    when it is)."""
    if installed is None:
        import ray

        installed = ray.__version__
    if installed == WRITTEN_FOR:
        return None
    return (
        f"warning: uiface-ray's calls into Ray's private API were written for Ray {WRITTEN_FOR}, and this is "
        f"Ray {installed}: if a job fails inside uiface_ray/runtime/ray_compat.py, install ray=={WRITTEN_FOR}"
    )


def _check_version() -> None:
    """On the first use in this process: the version line on stderr when the installed Ray differs."""
    if _checked.is_set():
        return
    _checked.set()
    line = version_line()
    if line:
        print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# connecting, and starting an embedded Ray


def canonical_address(address: str) -> str:
    """``address`` as the ``host:port`` Ray will dial ('auto' resolved as Ray resolves it: from
    ``RAY_ADDRESS`` or the machine's running cluster); ``ConnectionError``/``ValueError`` when it
    cannot be resolved.  Ray has no public resolver: ``ray.init`` calls this one internally."""
    _check_version()
    from ray._private import services

    return services.canonicalize_bootstrap_address(address) or ""


@contextlib.contextmanager
def clusters_disabled() -> Iterator[None]:
    """Ray's "clusters disabled" switch for this process while ``ray.init`` runs.  Ray reads
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, at import, into ``ray_constants.ENABLE_RAY_CLUSTER``;
    with clusters enabled it replaces a node address of 127.0.0.1 by the machine's own (and then
    listens on every interface)."""
    _check_version()
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


@contextlib.contextmanager
def node_ports(**ports: int) -> Iterator[None]:
    """While open, the node that ``ray.init`` starts takes ``ports`` (keyword names of
    ``RayParams``: ``gcs_server_port``, ``dashboard_agent_listen_port``, ``metrics_agent_port``,
    ``runtime_env_agent_port``, ``node_manager_port``, ``object_manager_port``, ...).

    ``ray.init`` takes only ``dashboard_port`` and ``_metrics_export_port``; the others are fields
    of the ``RayParams`` it builds (``ray._private.parameter.RayParams``), whose defaults are Ray's
    head defaults for the dashboard agent (52365) and random ports for the rest.  This fills them in
    the object ``ray.init`` builds, by handing it a subclass for the duration of the call."""
    _check_version()
    from ray._private import parameter

    base = parameter.RayParams
    unknown = sorted(set(ports) - set(base.__init__.__code__.co_varnames))
    if unknown:
        raise TypeError(f"RayParams has no field {unknown} in Ray {WRITTEN_FOR}")

    class WithPorts(base):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **{**kwargs, **ports})

    parameter.RayParams = WithPorts
    try:
        yield
    finally:
        parameter.RayParams = base


def reload_auth() -> None:
    """Make this process's Ray see the current ``RAY_AUTH_*`` settings: Ray caches its config and
    the token at first use (``ray._raylet.Config``, ``ray._raylet.AuthenticationTokenLoader``) and
    offers no public way to reload them.  The config first, then the token cache (Ray's own order: a
    draining thread may reload)."""
    _check_version()
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # a Ray without token auth: nothing cached
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


# --------------------------------------------------------------------------------------------
# Ray Train's start-up


def dashboard_registered() -> bool:
    """Whether the dashboard (the state API's server) has registered its address in the GCS
    (``ray.experimental.internal_kv._internal_kv_get`` of Ray's own dashboard key: Ray has no public
    "is the dashboard up" call)."""
    _check_version()
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    try:
        return bool(
            internal_kv._internal_kv_get(
                ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD
            )
        )
    except Exception:  # noqa: BLE001 - not ready yet
        return False


def start_autoscaling_coordinator() -> Any | None:
    """Ray Train's autoscaling-coordinator actor (created if needed), or None on a Ray without it.
    Ray Train's controller creates it on its first resource request with a 5 s limit; starting it
    first is only possible through ``ray.data._internal``."""
    _check_version()
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
    except ImportError:
        return None
    return get_or_create_autoscaling_coordinator()


def quiet_train_report_lines() -> None:
    """Ray Train 2.x logs "Reporting training result ..." for every rank and report on a logger named
    after its source file (``ray.train.v2._internal.execution.context``), which its LoggingConfig does
    not reach; keep that logger's warnings only."""
    _check_version()
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray Train layout: nothing to quiet
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def quiet_train_worker_errors() -> None:
    """A Ray Train worker that raises a bad input (one ``error:`` line at the driver) would also have
    its traceback logged by Ray Train (logger ``ray.train.v2._internal.util``): silence that logger in
    this worker.  Nothing happens if the module moved."""
    _check_version()
    logging.getLogger("ray.train.v2._internal.util").setLevel(logging.CRITICAL)


# --------------------------------------------------------------------------------------------
# the driver's own state


def post_init_hooks() -> list | None:
    """The list of functions Ray runs at the end of every ``ray.init`` of this process
    (``ray._private.worker._post_init_hooks``, the list Ray's own Tune registry uses), or None on a Ray
    without it.  Ray has no public hook after ``ray.init``."""
    _check_version()
    try:
        from ray._private import worker

        return worker._post_init_hooks
    except (ImportError, AttributeError):
        return None


def cluster_is_fixed() -> bool:
    """True when this process started the Ray it uses (an embedded Ray: it never grows).

    Ray has no public way to ask whether the driver's node is one it started itself: the driver's
    node object (``ray._private.worker._global_node``) is a head node only in that case."""
    _check_version()
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    return bool(getattr(node, "head", False))


def quiet_ray_data_progress_notice() -> None:
    """With its progress bars off (as the training stream sets them), Ray Data warns once per process
    "Progress bars disabled. To enable, set ..." (logger ``ray.data._internal.progress``): a line in
    every training worker's log of a healthy run.  Keep that logger's errors only."""
    _check_version()
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
