"""The manifest: the commit marker of a synthetic dataset.

``<out>/manifest.json`` lists every completed shard (during a run, together with the journal of
:mod:`uiface_ray.synth.journal`) with its row count and SHA-256, plus the
generation config (what determines the bytes: model hash, identity table hash, seed, sampler
settings, image format) and the job config it ran with.  It is only ever written atomically and
only lists shards that are already in place, so a reader that trusts the manifest never sees a
partial dataset; ``complete`` is true once every planned shard is listed.

A manifest that does not parse, or that is a symbolic link (never followed: it would make another
file this dataset's record), is a :class:`ManifestError`: one line saying what to do.  It cannot be
rebuilt from the shards, which do not record the sampler settings that made them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from uiface_ray import jsonfile, storage
from uiface_ray.errors import InputError

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "ManifestError",
    "ShardRecord",
    "config_differences",
    "read_manifest",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
FORMAT = "uiface-synth/1"


class ManifestError(InputError, ValueError):
    """A manifest that cannot be trusted (damaged, or a link); the message says what to do."""


@dataclass(frozen=True)
class ShardRecord:
    name: str
    index: int
    rows: int
    sha256: str
    size: int | None = None  # bytes, as the store listed them right after the write
    version: str | None = None  # the store's version of the file then (S3 ETag, local mtime)


@dataclass
class Manifest:
    generation: dict[str, Any]  # compared on resume: a different value is a different dataset
    num_identities: int
    images_per_identity: int
    num_shards: int
    shards: list[ShardRecord] = field(default_factory=list)
    job_config: dict[str, Any] = field(default_factory=dict)  # recorded, not compared
    journal_upto: int = -1  # the last journal segment this manifest includes (uiface_ray.synth.journal)
    format: str = FORMAT

    @property
    def complete(self) -> bool:
        return len(self.shards) == self.num_shards

    @property
    def num_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def model_hash(self) -> str:
        return str(self.generation.get("model_hash", ""))

    def to_json(self) -> str:
        body = asdict(self)
        body["shards"] = sorted(body["shards"], key=lambda s: s["index"])
        body["complete"] = self.complete
        body["num_rows"] = self.num_rows
        body["model_hash"] = self.model_hash
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> "Manifest":
        try:
            body = jsonfile.loads(text)
            if body.get("format") != FORMAT:
                raise ValueError(f"format is {body.get('format')!r}, expected {FORMAT!r}")
            return cls(
                generation=dict(body["generation"]),
                num_identities=int(body["num_identities"]),
                images_per_identity=int(body["images_per_identity"]),
                num_shards=int(body["num_shards"]),
                shards=[ShardRecord(**s) for s in body["shards"]],
                job_config=dict(body.get("job_config", {})),
                journal_upto=int(body.get("journal_upto", -1)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{where} is not a valid synthesis manifest: {exc}") from exc


def manifest_url(out_url: str) -> str:
    return storage.join(out_url, MANIFEST_NAME)


def write_manifest(out_url: str, manifest: Manifest, storage_cfg=None) -> None:
    storage.write_bytes_atomic(manifest_url(out_url), manifest.to_json().encode(), storage_cfg)


_REMEDY = (
    "the shards cannot be checked against a config without it: restore the manifest from a copy, or "
    "remove the output folder (or choose another) and rerun jobs/synthesize.py"
)


def read_manifest(out_url: str, storage_cfg=None) -> Manifest | None:
    """The manifest under ``out_url``, or None when there is none; :class:`ManifestError` when it
    is damaged or a symbolic link."""
    url = manifest_url(out_url)
    if storage.is_link(url):
        raise ManifestError(f"{url} is a symbolic link, not a manifest written by jobs/synthesize.py; {_REMEDY}")
    if not storage.exists(url, storage_cfg):
        return None
    data = storage.read_bytes(url, storage_cfg)
    try:
        return Manifest.from_json(data.decode("utf-8"), url)
    except (ManifestError, UnicodeDecodeError) as exc:
        detail = str(exc).split(": ", 1)[-1] if isinstance(exc, ManifestError) else "not UTF-8 text"
        raise ManifestError(f"{url} is damaged ({detail}); {_REMEDY}") from None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ, as ``key: old -> new`` lines (JSON-normalised)."""
    a = _flatten(json.loads(json.dumps(old)))
    b = _flatten(json.loads(json.dumps(new)))
    return [
        f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k, "<absent>") != b.get(k, "<absent>")
    ]
