"""The dataset card: what a synthetic dataset holds and how it was made (Markdown + JSON)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from uiface_ray import jsonfile, storage
from uiface_ray.export.config import DEFAULT_INTENDED_USE
from uiface_ray.synth.dataset import SyntheticDataset
from uiface_ray.synth.manifest import Manifest
from uiface_ray.synth.shard import ShardRows

__all__ = [
    "DEFAULT_INTENDED_USE",
    "ShardSummary",
    "build_card",
    "card_from_summaries",
    "card_markdown",
    "generator_record",
    "identity_source",
    "summarize_shard",
    "write_card",
]


#: What the UIFace release (Tencent/TFace, generation/uiface) names as its model's training data.
RELEASE_TRAINING_DATA = {
    "name": "CASIA-WebFace",
    "reference": "Yi et al., Learning Face Representation from Scratch, arXiv:1411.7923",
    "identity_embeddings": "ElasticFace (512-d) of CASIA-WebFace's faces",
    "terms": "CASIA-WebFace is distributed for non-commercial research use only, and the release "
    "(generation/uiface) states no separate licence for its weights: a dataset made with this model "
    "inherits those terms",
}
RELEASE = "UIFace release, Tencent/TFace generation/uiface (Lin et al., ICLR 2025)"


def generator_record(model_url: str | None, storage_cfg=None) -> dict[str, Any]:
    """What made the data, from the model bundle's ``uiface.json``: our generator's training data, or
    the imported release's files (name, sha256), EMA/non-EMA weights, architecture and training data."""
    if not model_url:
        return {}
    try:
        marker = jsonfile.loads(storage.read_bytes(storage.join(model_url, "uiface.json"), storage_cfg))
    except (storage.StorageError, ValueError):
        return {"model": model_url, "note": "model bundle not readable at export time"}
    info = marker.get("info", {}) if isinstance(marker, dict) else {}
    record = {
        "model": model_url,
        "weights_hash": marker.get("weights_hash"),
        "architecture": info.get("architecture", "uiface-ray"),
        "training_data": info.get("training_data") or {"note": "not recorded by this model bundle"},
        "source": info.get("source"),
    }
    official = info.get("official")
    if isinstance(official, dict):
        record["source"] = RELEASE
        record["release_files"] = official.get("sources", {})
        record["release_weights"] = official.get("weights")
        record["training_data"] = RELEASE_TRAINING_DATA
    return record


def identity_source(encoder: dict[str, Any]) -> dict[str, Any]:
    """Where the identities came from, as they really were: a ``.npy`` is given, not made or filtered here."""
    if encoder.get("kind") == "npy":
        return {
            "kind": "npy",
            "file": encoder.get("source"),
            "dim": encoder.get("dim"),
            "made_by": "given (rows L2-normalised, identity_id = row index); not filtered by this project "
            "against any real or training identity",
        }
    if not encoder:
        return {"kind": "unknown", "made_by": "not recorded"}
    return {
        "kind": "identity_table",
        "encoder": encoder,
        "made_by": "jobs/make_identities.py: c_e faces embedded with this encoder, filtered for distinct identities "
        "(and against the generator's training identities where that job was given them)",
    }


