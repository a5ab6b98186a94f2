"""The metrics job on a synthetic dataset, the report's plots, and the ablation at tiny scale (slow)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from uiface_ray import storage


def _synthetic_dataset(url: str, identities: int = 4, per_identity: int = 4) -> None:
    """A dataset in jobs/synthesize.py's layout (shards + manifest written last)."""
    from uiface_ray.synth.manifest import Manifest, ShardRecord, write_manifest
    from uiface_ray.synth.plan import shard_name
    from uiface_ray.synth.shard import ShardRows, encode_image, encode_shard, sha256

    rng = np.random.default_rng(0)
    n = identities * per_identity
    ids = np.repeat(np.arange(identities), per_identity)
    patterns = rng.integers(0, 256, (identities, 8, 8, 3))
    imgs = [
        np.clip(np.kron(patterns[i], np.ones((8, 8, 1))) + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
        for i in ids
    ]
    rows = ShardRows(
        identity_id=ids.astype(np.int64),
        image_index=np.tile(np.arange(per_identity), identities),
        seed=np.arange(n),
        image=[encode_image(im, "png") for im in imgs],
        t0=np.full(n, 500),
        mode="uiface",
        model_hash="test",
    )
    data = encode_shard(rows)
    storage.write_bytes_atomic(storage.join(url, "shards", shard_name(0)), data)
    write_manifest(
        url,
        Manifest(
            generation={"model_hash": "test"},
            num_identities=identities,
            images_per_identity=per_identity,
            num_shards=1,
            shards=[ShardRecord(shard_name(0), 0, n, sha256(data))],
        ),
    )


def test_metrics_job_on_synthetic_dataset(tmp_path, lfw_dir):
    import jobs.metrics as job

    data = str(tmp_path / "synth")
    _synthetic_dataset(data)
    out = tmp_path / "m"
    rc = job.main(
        [
            "--data",
            data,
            "--out",
            str(out),
            "--encoder.kind",
            "dlib",
            "--real",
            str(lfw_dir / "images"),
            "--real_people",
            str(lfw_dir / "peopleDevTest.txt"),
            "--real_max_images",
            "20",
            "--k",
            "3",
            "--impostor_pairs",
            "50",
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_images"] == 16 and m["num_identities"] == 4
    assert 0.0 < m["diversity_1_minus_msssim"] < 1.0
    assert m["encoder"].startswith("dlib") and m["lpips_vgg"] is None
    assert 0.0 <= m["fr_precision"] <= 1.0 and 0.0 <= m["fr_recall"] <= 1.0
    assert m["genuine_mean"] > m["impostor_mean"]  # images of one pattern are more alike
    assert (out / "genuine_impostor.png").read_bytes()[:4] == b"\x89PNG"


def test_plots_and_report(tmp_path):
    from PIL import Image

    from uiface_ray.evaluate.plots import bar_plot, histogram_plot, image_grid, line_plot
    from uiface_ray.evaluate.report import Report

    rng = np.random.default_rng(0)
    rep = Report("t")
    rep.table(("a", "b"), [["x", 0.5], ["y", None]])
    rep.image("h.png", histogram_plot({"g": rng.normal(0.5, 0.1, 100), "i": rng.normal(0, 0.1, 100)}, "h", "cos"))
    rep.image("l.png", line_plot({"m": ([0, 1, 2], [1.0, np.nan, 0.5])}, "l", "t", "d"))
    rep.image("b.png", bar_plot(["a", "b"], [0.2, 0.4], "b", "y"))
    grid = image_grid(np.zeros((2, 3, 8, 8, 3), np.uint8))
    assert grid.size == (3 * 10 + 2, 2 * 10 + 2)
    page = rep.write(str(tmp_path / "r"))
    html = (tmp_path / "r" / "index.html").read_text()
    assert page.endswith("index.html") and "<td>0.5000</td>" in html and 'src="h.png"' in html
    assert Image.open(tmp_path / "r" / "h.png").size == (640, 400)
    with pytest.raises(ValueError, match="twice"):
        rep.image("h.png", grid)


@pytest.mark.slow
def test_ablation_tiny_end_to_end(ray_local, tmp_path, lfw_dir, caplog):
    from tiny_assets import make_tiny_model
    from uiface_ray.paper.ablation import run_ablation
    from uiface_ray.paper.ablation_report import write_report
    from uiface_ray.paper.config import AblationConfig
    from uiface_ray.runtime.train_fr import fit_fr

    model = make_tiny_model(str(tmp_path / "gen"))
    cfg = AblationConfig(
        model=model,
        out=str(tmp_path / "abl"),
        num_identities=3,
        images_per_identity=2,
        batch_size=8,
        sampler={"num_inference_steps": 5, "max_t0": 400},
        lfw_dir=str(lfw_dir),
        real_max_images=12,
        verify_max_pairs=20,
        metrics_k=2,
        diversity_identities=3,
        intervals=((500, 1000), (0, 500)),
        interval_identities=2,
        interval_images=2,
        grid_identities=2,
        grid_images=2,
        fr={
            "depth": 18,
            "width": 0.25,
            "embedding_dim": 32,
            "head": "cosface",
            "head_s": 16,
            "head_m": 0.2,
            "margin_warmup_epochs": 1,
            "lr_schedule": "cosine",
            "lr_warmup_epochs": 1,
            "ema_decay": 0.9,
            "augment_shift": 0.1,
            "epochs": 1,
            "max_steps": 1,
            "batch_size": 2,
            "num_workers": 2,
        },
        fr_seeds=2,
    )
    with caplog.at_level(logging.INFO, logger="uiface_ray.paper.ablation"):
        res = run_ablation(cfg, fit_fr)
    page = write_report(cfg, res)
    progress = [r.getMessage() for r in caplog.records if r.name == "uiface_ray.paper.ablation"]
    # per mode: sampled, metrics, 2 FR models; real: metrics, 2 FR models; Figure 2
    assert len(progress) == 24 and progress[0].startswith("ablation [1/24] baseline: 6 images sampled")
    assert progress[3].startswith("ablation [4/24] baseline: FR model (seed 1) trained (1 steps)")
    assert progress[-1].startswith("ablation [24/24] Figure 2: 2 timestep intervals")
    names = [r.name for r in res.rows]
    assert names == list(cfg.modes) + ["real (DevTrain)"]
    for r in res.rows:
        assert 0.0 <= r.verify_accuracy <= 1.0 and r.fr_steps == 1
        assert len(r.seed_accuracies) == 2 and r.verify_accuracy == pytest.approx(np.mean(r.seed_accuracies))
        assert r.seed_std == pytest.approx(np.std(r.seed_accuracies, ddof=1))
        assert r.metrics.num_images == 6
    for seed in (0, 1):  # one FR model per seed, each in its own folder
        assert storage.exists(storage.join(cfg.out, "fr", "uiface", f"seed-{seed}", "backbone.pth"))
    # Same seeds in every mode: baseline and attention_injection differ only by injection.
    assert set(res.grids) == set(cfg.modes) and res.grids["baseline"].shape[:2] == (2, 2)
    assert len(res.intervals) == 2
    body = json.loads(storage.read_bytes(res.results_url).decode())
    assert len(body["rows"]) == 6 and body["rows"][0]["metrics"]["fr_recall"] is not None
    side = res.grids["baseline"].shape[2]  # the tiny generator's image size: real faces are seen at it
    assert side < 112 and body["real_resolution"] == side == res.real_resolution
    html = storage.read_bytes(page).decode()
    assert f"reduced to {side}x{side}" in html
    for name in ("grid_uiface.png", "figure2.png", "genuine_impostor_baseline.png"):
        assert name in html and storage.exists(storage.join(cfg.out, "report", name))


def _seeded_row(row_class, name, metrics, accs):
    """A table row with one accuracy per FR seed (10-fold std 0.02, 10 FR steps)."""
    return row_class(
        name=name,
        metrics=metrics,
        verify_accuracy=float(np.mean(accs)),
        verify_std=0.02,
        fr_steps=10,
        seed_accuracies=accs,
        seed_std=float(np.std(accs, ddof=1)),
    )


def test_seed_paragraph_compares_rows_with_the_seed_spread():
    from uiface_ray.paper.ablation import Row
    from uiface_ray.paper.ablation_report import seed_paragraph

    def row(name, accs):
        return _seeded_row(Row, name, None, accs)

    rows = [
        row("baseline", [0.60, 0.62, 0.64]),
        row("uiface", [0.70, 0.71, 0.72]),
        row("attention_injection", [0.58, 0.63, 0.68]),
    ]
    text = seed_paragraph(rows, 3)
    assert "baseline: 60.0, 62.0, 64.0." in text
    # +9.0 points against 2 x sqrt((0.01^2 + 0.02^2) / 3) = 2.6 points: a real difference
    assert "baseline + 2-stage-adaptive + attn vs baseline: +9.0 points, which exceeds twice" in text
    assert "(2.6 points)" in text
    # +1.0 point against a spread of 5 points: noise
    assert "baseline + attn vs baseline: +1.0 points, which does not exceed twice" in text


def test_table2_cells_show_points_and_steps_with_few_decimals():
    from types import SimpleNamespace

    from uiface_ray.paper.ablation import Row
    from uiface_ray.paper.ablation_report import _row

    m = SimpleNamespace(
        diversity_1_minus_msssim=0.6081, fr_precision=0.978, fr_recall=0.966,
        genuine_mean=0.311, impostor_mean=0.0362, d_prime=1.63,
    )  # fmt: skip
    r = Row(
        name="baseline",
        metrics=m,
        verify_accuracy=0.667222,
        verify_std=0.046804,
        fr_steps=103,
        fr_loss=(4.66, 12.85),
        seed_accuracies=[0.648, 0.685, 0.668],
        seed_std=0.018359,
        mean_t0=497.76,
        unet_evals_per_image=37.632,
    )
    cells = _row(r)
    assert cells[7:12] == ["66.7", "4.7", "1.8", "498", "37.6"]
    assert cells[0] == "baseline" and cells[1] == 0.6081 and cells[-1] == "4.66->12.85"
    real = _row(
        Row(
            name="real (DevTrain)",
            metrics=m,
            verify_accuracy=0.6917,
            verify_std=0.0433,
            fr_steps=121,
            seed_accuracies=[0.6917],
        )
    )
    assert real[7:12] == ["69.2", "4.3", None, None, None] and real[-1] is None


def test_paper_directions_say_which_orderings_hold_and_against_the_seed_spread():
    from types import SimpleNamespace

    from uiface_ray.paper.ablation import Row
    from uiface_ray.paper.ablation_report import directions_paragraph, paper_directions

    def row(name, accs, diversity, recall, genuine):
        m = SimpleNamespace(diversity_1_minus_msssim=diversity, fr_recall=recall, genuine_mean=genuine)
        return _seeded_row(Row, name, m, accs)

    rows = [
        row("baseline", [0.60, 0.62, 0.64], 0.30, 0.50, 0.60),
        row("two_stage_fixed", [0.61, 0.63, 0.65], 0.32, 0.45, 0.58),  # +1 point: within the spread
        row("uiface", [0.70, 0.71, 0.72], 0.35, 0.60, 0.55),  # more diverse, less identity than baseline
        row("real (DevTrain)", [0.80, 0.81, 0.82], 0.40, None, 0.70),
    ]
    found = {(d.measure.split(" ")[0], d.better, d.worse): d for d in paper_directions(rows, 3)}
    # only pairs whose rows exist: fixed > baseline on three measures, and uiface > baseline on genuine
    assert set(found) == {
        ("verification", "two_stage_fixed", "baseline"),
        ("diversity", "two_stage_fixed", "baseline"),
        ("recall", "two_stage_fixed", "baseline"),
        ("genuine", "uiface", "baseline"),
    }
    acc = found[("verification", "two_stage_fixed", "baseline")]
    assert acc.holds and acc.beyond_seed_spread is False and abs(acc.difference - 1.0) < 1e-9
    assert not found[("recall", "two_stage_fixed", "baseline")].holds
    assert not found[("genuine", "uiface", "baseline")].holds
    assert found[("diversity", "two_stage_fixed", "baseline")].beyond_seed_spread is None
    text = directions_paragraph(list(found.values()))
    assert text.startswith("The paper's directions at our scale: 2 of 4 hold.")
    assert "baseline + 2-stage-fixed above baseline holds (+1.0 points, within the seed spread)" in text
    assert "genuine similarity (Figure 5): baseline + 2-stage-adaptive + attn above baseline does not hold" in text
    assert directions_paragraph([]) == ""


def test_ablation_config_is_checked_before_any_work():
    from uiface_ray.paper.ablation import check_config
    from uiface_ray.paper.config import AblationConfig

    ok = AblationConfig(model="m", out="o", images_per_identity=6, grid_images=6)
    check_config(ok)
    with pytest.raises(ValueError, match=r"sampler\.bogus"):  # a misspelt sampler key: at load (issue 24)
        AblationConfig(model="m", out="o", sampler={"bogus": 1})
    with pytest.raises(ValueError, match="intervals"):
        check_config(ok.model_copy(update={"intervals": ((500, 100),)}))
