"""The saved generator: UNet, context encoder with c_e, noise schedule, autoencoder, info.

Layout of a model folder (local or ``s3://``), diffusers ``save_pretrained`` style::

    unet/config.json, unet/diffusion_pytorch_model.safetensors
    autoencoder/...                      (latent space only)
    context_encoder.safetensors          (includes empty_context, the learnable c_e)
    scheduler/scheduler_config.json
    uiface.json                          written last: its presence marks a complete model

The UNet is either diffusers' ``UNet2DConditionModel`` or the release's architecture
(:class:`~uiface_ray.release.unet.OfficialUNet`), named by ``uiface.json``'s ``unet_class``
(absent in older folders: the diffusers one); the context encoder's config carries its ``kind``.
``uiface.json`` holds the context encoder's sizes and ``info``: the identity encoder the model
expects (kind, dim, fingerprint), the image size, the space and the latent scaling factor.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from uiface_ray import jsonfile
from uiface_ray.errors import InputError
from uiface_ray.config import StorageConfig
from uiface_ray.model.autoencoder import (
    Autoencoder,
    decode_latents,
    encode_latents,
    load_autoencoder_dir,
)
from uiface_ray.model.context import IdentityContextEncoder, ProjectedContextEncoder, context_encoder_from_config
from uiface_ray.release.unet import OfficialUNet
from uiface_ray.storage.fs import (
    StorageError,
    exists,
    is_remote,
    join,
    local_copy,
    read_bytes,
    remove,
    upload_dir,
    write_bytes_atomic,
)

__all__ = [
    "MODEL_FORMAT",
    "ModelLoadError",
    "UIFaceModel",
    "ModelSummary",
    "default_encoder_info",
    "load_model",
    "model_hash",
    "read_model_summary",
    "save_model",
]

MODEL_FORMAT = "uiface-model/1"
#: The UNet families a model folder can hold (``uiface.json``'s ``unet_class``).
UNET_CLASSES: dict[str, type] = {"UNet2DConditionModel": UNet2DConditionModel, "OfficialUNet": OfficialUNet}
MARKER = "uiface.json"


class ModelLoadError(InputError, FileNotFoundError):
    """A model folder is missing, incomplete or inconsistent; the message names the path."""


def default_encoder_info(dim: int) -> dict:
    return {"kind": "unspecified", "dim": int(dim), "fingerprint": ""}


@dataclass
class UIFaceModel:
    """Everything needed to sample: ``unet(x_t, t, encoder_hidden_states=context_encoder(c))``."""

    unet: UNet2DConditionModel | OfficialUNet  # the diffusers family or the release's architecture
    context_encoder: IdentityContextEncoder | ProjectedContextEncoder
    scheduler_config: dict
    autoencoder: Autoencoder | None = None
    info: dict = field(default_factory=dict)
    # Set by load_model: the hash of the weights as stored, before any cast to the sampling dtype,
    # so a float16/bfloat16 copy is still identified as the model it was loaded from.
    weights_hash: str | None = None

    @property
    def embedding_dim(self) -> int:
        return self.context_encoder.embedding_dim

    @property
    def latent_scaling_factor(self) -> float:
        return float(self.info.get("latent_scaling_factor", 1.0))

    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the UNet denoises."""
        size = self.unet.config.sample_size
        return int(self.unet.config.in_channels), int(size), int(size)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "UIFaceModel":
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in self.modules():
            # nn.Module.to, not diffusers' ModelMixin.to: the latter logs a warning on every dtype cast
            # (diffusers 0.42, even with no fp32-pinned modules), noise in a healthy float16 run.
            torch.nn.Module.to(module, **kwargs)
        return self

    def modules(self) -> list[torch.nn.Module]:
        out = [self.unet, self.context_encoder]
        if self.autoencoder is not None:
            out.append(self.autoencoder)
        return out

    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] -> what the UNet denoises (the images themselves in pixel space)."""
        if self.autoencoder is None:
            return images
        return encode_latents(self.autoencoder, images, self.latent_scaling_factor, generator)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """What the UNet denoises -> images in about [-1, 1]."""
        if self.autoencoder is None:
            return latents
        return decode_latents(self.autoencoder, latents, self.latent_scaling_factor)


# --------------------------------------------------------------------------------------------
# Save


def _write_local(model: UIFaceModel, folder: Path) -> bytes:
    """Write everything but the marker into ``folder``; return the marker's bytes."""
    model.unet.save_pretrained(folder / "unet", safe_serialization=True)
    if model.autoencoder is not None:
        model.autoencoder.save_pretrained(folder / "autoencoder", safe_serialization=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.context_encoder.state_dict().items()}
    save_file(state, str(folder / "context_encoder.safetensors"))
    DDPMScheduler.from_config(model.scheduler_config).save_config(str(folder / "scheduler"))
    marker = {
        "format": MODEL_FORMAT,
        "context_encoder": model.context_encoder.config(),
        "unet_class": type(model.unet).__name__,
        "autoencoder_class": None if model.autoencoder is None else type(model.autoencoder).__name__,
        "scheduler_config": model.scheduler_config,
        "info": model.info,
        # of the weights written here, as load_model will hash them (float32): a reader learns the
        # model's identity from this file without loading the weights (read_model_summary)
        "weights_hash": _hash_modules(model),
    }
    return json.dumps(marker, indent=2, sort_keys=True).encode()


