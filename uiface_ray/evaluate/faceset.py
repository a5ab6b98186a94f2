"""One reader for the datasets evaluation consumes: a synthetic dataset or a real face table.

- synthetic dataset: a folder/URL with ``manifest.json`` (the commit marker) and the shards it
  lists (``shards/shard-*.parquet``: identity_id, image_index, seed, image, t0, mode, ...);
  labels are the identity ids ranked densely from 0.
- face table: one ``.parquet`` file or a folder of them, with ``image``, ``label``, ``identity``.
- an LFW-style image folder (``<root>/<name>/<name>_<NNNN>.jpg``) restricted to a people list
  (``peopleDevTrain.txt``), for the real-data reference row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uiface_ray import storage
from uiface_ray.config import StorageConfig
from uiface_ray.data.images import decode_images, resize_images
from uiface_ray.storage.fs import list_files
from uiface_ray.storage.tables import FaceTableError, read_face_table

__all__ = ["FaceSet", "at_resolution", "decode_images", "faceset_at_resolution", "read_faceset", "read_image_folder"]


@dataclass(frozen=True)
class FaceSet:
    images: list  # encoded image bytes, one per row
    labels: np.ndarray  # (N,) int64, contiguous from 0
    identities: list  # (N,) identity name or id as text
    source: str  # the URL read
    kind: str  # "synthetic", "face_table" or "image_folder"

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def subset(self, rows: np.ndarray) -> "FaceSet":
        rows = np.asarray(rows, dtype=np.int64)
        return FaceSet(
            [self.images[i] for i in rows],
            self.labels[rows],
            [self.identities[i] for i in rows],
            self.source,
            self.kind,
        )


def at_resolution(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) images seen at ``size`` x ``size``: downsampled (antialiased), then resized
    back to (H, W), so that real faces carry no more detail than a generator of that size makes.
    Both resizes are ``data.images.resize_images`` (the filter a generator's training images get)."""
    return resize_images(resize_images(images, size), images.shape[1:3]) if len(images) else images


def faceset_at_resolution(faces: FaceSet, size: int) -> FaceSet:
    """The same faces re-encoded as ``size`` x ``size`` PNGs (as a generator of that size writes them)."""
    from uiface_ray.synth.shard import encode_image

    blobs = [encode_image(im, "png") for im in decode_images(faces.images, size)]
    return FaceSet(blobs, faces.labels, faces.identities, faces.source, faces.kind)


def _dense(keys: list) -> np.ndarray:
    order = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([order[k] for k in keys], dtype=np.int64)


def _read_synthetic(url: str, st: StorageConfig | None) -> FaceSet:
    from uiface_ray.synth.dataset import open_dataset

    images, ids = [], []
    for rows in open_dataset(url, st).iter_shards(verify=True):  # complete, hash-checked
        images += list(rows.image)
        ids += [int(i) for i in rows.identity_id]
    if not images:
        raise ValueError(f"{url}: the synthetic dataset holds no images")
    return FaceSet(images, _dense(ids), [str(i) for i in ids], url, "synthetic")


def _read_face_table(url: str, st: StorageConfig | None) -> FaceSet:
    files = [url] if url.endswith(".parquet") else list_files(url, ".parquet", st)
    if not files:
        raise FaceTableError(f"{url}: no manifest.json and no .parquet face table found")
    images, labels, names = [], [], []
    for f in files:
        table = read_face_table(f, st, required=["image", "label"], columns=["image", "label", "identity"])
        images += table.column("image")
        labels += table.column("label").tolist()
        names += [str(v) for v in (table.column("identity") if table.has("identity") else table.column("label"))]
    return FaceSet(images, _dense(labels), names, url, "face_table")


def read_image_folder(
    root: str,
    people_file: str,
    min_images: int = 1,
    max_identities: int | None = None,
    max_per_identity: int | None = None,
    st: StorageConfig | None = None,
) -> FaceSet:
    """An LFW-style folder restricted to the people listed (``name<TAB>count`` lines after a count)."""
    lines = storage.read_bytes(people_file, st).decode().splitlines()
    people = []
    for line in lines[1:]:
        f = line.split()
        if len(f) == 2 and int(f[1]) >= min_images:
            people.append((f[0], int(f[1])))
    people = people[:max_identities] if max_identities else people
    images, names = [], []
    for name, count in people:
        for i in range(1, min(count, max_per_identity or count) + 1):
            images.append(storage.read_bytes(storage.join(root, name, f"{name}_{i:04d}.jpg"), st))
            names.append(name)
    if not images:
        raise ValueError(f"{people_file}: no person with at least {min_images} images")
    return FaceSet(images, _dense(names), names, root, "image_folder")


def read_faceset(url: str, st: StorageConfig | None = None) -> FaceSet:
    """A synthetic dataset (has manifest.json) or a face table (.parquet file or folder)."""
    if not url.endswith(".parquet") and storage.exists(storage.join(url, "manifest.json"), st):
        return _read_synthetic(url, st)
    return _read_face_table(url, st)
