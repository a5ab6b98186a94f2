"""Verification pairs in the LFW pairs format.

First line: a count (``500``) or ``folds count`` (``10 300``); then ``name<TAB>i<TAB>j`` for a
same-person pair and ``name1<TAB>i<TAB>name2<TAB>j`` for a different-person pair.  Image numbers
are 1-based: image ``i`` of ``name`` is ``<root>/<name>/<name>_<iiii>.jpg``.  A name is one
folder directly under the images root: a name with ``/`` or ``\\``, ``.`` or ``..`` (which would
read files outside the root) is refused with the line that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from uiface_ray.errors import InputError


class PairsError(InputError, ValueError):
    """A pairs file is empty or has a malformed line; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    name1: str
    index1: int
    name2: str
    index2: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2


def image_relpath(name: str, index: int, ext: str = "jpg") -> str:
    return f"{name}/{name}_{index:04d}.{ext}"


def _check_names(pair: Pair, source: str, no: int, line: str) -> None:
    for name in (pair.name1, pair.name2):
        if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise PairsError(
                f"{source} line {no}: name {name!r} is not a folder directly under images_root (no '/', "
                f"'\\', '.' or '..'): {line!r}"
            )


def parse_pairs(text: str, source: str = "<pairs>") -> list[Pair]:
    """All pairs of a pairs file; errors name the file and line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise PairsError(
            f"{source}: empty pairs file (expected a count line, then name<TAB>i<TAB>j or "
            "name1<TAB>i<TAB>name2<TAB>j lines)"
        )
    head = lines[0].split()
    if not head or len(head) > 2 or not all(h.isdigit() for h in head):
        raise PairsError(f"{source} line 1: expected a count ('500') or 'folds count' ('10 300'), got {lines[0]!r}")
    pairs: list[Pair] = []
    for no, line in enumerate(lines[1:], start=2):
        f = line.strip().split()
        try:
            if len(f) == 3:
                pair = Pair(f[0], int(f[1]), f[0], int(f[2]))
            elif len(f) == 4:
                pair = Pair(f[0], int(f[1]), f[2], int(f[3]))
            else:
                raise PairsError(f"{source} line {no}: expected 3 or 4 fields, got {len(f)}: {line!r}")
        except ValueError as exc:
            if isinstance(exc, PairsError):
                raise
            raise PairsError(f"{source} line {no}: image numbers must be integers: {line!r}") from None
        if pair.index1 < 1 or pair.index2 < 1:
            raise PairsError(f"{source} line {no}: image numbers are 1-based, got {line!r}")
        _check_names(pair, source, no, line)
        pairs.append(pair)
    if not pairs:
        raise PairsError(f"{source}: no pairs after the count line")
    return pairs
