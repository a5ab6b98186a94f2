"""Prepare faces: an image-folder tree or an insightface ``train.rec`` -> a face table (Parquet).

Everything is read and checked before anything is written; the table is written in one atomic
step, so a failure leaves no output.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from uiface_ray.data.config import PrepareFacesConfig
from uiface_ray.data.face_table import FaceTableBuilder, FaceTableSummary
from uiface_ray.data.image_folder import FaceDataError, read_people_list, scan_image_folder
from uiface_ray.data.images import prepare_image
from uiface_ray.data.recordio import RecordIOReader
from uiface_ray.progress import progress_text
from uiface_ray.storage import read_bytes

__all__ = ["PrepareFacesConfig", "PrepareResult", "prepare_faces"]


@dataclass(frozen=True)
class PrepareResult:
    table: FaceTableSummary
    source_kind: str
    seconds: float


def _log(message: str) -> None:
    print(f"[prepare_faces] {message}", file=sys.stderr, flush=True)


def _add_folder_faces(cfg: PrepareFacesConfig, builder: FaceTableBuilder, log: Callable[[str], None]) -> None:
    people = None
    if cfg.people_file:
        people = [name for name, _ in read_people_list(cfg.people_file, cfg.storage)]
    scan = scan_image_folder(
        cfg.input,
        people,
        cfg.min_images,
        cfg.max_identities,
        cfg.max_images_per_identity,
        cfg.storage,
        people_source=f"people_file {cfg.people_file}",
    )
    total = sum(len(ident.files) for ident in scan.identities)
    log(f"{cfg.input}: {scan.summary()}")
    start, last = time.perf_counter(), time.perf_counter()
    for ident in scan.identities:
        for url in ident.files:
            face = prepare_image(read_bytes(url, cfg.storage), url, cfg.resolution, cfg.image_format, cfg.jpeg_quality)
            builder.add(ident.name, url, face)
            if time.perf_counter() - last > 10:
                log(progress_text(len(builder), total, time.perf_counter() - start))
                last = time.perf_counter()


def _add_rec_faces(cfg: PrepareFacesConfig, builder: FaceTableBuilder, log: Callable[[str], None]) -> None:
    with RecordIOReader(cfg.input, cfg.idx, cfg.storage) as reader:
        items = [(reader.record_index(i), item.label, item.image) for i, item in enumerate(reader)]
    log(f"{len(items)} images read from {cfg.input}")
    counts = Counter(label for _, label, _ in items)
    kept = sorted(label for label, n in counts.items() if n >= cfg.min_images)[: cfg.max_identities]
    per_label: dict[float, list[tuple[int, bytes]]] = {label: [] for label in kept}
    for index, label, image in items:
        if label in per_label:
            per_label[label].append((index, image))
    for label in kept:
        for index, image in per_label[label][: cfg.max_images_per_identity]:
            source = f"rec:{index}"
            face = prepare_image(
                image, f"{cfg.input} record {index}", cfg.resolution, cfg.image_format, cfg.jpeg_quality
            )
            builder.add(f"{int(label)}", source, face)


def prepare_faces(cfg: PrepareFacesConfig, log: Callable[[str], None] = _log) -> PrepareResult:
    """Read, filter, resize and write the face table ``cfg.output``; returns what was written."""
    start = time.perf_counter()
    kind = cfg.format if cfg.format != "auto" else ("rec" if cfg.input.endswith(".rec") else "folder")
    builder = FaceTableBuilder()
    if kind == "rec" and cfg.people_file:
        raise FaceDataError(f"people_file {cfg.people_file} applies to image folders, not to {cfg.input}")
    if kind == "rec":
        _add_rec_faces(cfg, builder, log)
    else:
        _add_folder_faces(cfg, builder, log)
    if not len(builder):
        raise FaceDataError(f"{cfg.input}: no identity has at least {cfg.min_images} images; nothing to write")
    provenance = {
        "input": cfg.input,
        "format": kind,
        "people_file": cfg.people_file,
        "min_images": cfg.min_images,
        "resolution": cfg.resolution,
        "image_format": cfg.image_format,
    }
    summary = builder.write(cfg.output, provenance, cfg.storage)
    seconds = time.perf_counter() - start
    log(
        f"wrote {summary.images} images of {summary.identities} identities to {summary.output} "
        f"({summary.num_bytes / 1e6:.1f} MB) in {seconds:.1f} s"
    )
    return PrepareResult(summary, kind, seconds)
