"""insightface RecordIO export: ``train.rec`` + ``train.idx`` + ``property``.

Each image record's header carries its real class label: the rank of its identity id among the
dataset's identities (0..K-1, identity-major order as insightface expects), then the identity
range records and the header record 0 written by :func:`uiface_ray.data.recordio.write_recordio`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from uiface_ray import storage
from uiface_ray.data.recordio import write_recordio
from uiface_ray.export.folders import as_jpeg
from uiface_ray.synth.dataset import SyntheticDataset
from uiface_ray.synth.shard import decode_image

__all__ = ["RecordIOExport", "export_recordio"]


@dataclass
class RecordIOExport:
    rec_url: str
    idx_url: str
    property_url: str
    num_images: int
    num_classes: int
    labels: dict[int, int]  # identity id -> class label


def export_recordio(dataset: SyntheticDataset, out_url: str, jpeg_quality: int = 95,
                    storage_cfg=None, verify: bool = True) -> RecordIOExport:
    """Write ``train.rec``/``train.idx``/``property`` under ``out_url``; images are stored as JPEG."""
    labels: dict[int, int] = {}
    size: list[int] = []

    def records() -> Iterator[tuple[float, bytes]]:
        for rows in dataset.iter_shards(verify):
            for identity, image in zip(rows.identity_id, rows.image):
                label = labels.setdefault(int(identity), len(labels))
                if not size:
                    size.extend(decode_image(image).shape[:2])
                yield float(label), as_jpeg(image, jpeg_quality)

    rec_url = storage.join(out_url, "train.rec")
    idx_url = storage.join(out_url, "train.idx")
    summary = write_recordio(rec_url, idx_url, records(), storage_cfg)
    prop_url = storage.join(out_url, "property")
    storage.write_bytes_atomic(prop_url, f"{len(labels)},{size[0]},{size[1]}\n".encode(), storage_cfg)
    return RecordIOExport(rec_url, idx_url, prop_url, summary.num_images, len(labels), labels)
