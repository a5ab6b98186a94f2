"""The bad input behind a failed Ray Train run or Ray Data job, as one line.

A loader task's error (a damaged table file) reaches the driver wrapped by Ray Data
(``UserCodeException``, with its retry advice appended as more lines) inside a Ray Train worker's
failure (``worker_failures`` of the ``WorkerGroupError``); :func:`user_error` finds the
:class:`~uiface_ray.errors.InputError` behind them and keeps its first line.
"""

from __future__ import annotations

from typing import Callable

from uiface_ray.errors import InputError, input_error_of

__all__ = ["user_error"]


def user_error(exc: BaseException, make: Callable[[str], InputError] = InputError) -> InputError | None:
    """``make(first line)`` of the InputError behind ``exc`` (breadth first over Ray Train's worker
    failures, Ray's ``cause`` and Python's ``__cause__``/``__context__``), or None."""
    todo: list[BaseException] = [exc]
    for _ in range(32):
        if not todo:
            return None
        e = todo.pop(0)
        found = input_error_of(e)
        if found is not None:
            return make(str(found).strip().splitlines()[0])
        todo += list(getattr(e, "worker_failures", {}).values())
        todo += [c for c in (getattr(e, "cause", None), e.__cause__, e.__context__) if isinstance(c, BaseException)]
    return None
