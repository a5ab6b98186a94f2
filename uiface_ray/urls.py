"""The one place a config field is declared a path or storage URL.

Every config field that holds a local path or a storage URL (``out/run1``, ``file:///x``,
``s3://bucket/key``) is annotated :data:`Url` or :data:`OptionalUrl` where it is declared.  That is
the whole rule: :func:`uiface_ray.storage.resolve_urls` walks any config tree (nested configs,
tuples, optional sections), makes every such local path absolute against the driver's working
directory and fills every ``storage`` section from the driver's ``AWS_*`` variables, before the
config crosses into a Ray actor, task or Ray Train worker (which run in another folder and
environment).  No job lists its fields by name, so a new field cannot be forgotten: annotate it
``Url`` and ``tests/test_boundary.py`` checks every ``str`` field of every config is either a URL or
named there as plain text.

Imports only pydantic and typing (no fsspec): the config modules import it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic.fields import FieldInfo

__all__ = ["OptionalUrl", "Url", "UrlField", "url_fields", "url_marker"]


@dataclass(frozen=True)
class UrlField:
    """Marks a ``str`` field (or the strings of a tuple field) as a local path or storage URL.

    ``keep``: words of the field that are not paths (``people_file: auto``) and stay as written."""

    keep: frozenset[str] = field(default_factory=frozenset)


Url = Annotated[str, UrlField()]
"""A required local path or storage URL."""

OptionalUrl = Annotated[str | None, UrlField()]
"""An optional local path or storage URL (``None``: not given)."""


def _marker_in(annotation: Any) -> UrlField | None:
    if typing.get_origin(annotation) is Annotated:
        found = next((m for m in annotation.__metadata__ if isinstance(m, UrlField)), None)
        if found is not None:
            return found
    for arg in typing.get_args(annotation):
        found = _marker_in(arg)
        if found is not None:
            return found
    return None


def url_marker(info: FieldInfo) -> UrlField | None:
    """The :class:`UrlField` of a pydantic field (on the field itself, or inside ``X | None`` or
    ``tuple[X, ...]``), else None."""
    found = next((m for m in info.metadata if isinstance(m, UrlField)), None)
    return found if found is not None else _marker_in(info.annotation)


def _submodels(annotation: Any) -> list[type]:
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _submodels(arg)]


def url_fields(cls: type, prefix: str = "") -> list[str]:
    """Dotted names of every URL field of a config class and of the configs nested in it."""
    names = []
    for name, info in cls.model_fields.items():
        if url_marker(info) is not None:
            names.append(prefix + name)
        for sub in _submodels(info.annotation):
            names.extend(url_fields(sub, f"{prefix}{name}."))
    return names
