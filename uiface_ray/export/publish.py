"""An export's last step: its staged entries moved into the output, crash-consistent.

When :func:`publish` starts, the staging folder ``<output>/.staging-<key>`` holds every entry of
the export (``images/``, ``train.rec``, the card, ...) and the output's marker lists their names.

1. ``publish.json`` is written into the staging folder (one atomic write): the entries to move, in
   order.  From here on the staging folder is final: a rerun that finds the record goes straight
   to step 2 (no shard is exported again, nothing is stitched again), and a failed run never
   removes the folder.
2. For each entry the record does not yet list as moved:

   a. the output's entry of that name (an earlier export's) is removed;
   b. the staged entry is moved there: one rename on a local disk, a copy on S3;
   c. the record lists the entry as moved;
   d. on S3, the staged copy is removed.

   A staged entry that is gone while the record does not list it was renamed in (b) just before
   a crash (a local rename is atomic): it is in place, only (c) is left.  On S3 the record is
   written between the copy and the removal, so a crash in the removal never leaves a partial
   staged entry that a rerun would copy over the complete one.
3. The staging folder is removed: everything in it but the record first, the record last.

A kill at any point, and the same command rerun, ends with the output a clean export gives
(``tests/test_export_crash.py`` kills it at every step).  An output may hold the pending record of
an export with other settings (killed in step 2, then run again with another format): that
export's publish is completed first (:func:`pending_publishes`), then this one replaces what it
writes, as two clean exports in turn would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from uiface_ray import jsonfile, storage
from uiface_ray.export.plan import STAGING_PREFIX, ExportInputError
from uiface_ray.storage.fs import is_remote

__all__ = ["PUBLISH", "PublishRecord", "PublishStateError", "pending_publishes", "publish", "read_publish"]

PUBLISH = "publish.json"
PUBLISH_FORMAT = "uiface-export-publish/1"

#: ``step(label)`` is called at each step of :func:`publish` (a test seam: the crash tests kill the
#: process there; production passes nothing).
StepHook = Callable[[str], None]


class PublishStateError(ExportInputError):
    """The publish record of a staging folder is damaged; the message names it and what to do."""


@dataclass
class PublishRecord:
    names: list[str]  # the entries to move, in order
    moved: list[str] = field(default_factory=list)  # those already in place

    def to_json(self) -> bytes:
        body = {"format": PUBLISH_FORMAT, "names": self.names, "moved": self.moved}
        return (json.dumps(body, indent=2) + "\n").encode()


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name


def read_publish(staging: str, storage_cfg=None) -> PublishRecord | None:
    """The staging folder's publish record; None when publishing has not started."""
    url = storage.join(staging, PUBLISH)
    if not storage.exists(url, storage_cfg):
        return None
    try:
        body = jsonfile.loads(storage.read_bytes(url, storage_cfg))
        if not isinstance(body, dict) or body.get("format") != PUBLISH_FORMAT:
            raise ValueError(f"format is not {PUBLISH_FORMAT!r}")
        names, moved = body.get("names"), body.get("moved")
        if not isinstance(names, list) or not isinstance(moved, list) or not all(map(_valid_name, names + moved)):
            raise ValueError("'names' and 'moved' are not lists of entry names")
    except ValueError as exc:
        raise PublishStateError(
            f"{url} is damaged ({exc}); it records which entries of an interrupted export reached its "
            f"output: remove {staging} and rerun the export"
        ) from None
    return PublishRecord([str(n) for n in names], [str(n) for n in moved if n in names])


def _write(staging: str, record: PublishRecord, storage_cfg) -> None:
    storage.write_bytes_atomic(storage.join(staging, PUBLISH), record.to_json(), storage_cfg)


def _move_entry(name: str, staging: str, output: str, record: PublishRecord, storage_cfg, step: StepHook) -> None:
    """Steps 2a-2d for one entry (see the module docstring)."""
    src, dst = storage.join(staging, name), storage.join(output, name)
    remote = is_remote(output)
    if name not in record.moved:
        if storage.exists(src, storage_cfg):
            storage.remove(dst, storage_cfg, recursive=True)
            step(f"removed {name}")
            if remote:
                storage.copy(src, dst, storage_cfg)
            else:
                storage.move(src, dst, storage_cfg)
            step(f"moved {name}")
        record.moved.append(name)  # renamed just before a crash, or moved now
        _write(staging, record, storage_cfg)
        step(f"recorded {name}")
    if remote:
        storage.remove(src, storage_cfg, recursive=True)
        step(f"cleared {name}")


def publish(
    staging: str, output: str, names: list[str], storage_cfg=None, step: StepHook | None = None
) -> PublishRecord:
    """Move the staged entries ``names`` into ``output`` and remove ``staging`` (see the module
    docstring); a pending record in ``staging`` is completed instead of ``names``."""
    step = step or (lambda _label: None)
    record = read_publish(staging, storage_cfg)
    if record is None:
        record = PublishRecord(list(names))
        _write(staging, record, storage_cfg)
        step("recorded publish")
    for name in record.names:
        _move_entry(name, staging, output, record, storage_cfg, step)
    for name in storage.list_names(staging, storage_cfg):
        if name != PUBLISH:
            storage.remove(storage.join(staging, name), storage_cfg, recursive=True)
            step(f"removed staging {name}")
    storage.remove(staging, storage_cfg, recursive=True)
    step("removed staging")
    return record


def pending_publishes(output: str, present: list[str], keep: str, storage_cfg=None) -> list[str]:
    """The staging folders under ``output`` (``present``: its entries) other than ``keep`` whose
    publish had started when their export stopped."""
    found = []
    for name in present:
        staging = storage.join(output, name)
        if name.startswith(STAGING_PREFIX) and staging != keep:
            if storage.exists(storage.join(staging, PUBLISH), storage_cfg):
                found.append(staging)
    return found
