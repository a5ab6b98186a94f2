"""Embed with an encoder actor killed mid-run (issue 33): the worker process of an actor that is
running a block (its process title ``ray::EncoderActor.embed``) gets SIGKILL by its pid; the job
finishes by itself and writes the same bytes as a clean run.  Before, one dead encoder actor ended the
embed job.

Byte-identical, not only row-identical: a block's embeddings depend only on its images and the
encoder's weights (one torch thread in every actor), whichever actor (or restarted actor) computed
them, and the blocks are written in the table's order, so the Parquet file is the same bytes.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tiny_assets import descendants
import torch

from uiface_ray.data import PrepareFacesConfig, prepare_faces
from uiface_ray.encoders import EncoderConfig, build_iresnet
from uiface_ray.encoders.config import EmbedConfig
from uiface_ray.runtime.embed import run_embed
from uiface_ray.storage import read_table

PEOPLE, PER_PERSON = 4, 12  # 48 images in blocks of 2: 24 tasks


def _faces(tmp_path: Path) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    for p in range(PEOPLE):
        folder = tmp_path / "folders" / f"person{p}"
        folder.mkdir(parents=True)
        for i in range(PER_PERSON):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
            (folder / f"{i}.png").write_bytes(buf.getvalue())
    out = str(tmp_path / "faces.parquet")
    prepare_faces(PrepareFacesConfig(input=str(tmp_path / "folders"), resolution=48, output=out), log=lambda _m: None)
    return out


def _cfg(faces: str, checkpoint: str, out: Path) -> EmbedConfig:
    encoder = EncoderConfig(kind="iresnet", path=checkpoint, depth=18, embedding_dim=16)
    return EmbedConfig(input=faces, output=str(out), encoder=encoder, num_actors=2, block_size=2)


def _kill_a_busy_encoder(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL to the first encoder actor seen running a block (once)."""
    while not stop.is_set() and not killed:
        for pid, args in descendants(os.getpid()):
            if args.startswith("ray::EncoderActor.embed"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


@pytest.mark.slow
def test_an_encoder_actor_killed_mid_embed_does_not_end_the_job(ray_local, tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "backbone.pth"
    torch.save(build_iresnet(18, 16).state_dict(), checkpoint)
    faces = _faces(tmp_path)

    clean = tmp_path / "clean.parquet"
    run_embed(_cfg(faces, str(checkpoint), clean), log=lambda _m: None)

    out = tmp_path / "killed.parquet"
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_busy_encoder, args=(stop, killed), daemon=True)
    killer.start()
    try:
        result = run_embed(_cfg(faces, str(checkpoint), out), log=lambda _m: None)
    finally:
        stop.set()
        killer.join(timeout=30)
    assert killed, "no encoder actor was seen running a block: the test proved nothing"
    assert result.images == PEOPLE * PER_PERSON
    assert out.read_bytes() == clean.read_bytes()
    assert read_table(str(out)).num_rows == PEOPLE * PER_PERSON
