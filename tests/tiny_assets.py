"""Tiny synthesis inputs on disk for tests: a random-weight 16x16 model and a small identity table.

``make_tiny_synthesis_inputs(dir) -> (model_url, identities_url)`` is a stable helper that other
test files (e.g. the deploy tests' ``ray job submit`` run) reuse.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from uiface_ray.identities.filtering import GreedyIdentityFilter
from uiface_ray.identities.table import write_identity_table

TINY_EMBEDDING_DIM = 128


def make_tiny_model(url: str, seed: int = 0, embedding_dim: int = TINY_EMBEDDING_DIM) -> str:
    """Save a freshly initialised tiny generator (16x16, 32/64 channels) at ``url``."""
    from uiface_ray.model import ModelConfig, build_model, save_model

    encoder = {"kind": "test", "dim": embedding_dim, "fingerprint": "tiny-test"}
    save_model(build_model(ModelConfig.tiny(embedding_dim=embedding_dim), encoder, seed=seed), url)
    return url


def make_tiny_vq(folder: str | Path) -> str:
    """Save a random-weight diffusers VQModel (downscale 2, 3 latent channels) with save_pretrained."""
    from diffusers import VQModel

    VQModel(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        latent_channels=3,
        num_vq_embeddings=16,
        sample_size=16,
    ).eval().save_pretrained(folder)
    return str(folder)


def make_tiny_identities(url: str, num_identities: int = 4, dim: int = TINY_EMBEDDING_DIM, seed: int = 0) -> str:
    """Write an identity table of ``num_identities`` random unit embeddings at ``url``."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((num_identities, dim)).astype(np.float32)
    filt = GreedyIdentityFilter(num_identities, dim, similarity_threshold=1.01)
    filt.offer(emb, rng.integers(0, 2**31, num_identities))
    write_identity_table(url, filt.result(), {"kind": "test", "dim": dim, "fingerprint": "tiny-test"})
    return url


def make_tiny_synthesis_inputs(directory: str | Path, num_identities: int = 4) -> tuple[str, str]:
    """A tiny model and a matching identity table under ``directory``; returns their URLs."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_url = make_tiny_model(str(directory / "model"))
    identities_url = make_tiny_identities(str(directory / "identities.parquet"), num_identities)
    return model_url, identities_url


def wait_cpus_free(ray, n: float = 2.0, timeout: float = 60.0) -> None:
    """Wait until ``n`` CPUs of the local Ray are free again (killed actors release them shortly after)."""
    deadline = time.time() + timeout
    while ray.available_resources().get("CPU", 0) < n:
        assert time.time() < deadline, f"actors still hold CPUs: {ray.available_resources()}"
        time.sleep(0.2)


def descendants(root: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every process below ``root`` (this test's own Ray, a node's ``ray
    start``), read from /proc (``ps`` cuts its lines to the terminal's width, a long venv path's
    binary name included): tests find what to kill by ancestry, never by name alone."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
        commands[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    family, found = {root}, True
    while found:
        found = False
        for pid, ppid in parents.items():
            if ppid in family and pid not in family:
                family.add(pid)
                found = True
    return [(pid, commands[pid]) for pid in sorted(family - {root}) if commands[pid]]
