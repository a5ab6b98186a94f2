"""One helper finds the user's error behind what Ray raised (``errors.input_error_of``): the job's
``error:`` line (``run_job``) and the actor pool both use it.  Through a real Ray task and a
real actor whose constructor fails, in other processes."""

from __future__ import annotations

import sys

import pytest
from ray import cloudpickle

from uiface_ray.errors import InputError, input_error_of
from uiface_ray.runtime.job import run_job
from uiface_ray.config import Config


# the workers cannot import this test module: its functions and classes travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _BadTable(InputError):
    """An input error of a layer (as storage's or synthesis's own)."""


def _raise_bad_table(what: str):
    raise _BadTable(f"table {what} has no 'label' column")


def _raise_bug():
    raise KeyError("a bug, not bad input")


class _Worker:
    """As the project's actors: the constructor keeps the input error it met, ``ready()`` raises it."""

    def __init__(self, what: str):
        try:
            _raise_bad_table(what)
        except InputError as exc:
            self.error = exc

    def ready(self) -> bool:
        raise self.error


def test_the_input_error_a_ray_task_raised_is_found_with_its_type_and_message(ray_local):
    with pytest.raises(Exception) as info:
        ray_local.get(ray_local.remote(_raise_bad_table).options(max_retries=0).remote("faces.parquet"))
    # Ray's wrapper is a _BadTable too, but its text carries the worker's stack
    assert isinstance(info.value, _BadTable) and 'File "' in str(info.value)
    found = input_error_of(info.value)
    assert type(found) is _BadTable and str(found) == "table faces.parquet has no 'label' column"
    with pytest.raises(Exception) as bug:
        ray_local.get(ray_local.remote(_raise_bug).options(max_retries=0).remote())
    assert input_error_of(bug.value) is None


def test_the_input_error_an_actor_met_in_its_constructor_is_found(ray_local):
    actor = ray_local.remote(_Worker).options(num_cpus=0, max_restarts=0).remote("ids.parquet")
    try:
        with pytest.raises(Exception) as info:
            ray_local.get(actor.ready.remote())
    finally:
        ray_local.kill(actor)
    found = input_error_of(info.value)
    assert type(found) is _BadTable and str(found) == "table ids.parquet has no 'label' column"


def test_run_job_prints_the_remote_input_error_in_one_line(ray_local, capsys):
    def body(cfg):
        ray_local.get(ray_local.remote(_raise_bad_table).options(max_retries=0).remote("x.parquet"))

    assert run_job(Config, body, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: table x.parquet has no 'label' column"]


def test_a_plain_error_is_itself_or_nothing():
    assert input_error_of(None) is None
    mine = _BadTable("given")
    assert input_error_of(mine) is mine
    assert input_error_of(ValueError("bug")) is None
