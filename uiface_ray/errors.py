"""The one base class of errors in what a user gave a job (a config, a file, a checkpoint, a table),
and the one way to find such an error behind what Ray raised.

Each layer raises its own subclass with a message that names the field, file or shape and what was
expected; ``uiface_ray.runtime.job.run_job`` prints any of them as one ``error: ...`` line and exits
2, with no traceback.  Anything else is a bug and keeps its traceback."""

from __future__ import annotations

__all__ = ["InputError", "input_error_of"]


class InputError(Exception):
    """Unusable input; the message names it and says what was expected."""


def _ray_task_error(exc: BaseException) -> bool:
    """Whether ``exc`` is Ray's wrapper of an error a task raised (by name: no Ray is imported here)."""
    return any(c.__module__ == "ray.exceptions" and c.__name__ == "RayTaskError" for c in type(exc).__mro__)


def input_error_of(exc: BaseException | None) -> InputError | None:
    """The :class:`InputError` behind ``exc``: itself, or the one a Ray task or actor raised remotely,
    found along the ``cause`` chain Ray keeps (``RayTaskError(StorageError)`` is an ``InputError`` too,
    but carries the worker's stack in its text; its cause does not).  Ray keeps no cause for an
    actor whose constructor raised (``ActorDiedError``): actors keep such an error and raise it from
    ``ready()`` (:class:`uiface_ray.runtime.pool.PoolWorker`).  None for anything else."""
    for _ in range(5):
        if exc is None:
            return None
        cause = getattr(exc, "cause", None)
        if _ray_task_error(exc) and isinstance(cause, BaseException):
            exc = cause
            continue
        return exc if isinstance(exc, InputError) else None
    return None
