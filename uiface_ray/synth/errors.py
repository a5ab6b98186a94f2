"""The input errors of the synthesis jobs (jobs print them as one line and exit 2, see run_job)."""

from __future__ import annotations

from uiface_ray.errors import InputError

__all__ = ["SynthesisInputError"]


class SynthesisInputError(InputError, ValueError):
    """A synthesis input (model, identity table, output) is unusable; nothing was written."""
