"""dlib's ResNet descriptor on real LFW DevTrain faces: genuine pairs closer than impostors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from uiface_ray.encoders import EncoderConfig, EncoderError, load_encoder

pytest.importorskip("dlib", reason="the dlib extra is not installed (pip install -e '.[dlib]')")


def devtrain_faces(lfw_dir, people: int = 20, per_person: int = 3):
    """The first ``people`` DevTrain people with at least 2 images, up to ``per_person`` each."""
    lines = (lfw_dir / "peopleDevTrain.txt").read_text().splitlines()[1:]
    names = [name for name, n in (line.split("\t") for line in lines) if int(n) >= 2][:people]
    images, labels = [], []
    for k, name in enumerate(names):
        for path in sorted((lfw_dir / "images" / name).glob("*.jpg"))[:per_person]:
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(k)
    return np.stack(images), np.array(labels)


def pair_similarities(embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    sims = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    return float(sims[same & off_diagonal].mean()), float(sims[~same].mean())


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderConfig(kind="dlib"))


@pytest.fixture(scope="module")
def faces(lfw_dir):
    return devtrain_faces(lfw_dir)


def test_genuine_pairs_closer_than_impostors(encoder, faces, record_property):
    images, labels = faces
    assert len(np.unique(labels)) == 20 and len(images) >= 40
    emb = encoder.embed(images)
    assert emb.shape == (len(images), 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    genuine, impostor = pair_similarities(emb, labels)
    raw = encoder.raw_descriptors(images)
    raw_genuine, raw_impostor = pair_similarities(raw / np.linalg.norm(raw, axis=1, keepdims=True), labels)
    report = (
        f"dlib on {len(images)} chips of 20 DevTrain people: centred cosine genuine {genuine:.3f} "
        f"impostor {impostor:.3f}; raw cosine genuine {raw_genuine:.3f} impostor {raw_impostor:.3f}"
    )
    print(report)
    record_property("dlib_similarities", report)
    assert genuine > impostor + 0.3
    # Centring spreads the cone: impostors near zero, a wider genuine/impostor gap than raw cosine.
    assert abs(impostor) < 0.2
    assert genuine - impostor > raw_genuine - raw_impostor
    # Nearest neighbour (leave-one-out) is mostly the same person.
    sims = emb @ emb.T
    np.fill_diagonal(sims, -2)
    assert (labels[sims.argmax(1)] == labels).mean() > 0.8


def test_stored_mean_matches_these_faces(encoder, faces):
    """The fixed mean (from other DevTrain people) points where these faces' raw mean points."""
    raw = encoder.raw_descriptors(faces[0][:30])
    here = raw.mean(0)
    cosine = float(here @ encoder.mean / np.linalg.norm(here) / np.linalg.norm(encoder.mean))
    assert cosine > 0.95, cosine


def test_deterministic_and_fingerprinted(encoder, faces):
    images = faces[0][:3]
    np.testing.assert_array_equal(encoder.embed(images), encoder.embed(images))
    assert len(encoder.fingerprint) == 12 and encoder.info()["dim"] == 128
    assert encoder.info()["kind"] == "dlib"


def test_bad_inputs(encoder, tmp_path, monkeypatch):
    with pytest.raises(EncoderError, match=r"\(B, H, W, 3\), got shape \(2, 112, 112\)"):
        encoder.embed(np.zeros((2, 112, 112), dtype=np.uint8))
    with pytest.raises(EncoderError, match="dtype uint8, got float32"):
        encoder.embed(np.zeros((1, 112, 112, 3), dtype=np.float32))
    with pytest.raises(EncoderError, match="not found: .*nowhere.dat"):
        load_encoder(EncoderConfig(kind="dlib", path=str(tmp_path / "nowhere.dat")))
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"not a dlib model")
    with pytest.raises(EncoderError, match="cannot load dlib model .*bad.dat"):
        load_encoder(EncoderConfig(kind="dlib", path=str(bad)))
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if the extra were not installed
    with pytest.raises(EncoderError, match="install the 'dlib' extra"):
        load_encoder(EncoderConfig(kind="dlib"))
