"""dlib's pretrained ResNet face descriptor (128-d) as an identity encoder, centred then L2-normalised.

The model files come from the ``face_recognition_models`` package (PyPI, offline).  Each input is
an already aligned chip (as ``dlib.get_face_chip(size, padding=0.25)`` makes them), so no detector
runs: the 5-point landmark model is applied inside a box covering the whole image, and
``compute_face_descriptor`` re-aligns the chip from those landmarks to its 150x150 input.

Why centre.  Raw dlib descriptors are far from zero-mean: every face sits in one narrow cone, so
the cosine similarity of two *different* people is about 0.85 and of the same person about 0.96
(measured on 20 LFW DevTrain people).  The dlib model was trained for L2 distances, where that
offset does not matter, but this project compares identities by cosine similarity (identity
filtering thresholds, the context encoder's input).  Subtracting the mean descriptor before
normalising spreads the cone over the sphere: on the same faces, different people go to about
0.05 and the same person to about 0.75, the usual range of face-recognition cosines
(tests/test_encoders_dlib.py measures and prints these numbers).

Why a fixed mean.  The mean is a constant (:data:`DLIB_MEAN_DESCRIPTOR` in ``dlib_mean.py``),
computed once from one image per person of about a thousand LFW DevTrain people (never the DevTest
benchmark people) and stored in the code, rather than computed from each table being embedded.
Thus a face's embedding depends only on the face: the same image gets the same embedding in every
job, batch and worker; no reference images are needed on a cluster; and the encoder's
fingerprint (model file + mean) names the embedding space exactly.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from uiface_ray.encoders.base import EncoderConfig, EncoderError, IdentityEncoder, check_images, l2_normalize

__all__ = ["DlibResNetEncoder", "default_model_dir", "DESCRIPTOR_DIM"]

DESCRIPTOR_DIM = 128
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"
INSTALL_HINT = "install the 'dlib' extra: pip install -e '.[dlib]' (dlib-bin and face-recognition-models)"


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise EncoderError(f"the dlib encoder needs the dlib package: {INSTALL_HINT}") from exc
    return dlib


def default_model_dir() -> Path:
    """The ``models/`` folder of face_recognition_models, found without importing it.

    (``import face_recognition_models`` fails on setuptools without ``pkg_resources``.)
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(f"the dlib encoder needs the face_recognition_models package: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _local_model_file(path: str | None, storage) -> Path:
    """The recognition model as a local file (a remote URL is copied to a temporary folder once)."""
    if path is None:
        local = default_model_dir() / RECOGNITION_MODEL
    elif "://" in path and not path.startswith("file://"):
        import tempfile

        from uiface_ray.storage import read_bytes

        local = Path(tempfile.mkdtemp(prefix="uiface-dlib-")) / Path(path).name
        local.write_bytes(read_bytes(path, storage))
    else:
        local = Path(path.removeprefix("file://"))
    if not local.is_file():
        raise EncoderError(f"dlib recognition model not found: {local} (expected {RECOGNITION_MODEL})")
    return local


class DlibResNetEncoder(IdentityEncoder):
    """dlib ResNet descriptors of aligned chips, minus the fixed mean descriptor, L2-normalised (128-d)."""

    def __init__(self, model_file: str | Path, landmark_file: str | Path | None = None, centre: bool = True):
        dlib = _import_dlib()
        self._dlib = dlib
        model_file = Path(model_file)
        landmark_file = Path(landmark_file or default_model_dir() / LANDMARK_MODEL)
        try:
            self._recognizer = dlib.face_recognition_model_v1(str(model_file))
            self._landmarks = dlib.shape_predictor(str(landmark_file))
        except RuntimeError as exc:
            raise EncoderError(f"cannot load dlib model {model_file} / {landmark_file}: {exc}") from exc
        from uiface_ray.encoders.dlib_mean import DLIB_MEAN_DESCRIPTOR

        self.mean = np.asarray(DLIB_MEAN_DESCRIPTOR, dtype=np.float32) if centre else np.zeros(128, np.float32)
        self.dim = DESCRIPTOR_DIM
        self.name = "dlib-resnet-v1" + ("" if centre else "-raw")
        digest = hashlib.sha256(model_file.read_bytes())
        digest.update(landmark_file.read_bytes())
        digest.update(self.mean.tobytes())
        self.fingerprint = digest.hexdigest()[:12]

    @classmethod
    def from_config(cls, spec: EncoderConfig, storage=None) -> "DlibResNetEncoder":
        if spec.device not in ("cpu",):
            raise EncoderError(f"encoder.device {spec.device!r}: the dlib encoder runs on 'cpu' only")
        return cls(_local_model_file(spec.path, storage))

    def raw_descriptors(self, images: np.ndarray) -> np.ndarray:
        """dlib's own 128-d descriptors (not centred, not normalised), float32 ``(B, 128)``."""
        images = check_images(images, self.name)
        out = np.zeros((len(images), DESCRIPTOR_DIM), dtype=np.float32)
        for i, chip in enumerate(images):
            chip = np.ascontiguousarray(chip)
            h, w = chip.shape[:2]
            whole = self._dlib.rectangle(0, 0, w - 1, h - 1)  # the chip is the face: no detector
            shape = self._landmarks(chip, whole)
            out[i] = np.asarray(self._recognizer.compute_face_descriptor(chip, shape), dtype=np.float32)
        return out

    def embed(self, images: np.ndarray) -> np.ndarray:
        raw = self.raw_descriptors(images)  # (B, 128)
        return l2_normalize(raw - self.mean[None, :])
