"""The generator: identity context encoder with learnable empty context, UNet builder, bundle
save/load, autoencoders."""

from uiface_ray.model.bundle import ModelLoadError, UIFaceModel, load_model, model_hash, save_model
from uiface_ray.model.context import IdentityContextEncoder
from uiface_ray.model.unet import ModelConfig, build_model

__all__ = [
    "IdentityContextEncoder",
    "ModelConfig",
    "ModelLoadError",
    "UIFaceModel",
    "build_model",
    "load_model",
    "model_hash",
    "save_model",
]