@dataclass
class ShardSummary:
    """What the card needs of one shard, computed where the shard is read (a worker), so that the
    driver merges small summaries instead of reading the dataset."""

    identity_ids: list[int]  # distinct, in order of first appearance
    counts: list[int]  # images of each
    t0_histogram: dict[int, int]
    mode: str
    model_hash: str
    seeds: np.ndarray  # (rows,) int64

    def to_json(self) -> dict[str, Any]:
        return {
            "identity_ids": self.identity_ids,
            "counts": self.counts,
            "mode": self.mode,
            "model_hash": self.model_hash,
            "t0_histogram": {str(k): v for k, v in self.t0_histogram.items()},
            "seeds": base64.b64encode(self.seeds.astype("<i8").tobytes()).decode("ascii"),
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "ShardSummary":
        return cls(
            list(body["identity_ids"]),
            list(body["counts"]),
            {int(k): int(v) for k, v in body["t0_histogram"].items()},
            body["mode"],
            body["model_hash"],
            np.frombuffer(base64.b64decode(body["seeds"]), dtype="<i8").astype(np.int64),
        )


def summarize_shard(rows: ShardRows) -> ShardSummary:
    ids, first, counts = np.unique(rows.identity_id, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    values, t0_counts = np.unique(rows.t0, return_counts=True)
    return ShardSummary(
        [int(i) for i in ids[order]],
        [int(c) for c in counts[order]],
        {int(v): int(c) for v, c in zip(values, t0_counts)},
        rows.mode,
        rows.model_hash,
        np.asarray(rows.seed, dtype=np.int64),
    )


def _quantile(values: np.ndarray, cum: np.ndarray, q: float) -> float:
    """``np.quantile(x, q)`` (linear method) of the sorted sample whose distinct ``values`` have
    cumulative counts ``cum``, without building the sample."""
    n = int(cum[-1])
    virtual = q * (n - 1)
    lo = int(np.floor(virtual))
    hi = min(lo + 1, n - 1)
    a = float(values[np.searchsorted(cum, lo, side="right")])
    b = float(values[np.searchsorted(cum, hi, side="right")])
    t = virtual - lo
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t  # numpy's _lerp, for the same float


def _t0_distribution(histogram: dict[int, int]) -> dict[str, Any]:
    values = np.array(sorted(histogram), dtype=np.int64)
    counts = np.array([histogram[int(v)] for v in values], dtype=np.int64)
    cum = np.cumsum(counts)
    return {
        "min": int(values[0]),
        "max": int(values[-1]),
        "mean": float(np.dot(values, counts)) / int(cum[-1]),
        "quantiles": {q: _quantile(values, cum, float(q)) for q in ("0.1", "0.5", "0.9")},
        "histogram": {str(int(v)): int(c) for v, c in zip(values, counts)},
    }


def card_from_summaries(
    dataset_url: str,
    manifest: Manifest,
    summaries: Iterable[ShardSummary],
    encoder: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    license: str = "unspecified",
    intended_use: str = DEFAULT_INTENDED_USE,
    generator: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card from the shards' summaries: counts, configs, hashes, seeds and the t0 distribution.
    Memory: one entry per identity and 8 bytes per image (the seeds, for the exact unique count)."""
    m = manifest
    per_identity: dict[int, int] = {}
    t0_hist: dict[int, int] = {}
    modes, hashes, seeds = set(), set(), []
    for s in summaries:
        for identity, count in zip(s.identity_ids, s.counts):
            per_identity[identity] = per_identity.get(identity, 0) + count
        for value, count in s.t0_histogram.items():
            t0_hist[value] = t0_hist.get(value, 0) + count
        modes.add(s.mode)
        hashes.add(s.model_hash)
        seeds.append(s.seeds)
    all_seeds = np.concatenate(seeds)
    counts = np.array(list(per_identity.values()))
    return {
        "dataset": dataset_url,
        "license": license,
        "intended_use": intended_use,
        "generator": generator if generator is not None else {},
        "counts": {
            "identities": len(per_identity),
            "images": int(len(all_seeds)),
            "shards": m.num_shards,
            "images_per_identity": {"min": int(counts.min()), "max": int(counts.max())},
        },
        "model_hash": m.model_hash,
        "model_hashes_in_shards": sorted(hashes),
        "modes": sorted(modes),
        "identity_encoder": encoder or {},
        "identities": identity_source(encoder or {}),
        "identities_sha256": m.generation.get("identities_sha256"),
        "seeds": {
            "job_seed": m.generation.get("seed"),
            "rule": "image_seed(job_seed, identity_id, image_index)",
            "unique": int(len(np.unique(all_seeds))),
            "images": int(len(all_seeds)),
        },
        "t0": _t0_distribution(t0_hist),
        "generation": m.generation,
        "job_config": m.job_config,
        "metrics": metrics or {},
    }


def build_card(
    dataset: SyntheticDataset,
    encoder: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    verify: bool = True,
    license: str = "unspecified",
    intended_use: str = DEFAULT_INTENDED_USE,
    generator: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card, read from the shards themselves in this process (the export spreads the reads
    over workers and calls :func:`card_from_summaries`)."""
    return card_from_summaries(
        dataset.url,
        dataset.manifest,
        (summarize_shard(rows) for rows in dataset.iter_shards(verify)),
        encoder,
        metrics,
        license,
        intended_use,
        generator,
    )


def _generator_lines(gen: dict[str, Any]) -> str:
    if not gen:
        return "Not recorded."
    data = gen.get("training_data") or {}
    if gen.get("release_files"):
        files = "; ".join(
            f"{role} `{f.get('file')}` (sha256 `{f.get('sha256')}`)" for role, f in gen["release_files"].items()
        )
        weights = {"ema": "EMA", "non_ema": "non-EMA"}.get(gen.get("release_weights"), gen.get("release_weights"))
        return "\n".join(
            [
                f"- Model: the {gen['source']}, imported into `{gen.get('model')}` (weights `{gen.get('weights_hash')}`)",
                f"- Weights: {weights}; architecture `{gen.get('architecture')}`",
                f"- Release files: {files}",
                f"- Training data named by the release: {data.get('name')} ({data.get('reference')}); identity "
                f"embeddings: {data.get('identity_embeddings')}",
                f"- Terms: {data.get('terms')}",
            ]
        )
    if "identities" in data:
        text = (
            f"The generator `{gen.get('model')}` (weights `{gen.get('weights_hash')}`) was trained on "
            f"{data['images']} real images of {data['identities']} identities from `{data.get('source')}`"
            f" (face table `{data.get('table')}`, rows sha256 `{str(data.get('rows_sha256'))[:16]}`)."
        )
        return text
    return f"Generator `{gen.get('model')}`: {data.get('note', 'training data not recorded')}."


def _identity_line(card: dict[str, Any]) -> str:
    ident = card.get("identities") or identity_source(card.get("identity_encoder") or {})
    if ident["kind"] == "npy":
        return f"- Identities: `{ident['file']}` ({ident['dim']}-d), {ident['made_by']}"
    if ident["kind"] == "identity_table":
        return f"- Identities: {ident['made_by']}; encoder {json.dumps(ident['encoder'], sort_keys=True)}"
    return "- Identities: source not recorded"


def card_markdown(card: dict[str, Any]) -> str:
    c, t0 = card["counts"], card["t0"]
    lines = [
        "# Synthetic face dataset (UIFace)",
        "",
        f"- Source: `{card['dataset']}`",
        f"- Identities: {c['identities']}; images: {c['images']} ({c['images_per_identity']['min']}-"
        f"{c['images_per_identity']['max']} per identity); shards: {c['shards']}",
        f"- Model hash: `{card['model_hash']}`; sampler mode(s): {', '.join(card['modes'])}",
        _identity_line(card),
        f"- Identity table sha256: `{card['identities_sha256']}`",
        f"- Seeds: job seed {card['seeds']['job_seed']}, {card['seeds']['rule']}; "
        f"{card['seeds']['unique']} unique of {card['seeds']['images']}",
        f"- t0 (identity stage start): min {t0['min']}, median {t0['quantiles']['0.5']:.0f}, "
        f"max {t0['max']}, mean {t0['mean']:.1f}",
        "",
        f"- Licence: {card.get('license', 'unspecified')}",
        "",
        "## Intended use",
        "",
        card.get("intended_use", DEFAULT_INTENDED_USE),
        "",
        "## Generator and its training data",
        "",
        _generator_lines(card.get("generator") or {}),
        "",
        "## Sampler",
        "",
        "```json",
        json.dumps(card["generation"].get("sampler", {}), indent=2, sort_keys=True),
        "```",
    ]
    if card["metrics"]:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(card["metrics"].items())]
    return "\n".join(lines) + "\n"


def write_card(card: dict[str, Any], out_url: str, storage_cfg=None) -> tuple[str, str]:
    """Write ``dataset_card.json`` and ``README.md`` under ``out_url``; returns their URLs."""
    json_url = storage.join(out_url, "dataset_card.json")
    md_url = storage.join(out_url, "README.md")
    storage.write_bytes_atomic(json_url, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode(), storage_cfg)
    storage.write_bytes_atomic(md_url, card_markdown(card).encode(), storage_cfg)
    return json_url, md_url
