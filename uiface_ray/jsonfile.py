"""The one reader of the JSON files the package reads: manifests, journal segments, leases, export
markers and records, model markers, checkpoint records, metrics, table metadata.

``json.loads`` of a few hundred kilobytes of ``[[[[...`` raises ``RecursionError`` (a traceback,
not an error naming the file), and a value nested a few hundred deep parses but breaks the next
walk of it (``json.dumps``, a comparison, pydantic); an integer of more than 4,300 digits raises
Python's int-string limit.  :func:`loads` refuses nesting deeper than :data:`MAX_DEPTH` before it
parses (one pass over the text, strings skipped) and turns every problem into a
:class:`JSONFileError`, a ``ValueError``: a caller that already catches ``ValueError`` for damaged
JSON catches these too, and names its file in its own error.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

__all__ = ["MAX_DEPTH", "JSONFileError", "loads", "nesting_depth"]

#: Deepest nesting of arrays and objects read (the package's own files nest under 10 levels).
MAX_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JSONFileError(ValueError):
    """A JSON text that cannot be read safely; the message says why (the caller names the file)."""


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (brackets inside strings not counted)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` of ``data``, refusing nesting deeper than ``max_depth``; any problem is a
    :class:`JSONFileError` with a short reason."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise JSONFileError(f"nests {depth} levels deep, more than the {max_depth} read")
    try:
        return json.loads(raw)
    except RecursionError:  # not reached after the depth check; kept so that no path escapes
        raise JSONFileError("nests too deep to read") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, Python's int-string limit
        reason = str(exc).split("; use sys.set_int_max_str_digits")[0]
        raise JSONFileError(f"not valid JSON: {reason[:200]}") from None
