"""The generator: identity context encoder with learnable empty context, UNet builder (diffusers' UNet,
or the official release's architecture of ``uiface_ray.release.unet`` with ``ModelConfig.unet="release"``),
bundle save/load, autoencoders.  The release's import and export live in ``uiface_ray.release``.
Names are imported on first use (``uiface_ray._lazy``): the config alone imports no torch."""

from uiface_ray._lazy import lazy_exports

_EXPORTS = {
    "IdentityContextEncoder": "context",
    "ModelConfig": "config",
    "ModelLoadError": "bundle",
    "ProjectedContextEncoder": "context",
    "ReleaseUNetConfig": "config",
    "UIFaceModel": "bundle",
    "build_model": "unet",
    "load_model": "bundle",
    "model_hash": "bundle",
    "save_model": "bundle",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
