"""The generator: identity context encoder with learnable empty context, UNet builder, bundle
save/load, autoencoders; the official release's UNet (``official_unet``) and its import (``official``)."""

from uiface_ray.model.bundle import ModelLoadError, UIFaceModel, load_model, model_hash, save_model
from uiface_ray.model.context import IdentityContextEncoder, ProjectedContextEncoder
from uiface_ray.model.official_unet import OfficialUNet
from uiface_ray.model.unet import ModelConfig, build_model

__all__ = [
    "IdentityContextEncoder",
    "ModelConfig",
    "ModelLoadError",
    "OfficialUNet",
    "ProjectedContextEncoder",
    "UIFaceModel",
    "build_model",
    "load_model",
    "model_hash",
    "save_model",
]
