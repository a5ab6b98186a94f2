"""Connect to a Ray cluster, or start an embedded local one."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from uiface_ray.config import RayConfig


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
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # An embedded Ray listens on this machine only and lives as long as this process; token
        # authentication (on by default since Ray 2.60) protects nothing here.  A value the user
        # set is kept.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(
            num_cpus=cfg.num_cpus,
            num_gpus=cfg.num_gpus,
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=False,
        )
    try:
        yield
    finally:
        ray.shutdown()


def cluster_resources() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())
