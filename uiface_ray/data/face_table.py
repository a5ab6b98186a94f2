"""The face table: one Parquet file of aligned face images with contiguous integer labels.

Columns (docs/ARCHITECTURE.md): ``image`` (binary, encoded JPEG/PNG), ``label`` (int64, 0..K-1),
``identity`` (string), ``source`` (string: original file URL or ``rec:<index>``), ``width``,
``height`` (int32).  ``jobs/embed.py`` later adds ``embedding`` (list<float32>) and the schema
metadata key ``uiface.encoder``.  The schema metadata key ``uiface.face_table`` records how the
table was made.  Schema and checks: ``uiface_ray.storage.tables.FACE_TABLE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from uiface_ray.config import StorageConfig
from uiface_ray.data.images import EncodedFace
from uiface_ray.storage.tables import FACE_TABLE, write_typed

__all__ = ["FACE_TABLE_COLUMNS", "FaceTableBuilder", "FaceTableSummary"]

FACE_TABLE_COLUMNS = ("image", "label", "identity", "source", "width", "height")
FACE_TABLE_META = "uiface.face_table"


@dataclass(frozen=True)
class FaceTableSummary:
    output: str
    images: int
    identities: int
    resolution: tuple[int, int] | None  # (width, height) when all images share one size
    num_bytes: int


@dataclass
class FaceTableBuilder:
    """Collects faces identity by identity; labels are assigned 0, 1, ... in order of arrival."""

    images: list[bytes] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    _label_of: dict[str, int] = field(default_factory=dict)

    def add(self, identity: str, source: str, face: EncodedFace) -> None:
        label = self._label_of.setdefault(identity, len(self._label_of))
        self.images.append(face.data)
        self.labels.append(label)
        self.identities.append(identity)
        self.sources.append(source)
        self.widths.append(face.width)
        self.heights.append(face.height)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_identities(self) -> int:
        return len(self._label_of)

    def columns(self) -> dict:
        return {
            "image": self.images,
            "label": np.asarray(self.labels, dtype=np.int64),
            "identity": self.identities,
            "source": self.sources,
            "width": np.asarray(self.widths, dtype=np.int32),
            "height": np.asarray(self.heights, dtype=np.int32),
        }

    def write(self, url: str, provenance: dict, storage: StorageConfig | None = None) -> FaceTableSummary:
        """Write the table in one atomic step (nothing at ``url`` if this fails)."""
        if not self.images:
            raise ValueError(f"no faces to write to {url}: every identity was filtered out")
        sizes = set(zip(self.widths, self.heights))
        meta = {
            FACE_TABLE_META: json.dumps(
                {**provenance, "images": len(self), "identities": self.num_identities}, sort_keys=True
            )
        }
        data = write_typed(FACE_TABLE, url, self.columns(), storage, metadata=meta)
        return FaceTableSummary(
            url, len(self), self.num_identities, next(iter(sizes)) if len(sizes) == 1 else None, len(data)
        )
