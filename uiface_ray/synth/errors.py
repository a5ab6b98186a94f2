"""The input errors of the synthesis jobs, and how a job reports them: one line, exit code 2."""

from __future__ import annotations

import sys
from typing import Callable

__all__ = ["SynthesisInputError", "input_error_types", "report_input_errors"]


class SynthesisInputError(ValueError):
    """A synthesis input (model, identity table, output) is unusable; nothing was written."""


def input_error_types() -> tuple[type[BaseException], ...]:
    from uiface_ray.identities.table import IdentityTableError
    from uiface_ray.model import ModelLoadError
    from uiface_ray.storage import StorageError
    from uiface_ray.synth.dataset import DatasetError
    from uiface_ray.synth.resume import ResumeError

    return (SynthesisInputError, IdentityTableError, ModelLoadError, StorageError, DatasetError, ResumeError)


def report_input_errors(run: Callable[[], int]) -> int:
    """Run a job; a known input error prints ``error: ...`` (no traceback) and returns 2."""
    try:
        return run()
    except input_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
