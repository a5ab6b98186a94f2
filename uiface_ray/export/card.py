"""The dataset card: what a synthetic dataset holds and how it was made (Markdown + JSON)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from uiface_ray import storage
from uiface_ray.export.config import DEFAULT_INTENDED_USE
from uiface_ray.synth.dataset import SyntheticDataset

__all__ = ["DEFAULT_INTENDED_USE", "build_card", "card_markdown", "generator_record", "write_card"]

def generator_record(model_url: str | None, storage_cfg=None) -> dict[str, Any]:
    """The generator's own record of what it was trained on (``uiface.json`` of the model bundle)."""
    if not model_url:
        return {}
    try:
        marker = json.loads(storage.read_bytes(storage.join(model_url, "uiface.json"), storage_cfg))
    except (storage.StorageError, ValueError):
        return {"model": model_url, "note": "model bundle not readable at export time"}
    info = marker.get("info", {}) if isinstance(marker, dict) else {}
    return {"model": model_url, "weights_hash": marker.get("weights_hash"),
            "training_data": info.get("training_data") or {"note": "not recorded by this model bundle"},
            "source": info.get("source")}


def _t0_distribution(t0: np.ndarray) -> dict[str, Any]:
    values, counts = np.unique(t0, return_counts=True)
    return {
        "min": int(t0.min()), "max": int(t0.max()), "mean": float(t0.mean()),
        "quantiles": {q: float(np.quantile(t0, float(q))) for q in ("0.1", "0.5", "0.9")},
        "histogram": {str(int(v)): int(c) for v, c in zip(values, counts)},
    }


def build_card(dataset: SyntheticDataset, encoder: dict[str, Any] | None = None,
               metrics: dict[str, Any] | None = None, verify: bool = True, license: str = "unspecified",
               intended_use: str = DEFAULT_INTENDED_USE, generator: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts, configs, hashes, seeds and the t0 distribution, read from the shards themselves."""
    m = dataset.manifest
    t0s, per_identity = [], {}
    modes, hashes, seeds = set(), set(), []
    for rows in dataset.iter_shards(verify):
        t0s.append(rows.t0)
        for identity in rows.identity_id:
            per_identity[int(identity)] = per_identity.get(int(identity), 0) + 1
        modes.add(rows.mode)
        hashes.add(rows.model_hash)
        seeds.append(rows.seed)
    t0 = np.concatenate(t0s)
    all_seeds = np.concatenate(seeds)
    counts = np.array(list(per_identity.values()))
    return {
        "dataset": dataset.url,
        "license": license,
        "intended_use": intended_use,
        "generator": generator if generator is not None else {},
        "counts": {"identities": len(per_identity), "images": int(len(t0)), "shards": m.num_shards,
                   "images_per_identity": {"min": int(counts.min()), "max": int(counts.max())}},
        "model_hash": m.model_hash,
        "model_hashes_in_shards": sorted(hashes),
        "modes": sorted(modes),
        "identity_encoder": encoder or {},
        "identities_sha256": m.generation.get("identities_sha256"),
        "seeds": {"job_seed": m.generation.get("seed"), "rule": "image_seed(job_seed, identity_id, image_index)",
                  "unique": int(len(np.unique(all_seeds))), "images": int(len(all_seeds))},
        "t0": _t0_distribution(t0),
        "generation": m.generation,
        "job_config": m.job_config,
        "metrics": metrics or {},
    }


def _generator_lines(gen: dict[str, Any]) -> str:
    if not gen:
        return "Not recorded."
    data = gen.get("training_data") or {}
    if "identities" in data:
        text = (f"The generator `{gen.get('model')}` (weights `{gen.get('weights_hash')}`) was trained on "
                f"{data['images']} real images of {data['identities']} identities from `{data.get('source')}`"
                f" (face table `{data.get('table')}`, rows sha256 `{str(data.get('rows_sha256'))[:16]}`).")
        return text
    return f"Generator `{gen.get('model')}`: {data.get('note', 'training data not recorded')}."


def card_markdown(card: dict[str, Any]) -> str:
    c, t0 = card["counts"], card["t0"]
    lines = [
        "# Synthetic face dataset (UIFace)", "",
        f"- Source: `{card['dataset']}`",
        f"- Identities: {c['identities']}; images: {c['images']} ({c['images_per_identity']['min']}-"
        f"{c['images_per_identity']['max']} per identity); shards: {c['shards']}",
        f"- Model hash: `{card['model_hash']}`; sampler mode(s): {', '.join(card['modes'])}",
        f"- Identity encoder: {json.dumps(card['identity_encoder'], sort_keys=True)}",
        f"- Identity table sha256: `{card['identities_sha256']}`",
        f"- Seeds: job seed {card['seeds']['job_seed']}, {card['seeds']['rule']}; "
        f"{card['seeds']['unique']} unique of {card['seeds']['images']}",
        f"- t0 (identity stage start): min {t0['min']}, median {t0['quantiles']['0.5']:.0f}, "
        f"max {t0['max']}, mean {t0['mean']:.1f}", "",
        f"- Licence: {card.get('license', 'unspecified')}", "",
        "## Intended use", "", card.get("intended_use", DEFAULT_INTENDED_USE), "",
        "## Generator training data", "",
        _generator_lines(card.get("generator") or {}), "",
        "## Sampler", "", "```json", json.dumps(card["generation"].get("sampler", {}), indent=2, sort_keys=True), "```",
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
