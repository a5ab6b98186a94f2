"""Package namespaces that import their modules on first use.

A job's ``--help`` imports its config class only; a package ``__init__`` that imported every
module eagerly pulled torch, diffusers or pyarrow in with it (7-25 s before the help appeared).
``lazy_exports`` gives a package a PEP 562 ``__getattr__`` that imports the defining module when
a name is first asked for, so ``from uiface_ray.encoders import load_encoder`` works as before.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """``names`` maps each exported name to the submodule (relative to ``package``) defining it."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
