"""Image-folder trees (one folder per identity, as ``lfw112/images``) and LFW-style people lists.

An identity is a folder that directly holds images; its name is its path under the root
(``Aaron_Peirsol``, or ``train/0042`` in a deeper tree).  Images are whatever Pillow opens (JPEG,
PNG, BMP, WebP, PGM/PPM, TIFF, ...).  Anything else (a README, a list, a ``.DS_Store``) is skipped
and counted, so a user's own folder needs no cleaning first.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from uiface_ray.config import StorageConfig
from uiface_ray.data.images import IMAGE_SUFFIXES
from uiface_ray.errors import InputError
from uiface_ray.storage import StorageError, exists, find_files, join, read_bytes

__all__ = ["FaceDataError", "FolderScan", "IdentityFiles", "read_people_list", "scan_image_folder"]


class FaceDataError(InputError, ValueError):
    """Face data (folder tree, people list, RecordIO) is missing or malformed; the message names it."""


@dataclass(frozen=True)
class IdentityFiles:
    name: str
    files: tuple[str, ...]  # URLs of the identity's images, sorted


@dataclass
class FolderScan:
    """What a folder tree held: the identities kept, and what was passed over."""

    identities: list[IdentityFiles] = field(default_factory=list)
    skipped_files: int = 0  # files that are not images (README, lists, hidden files)
    too_few_images: int = 0  # identity folders under min_images

    def summary(self) -> str:
        images = sum(len(i.files) for i in self.identities)
        return (
            f"{len(self.identities)} identities, {images} images; skipped {self.skipped_files} "
            f"non-image files and {self.too_few_images} identities with too few images"
        )


def read_people_list(url: str, storage: StorageConfig | None = None) -> list[tuple[str, int]]:
    """``peopleDevTrain.txt``-style lists: a count line, then ``name<TAB>number of images`` lines."""
    try:
        lines = [line for line in read_bytes(url, storage).decode("utf-8").splitlines() if line.strip()]
    except StorageError as exc:
        raise FaceDataError(f"people list {url}: {exc}") from None
    except UnicodeDecodeError:
        raise FaceDataError(f"people list {url}: not a UTF-8 text file") from None
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


def _group_images(root: str, storage: StorageConfig | None) -> tuple[dict[str, list[str]], int]:
    """Image files under ``root`` grouped by the folder holding them; and the count of other files."""
    groups: dict[str, list[str]] = defaultdict(list)
    skipped = 0
    for rel in find_files(root, storage):
        folder, _, name = rel.rpartition("/")
        if folder and name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
            groups[folder].append(join(root, rel))
        else:
            skipped += 1  # a file beside the identity folders, or not an image
    return groups, skipped


def scan_image_folder(
    root: str,
    people: list[str] | None = None,
    min_images: int = 1,
    max_identities: int | None = None,
    max_images_per_identity: int | None = None,
    storage: StorageConfig | None = None,
    people_source: str = "people_file",
) -> FolderScan:
    """The identities under ``root`` (sorted by name, or restricted to ``people``) with at least
    ``min_images`` images.  A missing root, a tree with no images, or a people list naming none of
    the folders is a :class:`FaceDataError` naming what is wrong."""
    root = root.rstrip("/")
    if not exists(root, storage):
        raise FaceDataError(f"image folder not found: {root}")
    groups, skipped = _group_images(root, storage)
    if not groups:
        raise FaceDataError(
            f"{root} holds no images in identity folders (one folder per identity; "
            f"image types: {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES[:12])}, ...)"
        )
    names = sorted(groups)
    if people is not None:
        by_leaf = defaultdict(list)
        for name in names:
            by_leaf[name.rsplit("/", 1)[-1]].append(name)
        wanted = sorted(set(people))
        found: set[str] = set()
        missing = []
        for person in wanted:
            matches = [person] if person in groups else by_leaf.get(person, [])
            found.update(matches)
            if not matches:
                missing.append(person)
        names = sorted(found)
        if not names:
            raise FaceDataError(
                f"{people_source} lists none of the {len(groups)} identity folders under {root} "
                f"(first listed: {wanted[0] if wanted else 'nobody'}; first folder: "
                f"{sorted(groups)[0]}): set people_file to null to use every folder"
            )
        if missing:
            raise FaceDataError(
                f"identity folder {join(root, missing[0])} is missing or holds no images, but "
                f"{people_source} lists it ({len(missing)} of {len(wanted)} listed people have none)"
            )
    scan = FolderScan(skipped_files=skipped)
    for name in names:
        files = sorted(groups[name])
        if len(files) < min_images:
            scan.too_few_images += 1
            continue
        scan.identities.append(IdentityFiles(name, tuple(files[:max_images_per_identity])))
        if max_identities is not None and len(scan.identities) >= max_identities:
            break
    return scan
