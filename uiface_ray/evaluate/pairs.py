"""Verification pairs in the LFW pairs format.

First line: a count (``500``) or ``folds count`` (``10 300``); then ``name<TAB>i<TAB>j`` for a
same-person pair and ``name1<TAB>i<TAB>name2<TAB>j`` for a different-person pair.  Image numbers
are 1-based: image ``i`` of ``name`` is ``<root>/<name>/<name>_<iiii>.jpg``.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def parse_pairs(text: str, source: str = "<pairs>") -> list[Pair]:
    """All pairs of a pairs file; errors name the file and line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{source}: empty pairs file")
    pairs: list[Pair] = []
    for no, line in enumerate(lines[1:], start=2):
        f = line.strip().split()
        try:
            if len(f) == 3:
                pairs.append(Pair(f[0], int(f[1]), f[0], int(f[2])))
            elif len(f) == 4:
                pairs.append(Pair(f[0], int(f[1]), f[2], int(f[3])))
            else:
                raise ValueError(f"expected 3 or 4 fields, got {len(f)}")
        except ValueError as exc:
            raise ValueError(f"{source} line {no}: {exc}: {line!r}") from None
    return pairs