def save_model(model: UIFaceModel, url: str, storage: StorageConfig | None = None) -> None:
    """Save under a local path or ``s3://`` URL; ``uiface.json`` is written last.

    An existing marker at ``url`` is removed first, so a crash mid-save leaves a folder that
    :func:`load_model` reports as incomplete rather than a mix of old and new weights.
    """
    with tempfile.TemporaryDirectory(prefix="uiface-save-") as tmp:
        marker = _write_local(model, Path(tmp))
        remove(join(url, MARKER), storage)
        upload_dir(tmp, url, storage)
        write_bytes_atomic(join(url, MARKER), marker, storage)


# --------------------------------------------------------------------------------------------
# Load


def _no_marker(url: str) -> ModelLoadError:
    return ModelLoadError(f"no UIFace model at {url}: {MARKER} is missing (nothing saved there, or an incomplete save)")


def read_marker(folder: Path, url: str) -> dict:
    marker_file = folder / MARKER
    if not marker_file.is_file():
        raise _no_marker(url)
    return _check_marker(_read_json(marker_file, f"{url}/{MARKER}"), url)


def _check_marker(marker, url: str) -> dict:
    if not isinstance(marker, dict) or marker.get("format") != MODEL_FORMAT:
        found = marker.get("format") if isinstance(marker, dict) else type(marker).__name__
        raise ModelLoadError(f"{url}/{MARKER}: format {found!r}, expected {MODEL_FORMAT!r}")
    for key in ("context_encoder", "scheduler_config", "info"):
        if not isinstance(marker.get(key), dict):
            raise ModelLoadError(f"{url}/{MARKER}: {key!r} is missing or not an object (a damaged model folder)")
    return marker


def _read_json(path: Path, name: str):
    try:
        return _parse_json(path.read_bytes(), name)
    except OSError as exc:
        raise ModelLoadError(f"{name}: not readable ({type(exc).__name__}: {str(exc)[:120]})") from None


def _parse_json(data: bytes, name: str):
    try:
        return jsonfile.loads(data)
    except jsonfile.JSONFileError as exc:
        raise ModelLoadError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class ModelSummary:
    """What a driver needs to know of a model folder without loading its weights."""

    url: str
    weights_hash: str  # as load_model computes it (model_hash of the loaded model)
    embedding_dim: int  # of the identity embeddings the context encoder takes


