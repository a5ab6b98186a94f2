"""Real face data: image folders, insightface RecordIO (.rec/.idx), and the face table they become."""

from uiface_ray._lazy import lazy_exports

_EXPORTS = {
    "EncodedFace": "images",
    "FACE_TABLE_COLUMNS": "face_table",
    "FaceDataError": "image_folder",
    "FaceTableBuilder": "face_table",
    "FaceTableSummary": "face_table",
    "IdentityFiles": "image_folder",
    "ImageError": "images",
    "PrepareFacesConfig": "config",
    "PrepareResult": "prepare",
    "RecordIOError": "recordio",
    "RecordIOReader": "recordio",
    "RecordItem": "recordio",
    "decode_batch": "images",
    "decode_rgb": "images",
    "prepare_faces": "prepare",
    "prepare_image": "images",
    "read_people_list": "image_folder",
    "scan_image_folder": "image_folder",
    "write_recordio": "recordio",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
