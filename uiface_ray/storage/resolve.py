"""The boundary rule: one function that makes any config ready to cross into Ray.

Actors, tasks and Ray Train workers run in another working directory and environment than the
driver.  :func:`resolve_urls` is called once at the driver, on the whole config: every field
declared :data:`uiface_ray.urls.Url` (at any depth: nested configs, tuples, optional sections) that
holds a local path becomes absolute, and every :class:`StorageConfig` in the tree is filled from
the driver's ``AWS_*`` variables; the settings then travel inside the config (never through
``runtime_env``, which Ray logs in plain text).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from uiface_ray.config import StorageConfig
from uiface_ray.storage.fs import absolute_url, resolve_storage
from uiface_ray.urls import UrlField, url_marker

__all__ = ["resolve_urls"]

M = TypeVar("M", bound=BaseModel)


def _value(value: Any, marker: UrlField | None) -> Any:
    if isinstance(value, StorageConfig):
        return resolve_storage(value)
    if isinstance(value, BaseModel):
        return resolve_urls(value)
    if isinstance(value, str):
        return absolute_url(value) if marker is not None and value not in marker.keep else value
    if isinstance(value, (list, tuple)):
        return type(value)(_value(v, marker) for v in value)
    return value


def resolve_urls(cfg: M) -> M:
    """``cfg`` with every local path of a URL field absolute and every storage section resolved.

    Idempotent; URLs with a scheme (``s3://``, ``memory://``) and ``None`` stay as they are.  Only
    changed fields are replaced, so a partial config keeps which fields were set."""
    update = {}
    for name, info in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        new = _value(value, url_marker(info))
        if new is not value and new != value:
            update[name] = new
    return cfg.model_copy(update=update) if update else cfg
