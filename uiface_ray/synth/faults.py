"""A test hook of the synthesis job, kept out of its config: make an actor hold one shard so that a
test can kill the actor (or the driver) while the shard is in flight.

Tests pass a :class:`FaultInjectionConfig` to ``run_synthesis(cfg, faults=...)``, which hands it to
the actors inside their constructor arguments; a test that needs the job as a process runs
``tests/fault_seam/synthesize_with_faults.py`` (the job's own body, given the plan).  The production job reads
no fault setting: no config field, no environment variable.
"""

from __future__ import annotations

from pydantic import Field

from uiface_ray.config import Config
from uiface_ray.urls import OptionalUrl

__all__ = ["FaultInjectionConfig"]


class FaultInjectionConfig(Config):
    """Test hook: make an actor hold one shard so that a test can kill it mid-shard."""

    hold_shard: int | None = Field(
        None, ge=0, description="On its first attempt, shard with this index sleeps before being written."
    )
    hold_seconds: float = Field(60.0, ge=0, description="How long the held shard sleeps.")
    marker_dir: OptionalUrl = Field(
        None, description="Local folder where the holding actor writes 'holding-<shard>' holding its actor name."
    )
