"""The official UIFace release (Tencent/TFace generation/uiface) and us: its UNet rebuilt as our own
module (``unet``, also trainable with ``ModelConfig.unet="release"``), the strict key mapping of its
checkpoint files (``checkpoint``), their import into one model bundle (``importer``) and the export of
a release-family model back to its files (``exporter``).  Names are imported on first use
(``uiface_ray._lazy``): the configs alone import no torch."""

from uiface_ray._lazy import lazy_exports

_EXPORTS = {
    "OfficialImportConfig": "config",
    "OfficialUNet": "unet",
    "ReleaseExportConfig": "config",
    "build_official_model": "importer",
    "export_release": "exporter",
    "import_official": "importer",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
