"""insightface verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin).

Each file is a pickle of ``(bins, issame_list)``: ``bins`` a list of 2N encoded images (bytes,
or uint8 numpy arrays of the encoded bytes) where images 2i and 2i+1 form pair i, and
``issame_list`` a list of N bools.  A pickle can run any code on load, so these are read with a
restricted unpickler: the pickle may build bytes, lists, tuples, bools and numpy arrays, and
the only globals it may name are numpy's array-reconstruction functions, ``numpy.ndarray`` and a
``numpy.dtype`` that refuses object dtypes.  Anything else is refused before it runs.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass

import numpy as np
from PIL import Image

from uiface_ray.data.images import resize_images
from uiface_ray.errors import InputError


class UnsafePickleError(InputError, pickle.UnpicklingError):
    """The pickle names a global outside the allowed set (it could run code)."""


class BinFormatError(InputError, ValueError):
    """A verification ``.bin`` is truncated, not the expected structure, or holds an undecodable image."""


def _safe_dtype(*args, **kwargs):
    dt = np.dtype(*args, **kwargs)
    if dt.hasobject:
        raise UnsafePickleError(f"refusing a numpy array of dtype {dt} (object arrays can hold code)")
    return dt


# (module, name) -> what it resolves to; numpy 2 writes numpy._core, numpy 1 wrote numpy.core.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
}


def _resolve(module: str, name: str):
    import importlib

    if (module, name) == ("numpy", "dtype"):
        return _safe_dtype
    target_module, target_name = _ALLOWED[(module, name)]
    return getattr(importlib.import_module(target_module), target_name)


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only bytes, lists, tuples, bools, numbers, strings and numpy arrays."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED and (module, name) != ("numpy", "dtype"):
            raise UnsafePickleError(
                f"refusing global {module}.{name}: a verification .bin may hold "
                f"only bytes, lists, bools and numpy arrays"
            )
        return _resolve(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing a persistent id in a verification .bin")


def restricted_loads(data: bytes, source: str = "<bin>"):
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed pickle is bad input, named
        raise BinFormatError(
            f"{source}: not a readable pickle ({type(exc).__name__}: {exc}); truncated or not a verification .bin"
        ) from None


@dataclass(frozen=True)
class BinPairs:
    images: np.ndarray  # (2N, H, W, 3) uint8; images 2i and 2i+1 are pair i
    issame: np.ndarray  # (N,) bool


def _decode(item, index: int, source: str, image_size: int | None) -> np.ndarray:
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 1:
            raise BinFormatError(
                f"{source}: image {index} is an array of {item.dtype} {item.shape}, "
                "expected the encoded bytes as a 1-D uint8 array"
            )
        item = item.tobytes()
    if not isinstance(item, (bytes, bytearray)):
        raise BinFormatError(f"{source}: image {index} is {type(item).__name__}, expected encoded bytes")
    try:
        img = Image.open(io.BytesIO(item))
        img = img.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises several kinds for bad bytes
        raise BinFormatError(f"{source}: image {index} cannot be decoded ({type(exc).__name__}: {exc})") from None
    arr = np.asarray(img, dtype=np.uint8)
    return arr if image_size is None else resize_images(arr[None], image_size)[0]


def parse_bin(data: bytes, source: str = "<bin>", image_size: int | None = 112) -> BinPairs:
    """Decode a ``.bin`` file's bytes; errors name the file and what was expected."""
    obj = restricted_loads(data, source)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise BinFormatError(f"{source}: expected a pickle of (bins, issame_list), got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, list) or not isinstance(issame, list):
        raise BinFormatError(
            f"{source}: bins and issame_list must be lists, got {type(bins).__name__}, {type(issame).__name__}"
        )
    if len(bins) != 2 * len(issame):
        raise BinFormatError(f"{source}: {len(bins)} images for {len(issame)} pairs (expected twice as many)")
    if not issame:
        raise BinFormatError(f"{source}: no pairs")
    if not all(isinstance(s, (bool, np.bool_)) for s in issame):
        raise BinFormatError(f"{source}: issame_list must hold bools")
    images = np.stack([_decode(b, i, source, image_size) for i, b in enumerate(bins)])
    return BinPairs(images=images, issame=np.asarray(issame, dtype=bool))
