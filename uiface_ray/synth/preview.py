"""``preview.png`` beside a finished dataset's manifest: a few identities x a few images, each with its t0.

Read from the first shards (in index order) once the manifest is complete; written with one atomic
write.  The dataset's bytes do not depend on it: a rerun of a complete dataset writes it only if it
is missing, and the export copies it.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from uiface_ray import storage
from uiface_ray.synth.dataset import open_dataset
from uiface_ray.synth.shard import ShardRows, decode_image

__all__ = ["PREVIEW", "preview_png", "write_preview"]

PREVIEW = "preview.png"
LABEL_H = 12  # pixels under each image for its t0


def _pick(shards: list[ShardRows], identities: int, images: int) -> list[list[tuple[bytes, int]]]:
    """Up to ``identities`` rows of up to ``images`` (image bytes, t0), identities in order of appearance."""
    rows: dict[int, list[tuple[bytes, int]]] = {}
    for shard in shards:
        for identity, data, t0 in zip(shard.identity_id, shard.image, shard.t0):
            if int(identity) not in rows and len(rows) == identities:
                continue
            cells = rows.setdefault(int(identity), [])
            if len(cells) < images:
                cells.append((data, int(t0)))
    return list(rows.values())


def preview_png(shards: list[ShardRows], identities: int = 4, images: int = 4) -> bytes:
    """The grid as PNG bytes: one row per identity, one column per image, ``t0=...`` under each."""
    grid = _pick(shards, identities, images)
    first = decode_image(grid[0][0][0])  # (H, W, 3)
    h, w = first.shape[:2]
    cols = max(len(r) for r in grid)
    canvas = Image.new("RGB", (cols * w, len(grid) * (h + LABEL_H)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, cells in enumerate(grid):
        for j, (data, t0) in enumerate(cells):
            pixels = decode_image(data)  # (H, W, 3) uint8
            canvas.paste(Image.fromarray(np.ascontiguousarray(pixels)), (j * w, i * (h + LABEL_H)))
            label = f"t0={t0}" if draw.textlength(f"t0={t0}") <= w - 2 else str(t0)  # small images: the number
            draw.text((j * w + 1, i * (h + LABEL_H) + h), label, fill="black")
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def write_preview(url: str, storage_cfg=None, identities: int = 4, images: int = 4) -> str:
    """Write ``<url>/preview.png`` from a complete dataset's first shards (kept if already there)."""
    target = storage.join(url, PREVIEW)
    if storage.exists(target, storage_cfg):
        return target
    shards: list[ShardRows] = []
    for shard in open_dataset(url, storage_cfg).iter_shards(verify=False):
        shards.append(shard)
        if len(_pick(shards, identities, images)) >= identities:
            break
    storage.write_bytes_atomic(target, preview_png(shards, identities, images), storage_cfg)
    return target
