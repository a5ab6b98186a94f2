"""Strict key mapping from the UIFace release's checkpoints to our modules.

Diffusion checkpoint (``model_<step>.ckpt`` or ``ema_averaged_model_<step>.ckpt``): the state dict
of the release's diffusion wrapper, keys possibly prefixed ``module.`` and ``eps_model.``; beside
the UNet's keys it holds the wrapper's noise-schedule buffers (:data:`SCHEDULE_KEYS`), which are
checked against the linear schedule we sample with and otherwise dropped.  Every other key must
fill exactly one parameter of :class:`~uiface_ray.release.unet.OfficialUNet` or
:class:`~uiface_ray.model.context.ProjectedContextEncoder`, with its shape; the release's
``Conv1d`` 1x1 attention projections become our ``Linear`` weights (the same numbers).

VQ-f4 files (``first_stage_encoder_state_dict.pt``, ``..._decoder_...``): LDM ``Encoder``/``Decoder``
keys (``down.i.block.j``, ``mid.attn_1.q``, ...) mapped onto a diffusers ``VQModel``.
Files are read with ``torch.load(weights_only=True)``: a pickle that would run code is refused.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings

import torch
from diffusers import VQModel

from uiface_ray.model.bundle import ModelLoadError
from uiface_ray.schedule import release_alpha_bars

__all__ = [
    "SCHEDULE_KEYS",
    "CheckpointError",
    "load_release_checkpoint",
    "load_release_vq",
    "official_vq_model",
    "read_state_dict",
    "release_schedule",
    "release_state_dict",
    "release_vq_state_dicts",
    "strip_prefixes",
]

SCHEDULE_KEYS = (
    "betas",
    "alphas",
    "sigmas",
    "sqrt_alphas_inv",
    "alpha_bars",
    "sqrt_alpha_bars",
    "sqrt_one_minus_alpha_bars",
    "one_minus_alphas_over_sqrt_one_minus_alpha_bars",
)
CONTEXT_KEYS = {
    "context_emb.weight": "proj_in.weight",
    "context_emb.bias": "proj_in.bias",
    "empty_context_embedding": "empty_context",
}
_ATTN_PROJ = re.compile(r"\.(self|cross)_attention\.(to_q|to_k|to_v|proj_out)\.weight$")  # Conv1d 1x1 weights
_ATTN_OUT = re.compile(r"\.(self|cross)_attention\.proj_out\.")


class CheckpointError(ModelLoadError):
    """A release checkpoint cannot be used; the message names the file and the key."""


# --------------------------------------------------------------------------------------------
# Reading


def read_state_dict(data: bytes | str, name: str) -> dict[str, torch.Tensor]:
    """A ``{key: tensor}`` dict from a ``torch.save`` file, never executing pickled code."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols is noise for a user
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{name}: refused to load: the pickle holds more than tensors ({first[:160]})") from None
    except Exception as exc:  # truncated zip, not a torch file at all
        raise CheckpointError(f"{name}: not a readable torch checkpoint ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise CheckpointError(f"{name}: expected a state dict of named tensors, got {type(state).__name__}")
    return state


def strip_prefixes(key: str) -> str:
    """Drop the ``module.`` (DDP) and ``eps_model.`` (diffusion wrapper) prefixes, in any order."""
    changed = True
    while changed:
        changed = False
        for prefix in ("module.", "eps_model."):
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


# --------------------------------------------------------------------------------------------
# Diffusion checkpoint


def release_schedule(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> dict[str, torch.Tensor]:
    """The release's schedule buffers for linear betas, computed as the release does (float32)."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    alphas = 1 - betas
    alpha_bars = release_alpha_bars(betas)  # exp(cumsum(log alpha)), float32
    sqrt_one_minus = (1 - alpha_bars).sqrt()
    return {
        "betas": betas,
        "alphas": alphas,
        "sigmas": betas.sqrt(),
        "sqrt_alphas_inv": 1 / alphas.sqrt(),
        "alpha_bars": alpha_bars,
        "sqrt_alpha_bars": alpha_bars.sqrt(),
        "sqrt_one_minus_alpha_bars": sqrt_one_minus,
        "one_minus_alphas_over_sqrt_one_minus_alpha_bars": (1 - alphas) / sqrt_one_minus,
    }


def _our_key(release_key: str) -> str:
    return _ATTN_OUT.sub(lambda m: f".{m.group(1)}_attention.to_out.0.", release_key)


def release_state_dict(
    unet, context_encoder, prefix: str = "eps_model.", schedule: bool = True, num_train_timesteps: int = 1000
) -> dict:
    """Our modules' weights under the release's key names (the inverse of the import; tests, parity checks)."""
    out = {}
    for key, value in unet.state_dict().items():
        release = key.replace(".to_out.0.", ".proj_out.")
        if _ATTN_PROJ.search(release):
            value = value[..., None]  # Linear (out, in) -> Conv1d (out, in, 1)
        out[prefix + release] = value.detach().clone()
    context = context_encoder.state_dict()
    for release, ours in CONTEXT_KEYS.items():
        out[prefix + release] = context[ours].detach().clone()
    if schedule:
        out.update(release_schedule(num_train_timesteps))
    return out


def _check_schedule(state: dict, name: str, scheduler_config: dict) -> None:
    expected = release_schedule(
        scheduler_config["num_train_timesteps"], scheduler_config["beta_start"], scheduler_config["beta_end"]
    )
    for key in SCHEDULE_KEYS:
        if key not in state:
            continue  # the wrapper's buffers are optional: a bare UNet state dict has none
        value = state[key].float()
        if value.shape != expected[key].shape or not torch.allclose(value, expected[key], rtol=1e-4, atol=1e-7):
            raise CheckpointError(
                f"{name}: schedule buffer {key!r} is not the linear schedule beta {scheduler_config['beta_start']}"
                f"..{scheduler_config['beta_end']} over T={scheduler_config['num_train_timesteps']} we sample with"
            )


def load_release_checkpoint(state: dict, name: str, unet, context_encoder, scheduler_config: dict) -> None:
    """Fill ``unet`` and ``context_encoder`` from a release state dict; strict, naming the key on error."""
    stripped: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}  # stripped key -> the key as written in the file (for messages)
    for key, value in state.items():
        short = strip_prefixes(key)
        if short in stripped:
            raise CheckpointError(f"{name}: key {key!r} appears twice once prefixes are removed")
        stripped[short], original[short] = value, key
    _check_schedule(stripped, name, scheduler_config)
    targets = {**{k: ("unet", k) for k in unet.state_dict()}, **{k: ("context", v) for k, v in CONTEXT_KEYS.items()}}
    ours = {"unet": unet.state_dict(), "context": context_encoder.state_dict()}
    filled = {"unet": {}, "context": {}}
    unknown = []
    for key, value in stripped.items():
        if key in SCHEDULE_KEYS:
            continue
        mapped = _our_key(key)  # the release's name, or ours where an attention projection differs
        if mapped not in targets:
            unknown.append(original[key])
            continue
        part, target = targets[mapped]
        if _ATTN_PROJ.search(key) and value.ndim == 3 and value.shape[-1] == 1:
            value = value[..., 0]  # Conv1d (out, in, 1) -> Linear (out, in)
        want = ours[part][target].shape
        if tuple(value.shape) != tuple(want):
            raise CheckpointError(
                f"{name}: key {original[key]!r} has shape {tuple(value.shape)}, expected {tuple(want)}"
            )
        filled[part][target] = value.to(torch.float32)
    if unknown:
        raise CheckpointError(
            f"{name}: {len(unknown)} unexpected key(s), e.g. {unknown[:3]} (not in the release's "
            "UNet layout; a different model config?)"
        )
    for part, module_state in ours.items():
        missing = sorted(set(module_state) - set(filled[part]))
        if missing:
            release_names = [k.replace(".to_out.0.", ".proj_out.") for k in missing]
            if part == "context":
                release_names = [r for r, o in CONTEXT_KEYS.items() if o in missing]
            raise CheckpointError(f"{name}: {len(missing)} missing key(s), e.g. {release_names[:3]}")
    unet.load_state_dict(filled["unet"], strict=True)
    context_encoder.load_state_dict(filled["context"], strict=True)


# --------------------------------------------------------------------------------------------
# VQ-f4 autoencoder


def official_vq_model(
    image_size: int = 128, block_out_channels: tuple[int, ...] = (128, 256, 512), num_vq_embeddings: int = 8192
) -> VQModel:
    """A diffusers ``VQModel`` in the release's LDM VQ-f4 configuration (no scaling: factor 1.0)."""
    levels = len(block_out_channels)
    return VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=2,
        latent_channels=3,
        num_vq_embeddings=num_vq_embeddings,
        vq_embed_dim=3,
        norm_num_groups=32,
        sample_size=image_size,
        scaling_factor=1.0,
    )


def _resnet_map(ldm: str, ours: str, out: dict) -> None:
    for part in ("norm1", "conv1", "norm2", "conv2"):
        for p in ("weight", "bias"):
            out[f"{ldm}.{part}.{p}"] = f"{ours}.{part}.{p}"
    for p in ("weight", "bias"):
        out[f"{ldm}.nin_shortcut.{p}"] = f"{ours}.conv_shortcut.{p}"


def _mid_map(side: str, out: dict) -> None:
    _resnet_map(f"{side}.mid.block_1", f"{side}.mid_block.resnets.0", out)
    _resnet_map(f"{side}.mid.block_2", f"{side}.mid_block.resnets.1", out)
    names = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
    for ldm, ours in names.items():
        for p in ("weight", "bias"):
            out[f"{side}.mid.attn_1.{ldm}.{p}"] = f"{side}.mid_block.attentions.0.{ours}.{p}"
    for ldm, ours in (("conv_in", "conv_in"), ("norm_out", "conv_norm_out"), ("conv_out", "conv_out")):
        for p in ("weight", "bias"):
            out[f"{side}.{ldm}.{p}"] = f"{side}.{ours}.{p}"


def _vq_key_maps(vq: VQModel) -> tuple[dict, dict]:
    """(LDM encoder key -> ours, LDM decoder key -> ours) for every key that can exist."""
    levels, blocks = len(vq.config.block_out_channels), vq.config.layers_per_block
    enc: dict[str, str] = {}
    _mid_map("encoder", enc)
    for i in range(levels):
        for j in range(blocks):
            _resnet_map(f"encoder.down.{i}.block.{j}", f"encoder.down_blocks.{i}.resnets.{j}", enc)
        for p in ("weight", "bias"):
            enc[f"encoder.down.{i}.downsample.conv.{p}"] = f"encoder.down_blocks.{i}.downsamplers.0.conv.{p}"
    for p in ("weight", "bias"):
        enc[f"quant_conv.{p}"] = f"quant_conv.{p}"
    dec: dict[str, str] = {"quantize.embedding.weight": "quantize.embedding.weight"}
    _mid_map("decoder", dec)
    for i in range(levels):
        k = levels - 1 - i  # LDM's up[i] is the level i; diffusers' up_blocks run from the lowest resolution
        for j in range(blocks + 1):
            _resnet_map(f"decoder.up.{i}.block.{j}", f"decoder.up_blocks.{k}.resnets.{j}", dec)
        for p in ("weight", "bias"):
            dec[f"decoder.up.{i}.upsample.conv.{p}"] = f"decoder.up_blocks.{k}.upsamplers.0.conv.{p}"
            dec[f"post_quant_conv.{p}"] = f"post_quant_conv.{p}"
    return enc, dec


def _attn_conv(key: str) -> bool:
    return ".mid.attn_1." in key and key.endswith(".weight") and not key.split(".")[-2] == "norm"


def load_release_vq(
    vq: VQModel, encoder_state: dict, encoder_name: str, decoder_state: dict, decoder_name: str
) -> None:
    """Fill a diffusers VQModel from the release's separate encoder and decoder state dicts (strict)."""
    ours = vq.state_dict()
    filled: dict[str, torch.Tensor] = {}
    for state, name, mapping in zip((encoder_state, decoder_state), (encoder_name, decoder_name), _vq_key_maps(vq)):
        unknown = [k for k in state if k not in mapping or mapping[k] not in ours]
        if unknown:
            raise CheckpointError(f"{name}: {len(unknown)} unexpected key(s), e.g. {unknown[:3]}")
        for key, value in state.items():
            target = mapping[key]
            if _attn_conv(key) and value.ndim == 4:
                value = value[:, :, 0, 0]  # Conv2d 1x1 -> Linear
            if tuple(value.shape) != tuple(ours[target].shape):
                raise CheckpointError(
                    f"{name}: key {key!r} has shape {tuple(value.shape)}, expected {tuple(ours[target].shape)}"
                )
            filled[target] = value.to(torch.float32)
        side = {v for v in mapping.values() if v in ours}
        missing = sorted(side - set(filled))
        if missing:
            inverse = {v: k for k, v in mapping.items()}
            raise CheckpointError(f"{name}: {len(missing)} missing key(s), e.g. {[inverse[m] for m in missing[:3]]}")
    vq.load_state_dict(filled, strict=True)


def release_vq_state_dicts(vq: VQModel) -> tuple[dict, dict]:
    """(encoder, decoder) state dicts of a VQModel under the release's LDM key names (tests, parity)."""
    ours = vq.state_dict()
    result = []
    for mapping in _vq_key_maps(vq):
        state = {}
        for ldm, target in mapping.items():
            if target in ours:
                value = ours[target].detach().clone()
                state[ldm] = value[:, :, None, None] if _attn_conv(ldm) else value
        result.append(state)
    return result[0], result[1]
