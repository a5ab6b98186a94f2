"""Real face data: image folders, insightface RecordIO (.rec/.idx), and the face table they become."""

from uiface_ray.data.face_table import FACE_TABLE_COLUMNS, FaceTableBuilder, FaceTableSummary
from uiface_ray.data.image_folder import FaceDataError, IdentityFiles, read_people_list, scan_image_folder
from uiface_ray.data.images import EncodedFace, ImageError, decode_batch, decode_rgb, prepare_image
from uiface_ray.data.prepare import PrepareFacesConfig, PrepareResult, prepare_faces
from uiface_ray.data.recordio import RecordIOError, RecordIOReader, RecordItem, write_recordio

__all__ = [
    "FACE_TABLE_COLUMNS",
    "EncodedFace",
    "FaceDataError",
    "FaceTableBuilder",
    "FaceTableSummary",
    "IdentityFiles",
    "ImageError",
    "PrepareFacesConfig",
    "PrepareResult",
    "RecordIOError",
    "RecordIOReader",
    "RecordItem",
    "decode_batch",
    "decode_rgb",
    "prepare_faces",
    "prepare_image",
    "read_people_list",
    "scan_image_folder",
    "write_recordio",
]
