"""A test hook of the synthesis job, kept out of its config: make an actor hold one shard so that a
test can kill the actor (or the driver) while the shard is in flight.

Tests pass a :class:`FaultInjectionConfig` to ``run_synthesis(cfg, faults=...)``; a test that runs
``jobs/synthesize.py`` as a process sets ``UIFACE_TEST_FAULTS`` to its JSON.  Nothing else reads it.
"""

from __future__ import annotations

import json
import os

from pydantic import Field

from uiface_ray.config import Config
from uiface_ray.urls import OptionalUrl

__all__ = ["FAULTS_ENV", "FaultInjectionConfig", "faults_from_env"]

FAULTS_ENV = "UIFACE_TEST_FAULTS"


class FaultInjectionConfig(Config):
    """Test hook: make an actor hold one shard so that a test can kill it mid-shard."""

    hold_shard: int | None = Field(
        None, ge=0, description="On its first attempt, shard with this index sleeps before being written."
    )
    hold_seconds: float = Field(60.0, ge=0, description="How long the held shard sleeps.")
    marker_dir: OptionalUrl = Field(
        None, description="Local folder where the holding actor writes 'holding-<shard>' holding its actor name."
    )


def faults_from_env() -> FaultInjectionConfig | None:
    """The hook a test set in ``UIFACE_TEST_FAULTS`` (JSON), else None."""
    text = os.environ.get(FAULTS_ENV)
    return FaultInjectionConfig.model_validate(json.loads(text)) if text else None
