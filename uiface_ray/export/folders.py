"""Image-folder export: ``<out>/images/<label>/<index>.jpg``, one folder per identity, and
``<out>/labels.tsv``.

Folder names are the identity's class label (its rank in identity-major order, the label of its
records in ``train.rec``) zero-padded to the width of the largest label, and image names the image
index zero-padded likewise, so that a folder loader that sorts class names (torchvision's
``ImageFolder``, the ``datasets`` library's ``imagefolder``) numbers the classes as ``train.rec``
does.  ``labels.tsv`` maps each folder to the identity id of the identity table, in label order.
The files are written per shard by :func:`uiface_ray.export.shard.export_shard`.
"""

from __future__ import annotations

from uiface_ray import storage
from uiface_ray.synth.shard import decode_image, encode_image

__all__ = ["LABELS_NAME", "as_jpeg", "digits", "folder_name", "image_name", "labels_tsv", "write_labels"]

JPEG_MAGIC = b"\xff\xd8\xff"
LABELS_NAME = "labels.tsv"


def as_jpeg(data: bytes, quality: int) -> bytes:
    """JPEG bytes unchanged; anything else decoded and encoded as JPEG at ``quality``."""
    if data[:3] == JPEG_MAGIC:
        return data
    return encode_image(decode_image(data), "jpeg", quality)


def digits(count: int) -> int:
    """The width that zero-pads ``0 .. count - 1`` to one length."""
    return len(str(max(count - 1, 0)))


def folder_name(label: int, width: int) -> str:
    return f"{label:0{width}d}"


def image_name(index: int, width: int) -> str:
    return f"{index:0{width}d}.jpg"


def labels_tsv(identity_ids: list[int], counts: list[int]) -> bytes:
    """``label<TAB>folder<TAB>identity_id<TAB>images`` per class, in label order, with a header."""
    width = digits(len(identity_ids))
    lines = ["label\tfolder\tidentity_id\timages\n"]
    lines += [
        f"{label}\t{folder_name(label, width)}\t{identity}\t{count}\n"
        for label, (identity, count) in enumerate(zip(identity_ids, counts))
    ]
    return "".join(lines).encode()


def write_labels(dones, staging: str, storage_cfg=None) -> None:
    """``labels.tsv`` from the shards' export records (each lists its identities in label order)."""
    ids = [i for done in dones for i in done.identity_ids]
    counts = [c for done in dones for c in done.counts]
    storage.write_bytes_atomic(storage.join(staging, LABELS_NAME), labels_tsv(ids, counts), storage_cfg)
