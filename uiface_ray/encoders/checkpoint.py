"""Read a state dict without running pickled code, and load it with one clear error on mismatch.

Accepted files: PyTorch ``.pt``/``.pth`` (read with ``torch.load(..., weights_only=True)``, which
refuses arbitrary pickled objects) and ``.safetensors``.  A leading ``module.`` (saved from
``DataParallel``/``DistributedDataParallel``) is stripped; a ``{"state_dict": ...}`` wrapper is
unwrapped.  Files may be local paths or any storage URL (``s3://``...).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
from typing import Mapping

import torch
from torch import nn

from uiface_ray.errors import InputError
from uiface_ray.config import StorageConfig
from uiface_ray.storage import read_bytes

__all__ = ["CheckpointError", "read_state_dict", "load_state_strict", "state_fingerprint"]

SAFETENSORS_SUFFIX = ".safetensors"
# BatchNorm step counters: absent from checkpoints saved by old PyTorch, unused at inference.
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


class CheckpointError(InputError, ValueError):
    """A checkpoint cannot be read or does not match the model; the message names the file."""


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def read_state_dict(url: str, storage: StorageConfig | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, with a leading ``module.`` removed from every key."""
    data = read_bytes(url, storage)
    try:
        if url.endswith(SAFETENSORS_SUFFIX):
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            with warnings.catch_warnings():  # torch's note on the pickle protocol is noise to a user
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's weights_only refusal runs to several lines of advice; one line is enough here
        raise CheckpointError(
            f"refusing checkpoint {url}: it holds pickled objects beyond tensors and plain "
            f"containers, which could run code on load ({_first_line(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - re-raised naming the file
        raise CheckpointError(f"cannot read checkpoint {url}: {type(exc).__name__}: {_first_line(exc)}") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {url} is not a state dict of tensors (got {type(state).__name__})")
    return _strip_prefix(state)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _short_list(keys: list[str], most: int = 8) -> str:
    shown = ", ".join(keys[:most])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > most else "")


def load_state_strict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str | None = None
) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is one error naming ``source``."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIXES))
    unexpected = sorted(k for k in state if k not in expected)
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short_list(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes: {_short_list(shapes)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not match {what or type(model).__name__}: " + "; ".join(problems)
        )
    model.load_state_dict(dict(state), strict=False)


def state_fingerprint(state: Mapping[str, torch.Tensor], length: int = 12) -> str:
    """A short hash of the weights (names, shapes and values), independent of the file format."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous().reshape(-1)  # (numel,)
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:length]
