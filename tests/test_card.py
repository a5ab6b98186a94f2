"""The dataset card says what made the data (#26 item 4): for the imported release model, its files
and their sha256, EMA or non-EMA, the architecture, the training data the release names and its
terms; for a ``.npy`` of identities, that they were given, not filtered by this project."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from test_official_import import write_release_files
from tiny_assets import wait_cpus_free
from uiface_ray.export.card import card_markdown, generator_record, identity_source

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))
import export  # noqa: E402
import import_official  # noqa: E402
import synthesize  # noqa: E402


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_card_of_an_imported_release_model_names_its_files_hashes_and_weights(tmp_path, ray_local):
    release = tmp_path / "release"
    _, argv = write_release_files(release, name="ema_averaged_model_9.ckpt")
    model = tmp_path / "official-model"
    assert import_official.main(argv + [f"--output={model}"]) == 0
    np.save(tmp_path / "identities_10k.npy", np.random.default_rng(0).normal(size=(2, 512)))
    data = tmp_path / "synthetic"
    assert (
        synthesize.main(
            [
                "--config=configs/synthesize_official.yaml",
                f"--model={model}",
                f"--identities={tmp_path / 'identities_10k.npy'}",
                f"--output={data}",
                "--images_per_identity=2",
                "--identities_per_shard=2",
                "--batch_size=4",
                "--sampler.num_inference_steps=3",
                "--sampler.output_size=16",
                "--actors.num_actors=1",
                "--actors.max_restarts=0",
            ]
        )
        == 0
    )
    wait_cpus_free(ray_local)
    out = tmp_path / "export"
    assert export.main([f"--dataset={data}", f"--output={out}", "--formats=[card]", "--workers.num_workers=1"]) == 0
    wait_cpus_free(ray_local)
    card = json.loads((out / "dataset_card.json").read_text())
    text = (out / "README.md").read_text()
    gen = card["generator"]
    assert gen["source"].startswith("UIFace release, Tencent/TFace")
    assert gen["release_weights"] == "ema" and gen["architecture"] == "official-tiny"
    for role, name in (
        ("checkpoint", "ema_averaged_model_9.ckpt"),
        ("vq_encoder", "first_stage_encoder_state_dict.pt"),
        ("vq_decoder", "first_stage_decoder_state_dict.pt"),
    ):
        digest = _sha256(release / name)
        assert gen["release_files"][role] == {"file": name, "sha256": digest}
        assert f"`{name}` (sha256 `{digest}`)" in text
    assert "- Weights: EMA;" in text and "CASIA-WebFace" in text and "non-commercial research" in text
    assert card["identities"]["kind"] == "npy" and card["identities"]["file"] == "identities_10k.npy"
    assert "identities_10k.npy` (512-d), given" in text and "not filtered by this project" in text
    assert "filtered against the generator's training identities" not in text
    assert card["counts"]["identities"] == 2 and card["counts"]["images"] == 4
    assert card["seeds"]["job_seed"] == 0 and card["seeds"]["unique"] == 4
    assert card["generation"]["sampler"]["max_t0"] == 500 and '"ddim_alpha_prev": "release"' in text
    # preview.png: 2 identities x 2 images of 16 px, a 12 px t0 label under each; the export copies it
    from PIL import Image

    with Image.open(data / "preview.png") as grid:
        assert grid.format == "PNG" and grid.size == (2 * 16, 2 * (16 + 12))
    assert (out / "preview.png").read_bytes() == (data / "preview.png").read_bytes()


def test_identity_source_of_a_table_and_of_nothing():
    table = identity_source({"kind": "dlib", "dim": 128, "fingerprint": "f"})
    assert table["kind"] == "identity_table" and "make_identities" in table["made_by"]
    assert identity_source({})["made_by"] == "not recorded"


def test_a_bundle_without_a_release_record_keeps_its_training_data(tmp_path):
    (tmp_path / "m").mkdir()
    marker = {"weights_hash": "w", "info": {"training_data": {"identities": 3, "images": 9, "source": "x"}}}
    (tmp_path / "m" / "uiface.json").write_text(json.dumps(marker))
    gen = generator_record(str(tmp_path / "m"))
    assert gen["training_data"]["identities"] == 3 and "release_files" not in gen
    assert "was trained on 9 real images of 3 identities" in card_markdown(_minimal_card(gen))


def _minimal_card(gen: dict) -> dict:
    return {
        "dataset": "d",
        "counts": {"identities": 1, "images": 1, "shards": 1, "images_per_identity": {"min": 1, "max": 1}},
        "t0": {"min": 1, "max": 1, "mean": 1.0, "quantiles": {"0.5": 1.0}},
        "model_hash": "w",
        "modes": ["uiface"],
        "identity_encoder": {},
        "identities_sha256": "s",
        "seeds": {"job_seed": 0, "rule": "r", "unique": 1, "images": 1},
        "generation": {},
        "metrics": {},
        "generator": gen,
    }