def read_model_summary(url: str, storage: StorageConfig | None = None) -> ModelSummary:
    """The model's weights hash and embedding size, from ``uiface.json`` (save_model writes the hash
    there), without loading the weights.  A local folder's files are checked as :func:`load_model`
    first checks them (the JSON files parse, every safetensors file holds the bytes its header
    announces), so a damaged one is one line here; a remote folder is not downloaded for that, its
    loaders find a damaged file.  A marker without ``weights_hash`` (a folder written by hand) is
    loaded once to hash it."""
    try:
        if not exists(url, storage):
            raise ModelLoadError(f"no UIFace model at {url}: the path does not exist")
        if not exists(join(url, MARKER), storage):
            raise _no_marker(url)
        marker = _check_marker(_parse_json(read_bytes(join(url, MARKER), storage), f"{url}/{MARKER}"), url)
        if not is_remote(url):
            with local_copy(url, storage) as folder:  # the folder itself: nothing is copied
                _check_files(Path(folder), url, marker)
    except StorageError as exc:
        raise ModelLoadError(f"no UIFace model at {url}: {exc}") from exc
    dim = marker["context_encoder"].get("embedding_dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ModelLoadError(f"{url}/{MARKER}: context_encoder.embedding_dim is {dim!r}, expected a positive integer")
    weights_hash = marker.get("weights_hash")
    if not isinstance(weights_hash, str) or not weights_hash:
        weights_hash = model_hash(url, storage)
    return ModelSummary(url, weights_hash, dim)


def _require(folder: Path, rel: str, url: str) -> Path:
    path = folder / rel
    if not path.exists():
        raise ModelLoadError(f"incomplete UIFace model at {url}: {rel} is missing")
    return path


def _damaged(url: str, rel: str, exc: Exception) -> ModelLoadError:
    detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return ModelLoadError(
        f"{url}/{rel}: cannot be read ({type(exc).__name__}{': ' + detail if detail else ''}); "
        "the model folder is damaged or truncated: save or copy it again"
    )


def _load_unet(folder: Path, url: str, class_name: str) -> torch.nn.Module:
    cls = UNET_CLASSES.get(class_name)
    if cls is None:
        raise ModelLoadError(f"{url}/{MARKER}: unet_class {class_name!r} is not one of {sorted(UNET_CLASSES)}")
    unet_dir = _require(folder, "unet", url)
    _read_json(_require(folder, "unet/config.json", url), f"{url}/unet/config.json")
    for weights in sorted(unet_dir.glob("*.safetensors")):
        _check_safetensors(weights, f"{url}/unet/{weights.name}")
    try:
        return cls.from_pretrained(str(unet_dir), torch_dtype=torch.float32, low_cpu_mem_usage=False)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise _damaged(url, "unet", exc) from None


def _check_safetensors(path: Path, name: str) -> None:
    """Read the header and check the file holds every byte it announces (truncation, garbage)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                handle.get_slice(key)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ModelLoadError(
            f"{name}: not a readable safetensors file ({type(exc).__name__}); "
            "the model folder is damaged or truncated: save or copy it again"
        ) from None


def _check_files(folder: Path, url: str, marker: dict) -> None:
    """What :func:`_load_folder` checks before it builds anything, without building anything."""
    unet_dir = _require(folder, "unet", url)
    _read_json(_require(folder, "unet/config.json", url), f"{url}/unet/config.json")
    weights = sorted(unet_dir.glob("*.safetensors")) + [_require(folder, "context_encoder.safetensors", url)]
    if marker.get("autoencoder_class"):
        _read_json(_require(folder, "autoencoder/config.json", url), f"{url}/autoencoder/config.json")
        weights += sorted((folder / "autoencoder").glob("*.safetensors"))
    for path in weights:
        _check_safetensors(path, f"{url}/{path.relative_to(folder).as_posix()}")
    _read_json(_require(folder, "scheduler/scheduler_config.json", url), f"{url}/scheduler/scheduler_config.json")


def _load_context_encoder(folder: Path, url: str, marker: dict) -> torch.nn.Module:
    try:
        context_encoder = context_encoder_from_config(marker["context_encoder"])
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{url}/{MARKER}: context_encoder {exc}") from None
    path = _require(folder, "context_encoder.safetensors", url)
    _check_safetensors(path, f"{url}/context_encoder.safetensors")
    try:
        context_encoder.load_state_dict(load_file(str(path)))
    except Exception as exc:
        raise _damaged(url, "context_encoder.safetensors", exc) from None
    return context_encoder


def load_model(
    url: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    storage: StorageConfig | None = None,
) -> UIFaceModel:
    """Load a model saved by :func:`save_model` from a local path or ``s3://`` URL (eval mode).

    A remote model is downloaded to a temporary folder that is removed once the weights are in
    memory.  Every damaged file raises :class:`ModelLoadError` naming it.
    """
    try:
        if not exists(url, storage):
            raise ModelLoadError(f"no UIFace model at {url}: the path does not exist")
        with local_copy(url, storage) as folder:
            model = _load_folder(Path(folder), url)
    except StorageError as exc:
        raise ModelLoadError(f"no UIFace model at {url}: {exc}") from exc
    model.weights_hash = _hash_modules(model)
    model.to(device=device, dtype=dtype)
    for module in model.modules():
        module.eval()
    return model


def _load_folder(folder: Path, url: str) -> UIFaceModel:
    marker = read_marker(folder, url)
    # Loaded in float32 first: the model is identified by its stored weights, then cast to ``dtype``.
    unet = _load_unet(folder, url, marker.get("unet_class", "UNet2DConditionModel"))
    context_encoder = _load_context_encoder(folder, url, marker)
    autoencoder = None
    if marker.get("autoencoder_class"):
        try:
            autoencoder = load_autoencoder_dir(_require(folder, "autoencoder", url), "cpu", torch.float32)
        except ModelLoadError:
            raise
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise _damaged(url, "autoencoder", exc) from None
    scheduler_file = _require(folder, "scheduler/scheduler_config.json", url)
    saved = _read_json(scheduler_file, f"{url}/scheduler/scheduler_config.json")
    scheduler_config = {k: saved[k] for k in marker["scheduler_config"] if k in saved}
    return UIFaceModel(
        unet=unet,
        context_encoder=context_encoder,
        scheduler_config=scheduler_config,
        autoencoder=autoencoder,
        info=marker["info"],
    )


# --------------------------------------------------------------------------------------------
# Hash


def _hash_modules(model: UIFaceModel) -> str:
    digest = hashlib.sha256()
    parts = [("unet", model.unet), ("context_encoder", model.context_encoder)]
    if model.autoencoder is not None:
        parts.append(("autoencoder", model.autoencoder))
    for prefix, module in parts:
        for name, tensor in sorted(module.state_dict().items()):
            # Canonical float32 CPU bytes, so the hash does not depend on the device.
            value = tensor.detach().to("cpu", torch.float32).contiguous()
            digest.update(f"{prefix}.{name}:{tuple(value.shape)}".encode())
            digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:16]


def model_hash(model_or_url: UIFaceModel | str, storage: StorageConfig | None = None) -> str:
    """A stable 16-hex-digit content hash of the weights (UNet, context encoder incl. c_e, autoencoder).

    For a URL, the hash is recomputed from the loaded weights, not read from the marker.  A model
    from :func:`load_model` is identified by its weights as stored (float32), whatever dtype it
    was cast to for sampling: a float16 copy is the same model, not a changed one.
    """
    if isinstance(model_or_url, UIFaceModel):
        return model_or_url.weights_hash or _hash_modules(model_or_url)
    return _hash_modules(load_model(str(model_or_url), storage=storage))
