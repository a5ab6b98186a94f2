"""The generator: identity context encoder with learnable empty context, UNet builder, bundle
save/load, autoencoders; the official release's UNet (``official_unet``, trainable with
``ModelConfig.unet="release"``), its import (``official``) and the export back to its files (``release_export``).
Names are imported on first use (``uiface_ray._lazy``): the config alone imports no torch."""

from uiface_ray._lazy import lazy_exports

_EXPORTS = {
    "IdentityContextEncoder": "context",
    "ModelConfig": "config",
    "ModelLoadError": "bundle",
    "OfficialUNet": "official_unet",
    "ProjectedContextEncoder": "context",
    "ReleaseUNetConfig": "config",
    "UIFaceModel": "bundle",
    "build_model": "unet",
    "export_release": "release_export",
    "load_model": "bundle",
    "model_hash": "bundle",
    "save_model": "bundle",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
