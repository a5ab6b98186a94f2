"""Which output an export may write into, and which of its entries it may replace.

An export never deletes or overwrites what it did not write:

* the output and the dataset must not overlap (the output inside the dataset, the dataset inside
  the output, or the same folder): refused before anything is written;
* an output that does not exist or is empty is claimed: the export writes its marker
  ``.uiface-export.json`` there before anything else (and removes it again when bad input stops
  the export before any entry reached the output);
* an output that holds the marker was made by an export: the entries the marker lists
  (``images``, ``train.rec``, ...) are replaced whole by the next export into it, its
  ``.staging-*`` folders are its resume state, and every other entry is left alone; an export
  that would write a name the marker does not list (a file of the user's), or replace an
  ``images`` folder holding a file that is not ``<digits>/<digits>.jpg`` (a user's file put among
  the export's), is refused;
* any other output (a folder with files and no marker, a file) is refused.

The marker lists a name before the entry is moved into place, so a crash between the two leaves
an entry the next export knows as its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from uiface_ray import jsonfile, storage
from uiface_ray.export.plan import ExportInputError
from uiface_ray.synth.preview import PREVIEW

__all__ = ["MARKER", "OwnedOutput", "check_overlap", "entry_names", "owned_output"]

MARKER = ".uiface-export.json"
MARKER_FORMAT = "uiface-export/1"
_EXPORT_IMAGE = re.compile(r"\d+/\d+\.jpg")  # images/<label>/<index>.jpg (an older export: <identity>/<index>)


def entry_names(formats) -> list[str]:
    """The top-level entries an export of ``formats`` writes under its output."""
    names = []
    if "folders" in formats:
        names += ["images", "labels.tsv"]
    if "recordio" in formats:
        names += ["train.rec", "train.idx", "property"]
    if "card" in formats:
        names += ["dataset_card.json", "README.md"]
    return names + [PREVIEW]  # copied from the dataset when synthesize wrote one


def check_overlap(dataset: str, output: str) -> None:
    """Refuse an output inside the dataset, a dataset inside the output, or the same folder."""
    d, o = storage.canonical_url(dataset), storage.canonical_url(output)
    if d == o:
        how = "are the same folder"
    elif o.startswith(d + "/"):
        how = "overlap: the output is inside the dataset"
    elif d.startswith(o + "/"):
        how = "overlap: the dataset is inside the output"
    else:
        return
    raise ExportInputError(
        f"output {output} and dataset {dataset} {how}; an export replaces what it writes under its "
        "output: choose an output folder outside the dataset that does not contain it"
    )


@dataclass
class OwnedOutput:
    """An output this export may write into."""

    url: str
    written: list[str] = field(default_factory=list)  # entries earlier exports wrote (the marker's list)
    created: bool = False  # this export claims it now (it was missing or empty)

    @property
    def marker_url(self) -> str:
        return storage.join(self.url, MARKER)

    def claim(self, storage_cfg) -> None:
        """Write the marker of an output this export creates (nothing when it is already ours)."""
        if self.created:
            self._write_marker(self.written, storage_cfg)

    def record(self, names: list[str], storage_cfg) -> None:
        """Before the move into place: refuse if an entry of ``names`` appeared that is not ours,
        then list ``names`` in the marker."""
        _check_replaceable(self.url, names, storage.list_names(self.url, storage_cfg), self.written, storage_cfg)
        self.written = sorted(set(self.written) | set(names))
        self._write_marker(self.written, storage_cfg)
        self.created = False  # entries are about to land: the marker stays from now on

    def _write_marker(self, written: list[str], storage_cfg) -> None:
        body = {"format": MARKER_FORMAT, "written": sorted(written)}
        storage.write_bytes_atomic(self.marker_url, (json.dumps(body, indent=2) + "\n").encode(), storage_cfg)


def _check_replaceable(url: str, names: list[str], present: list[str], written: list[str], storage_cfg) -> None:
    """Refuse to write ``names`` over an entry no export wrote (see the module docstring)."""
    foreign = sorted(set(names) & set(present) - set(written))
    if "images" in names and "images" in present and "images" not in foreign:
        files = storage.find_files(storage.join(url, "images"), storage_cfg)
        foreign += [f"images/{f}" for f in files if not _EXPORT_IMAGE.fullmatch(f)][:3]
    if foreign:
        raise ExportInputError(
            f"output {url} already holds {', '.join(foreign)}, which no export wrote there; an export never "
            "replaces files it did not write: move them away or choose another output"
        )


def _read_marker(url: str, storage_cfg) -> list[str]:
    data = storage.read_bytes(url, storage_cfg)
    try:
        body = jsonfile.loads(data)
        if not isinstance(body, dict) or body.get("format") != MARKER_FORMAT:
            raise ValueError(f"format is not {MARKER_FORMAT!r}")
        written = body["written"]
        if not isinstance(written, list) or not all(isinstance(n, str) and "/" not in n for n in written):
            raise ValueError("'written' is not a list of names")
    except (ValueError, KeyError) as exc:
        raise ExportInputError(
            f"{url} is damaged ({exc}); it marks the folder as an export's output: restore it, or choose another output"
        ) from None
    return [n for n in written if n not in ("", ".", "..")]


def owned_output(output: str, names: list[str], storage_cfg=None) -> OwnedOutput:
    """The output as this export may use it (see the module docstring), or an error naming it."""
    present = storage.list_names(output, storage_cfg)
    if not present:
        return OwnedOutput(output, created=True)
    if MARKER not in present:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise ExportInputError(
            f"output {output} is not empty ({shown}) and was not made by an export (no {MARKER}); an "
            "export writes only into a new or empty folder, or one an export made: choose another output"
        )
    if storage.is_link(storage.join(output, MARKER)):
        raise ExportInputError(f"{storage.join(output, MARKER)} is a symbolic link; an export's marker is a file")
    owned = OwnedOutput(output, _read_marker(storage.join(output, MARKER), storage_cfg))
    _check_replaceable(output, names, present, owned.written, storage_cfg)
    return owned
