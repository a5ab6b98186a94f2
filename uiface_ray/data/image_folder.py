"""Image-folder trees (one folder per identity, as ``lfw112/images``) and LFW-style people lists."""

from __future__ import annotations

from dataclasses import dataclass

from uiface_ray.errors import InputError
from uiface_ray.config import StorageConfig
from uiface_ray.data.images import IMAGE_SUFFIXES
from uiface_ray.storage import StorageError, exists, join, list_files, read_bytes

__all__ = ["FaceDataError", "IdentityFiles", "read_people_list", "scan_image_folder"]


class FaceDataError(InputError, ValueError):
    """Face data (folder tree, people list, RecordIO) is missing or malformed; the message names it."""


@dataclass(frozen=True)
class IdentityFiles:
    name: str
    files: tuple[str, ...]  # URLs of the identity's images, sorted


def read_people_list(url: str, storage: StorageConfig | None = None) -> list[tuple[str, int]]:
    """``peopleDevTrain.txt``-style lists: a count line, then ``name<TAB>number of images`` lines."""
    try:
        lines = [line for line in read_bytes(url, storage).decode("utf-8").splitlines() if line.strip()]
    except StorageError as exc:
        raise FaceDataError(f"people list {url}: {exc}") from None
    if not lines or not lines[0].strip().isdigit():
        raise FaceDataError(f"people list {url}: the first line must be the number of people")
    people = []
    for n, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[1].strip().isdigit():
            raise FaceDataError(f"people list {url} line {n}: expected 'name<TAB>count', got {line!r}")
        people.append((fields[0].strip(), int(fields[1])))
    if int(lines[0]) != len(people):
        raise FaceDataError(f"people list {url}: first line says {int(lines[0])} people, {len(people)} listed")
    return people


def _images_in(folder: str, storage: StorageConfig | None) -> list[str] | None:
    """Image URLs directly in ``folder``, sorted; None when ``folder`` is a file, not a folder."""
    entries = list_files(folder, storage=storage)
    if entries == [folder] or (len(entries) == 1 and entries[0].rstrip("/") == folder.rstrip("/")):
        return None
    return [e for e in entries if e.lower().endswith(IMAGE_SUFFIXES)]


def scan_image_folder(root: str, people: list[str] | None = None, min_images: int = 1,
                      max_identities: int | None = None, max_images_per_identity: int | None = None,
                      storage: StorageConfig | None = None, progress=None) -> list[IdentityFiles]:
    """The identities under ``root`` (sorted by name, or restricted to ``people``) with at least
    ``min_images`` images.  A missing root, a listed person without a folder, or an identity
    folder without images is a :class:`FaceDataError` naming the folder.
    """
    root = root.rstrip("/")
    if not exists(root, storage):
        raise FaceDataError(f"image folder not found: {root}")
    if people is None:
        names = sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in list_files(root, storage=storage))
    else:
        names = sorted(set(people))
    out: list[IdentityFiles] = []
    for n, name in enumerate(names, start=1):
        folder = join(root, name)
        files = _images_in(folder, storage)
        if files is None and people is None:
            continue  # a plain file next to the identity folders (a README, a list)
        if not files:
            what = "is missing" if people is not None and not exists(folder, storage) else "holds no images"
            raise FaceDataError(f"identity folder {folder} {what} (images end with {', '.join(IMAGE_SUFFIXES)})")
        if len(files) >= min_images:
            out.append(IdentityFiles(name, tuple(files[:max_images_per_identity])))
        if progress is not None and n % 1000 == 0:
            progress(f"scanned {n}/{len(names)} identity folders")
        if max_identities is not None and len(out) >= max_identities:
            break
    return out
