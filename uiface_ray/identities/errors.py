"""The input errors of make_identities (jobs print them as one line and exit 2, see run_job)."""

from __future__ import annotations

from uiface_ray.errors import InputError

__all__ = ["IdentitiesInputError"]


class IdentitiesInputError(InputError, ValueError):
    """An input of make_identities (model, training embeddings, output) is unusable; nothing was written."""
