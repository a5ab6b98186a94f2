"""``jobs/synthesize.py --dry_run``: the plan and an estimate, measured through a real Ray task;
nothing is written (#26 item 9)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tiny_assets import make_tiny_synthesis_inputs, wait_cpus_free

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))
import synthesize  # noqa: E402


def _dry_run(tmp_path, capsys, *extra: str) -> str:
    model, identities = make_tiny_synthesis_inputs(tmp_path / "inputs", num_identities=3)
    argv = [
        "--config=configs/synthesize_tiny.yaml",
        f"--model={model}",
        f"--identities={identities}",
        f"--output={tmp_path / 'out'}",
        "--images_per_identity=5",
        "--identities_per_shard=2",
        "--sampler.num_inference_steps=4",
        "--dry_run=true",
        *extra,
    ]
    assert synthesize.main(argv) == 0
    return capsys.readouterr().out


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys, ray_local):
    out = _dry_run(tmp_path, capsys)
    wait_cpus_free(ray_local)
    assert "[synthesize] plan: 3 identities x 5 images = 15 images in 2 shards (0 images already done)" in out
    assert re.search(r"UNet evaluations: [\d.]+ per image \(mode uiface, 4 steps; mean of 4 probe images\)", out)
    per_image = float(re.search(r"UNet evaluations: ([\d.]+) per image", out).group(1))
    assert 4 <= per_image <= 8  # S + (steps after t0): between one and two passes per step
    assert re.search(r"[\d.e-]+ s per evaluation \(measured on 4 images, cpu\)", out)
    assert "dry run: nothing written" in out and " per device-hour" not in out
    assert not (tmp_path / "out").exists()


def test_dry_run_with_given_seconds_and_price_computes_eta_and_cost(tmp_path, capsys, ray_local):
    out = _dry_run(tmp_path, capsys, "--seconds_per_evaluation=36", "--price_per_device_hour=2.5")
    wait_cpus_free(ray_local)
    evaluations = float(re.search(r"per image .*?\), ([\d,]+) to do", out).group(1).replace(",", ""))
    hours = evaluations * 36 / 3600
    assert "36 s per evaluation (given; evaluations counted on 4 images, cpu)" in out
    assert f"{hours:,.2f} device-hours, {hours * 2.5:,.2f} at 2.5 per device-hour" in out
    actors = int(re.search(r"(\d+) cpu actor", out).group(1))
    eta = hours * 3600 / actors
    assert f"estimate: {int(eta // 3600):02d}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d} with" in out
    assert not (tmp_path / "out").exists()


def test_a_huge_request_is_planned_from_a_probe_of_at_most_25_steps(tmp_path, capsys, ray_local):
    """3 identities x 1,048,576 images x 1000 steps: the probe samples its 4 images at 25 steps and the
    evaluations scale to 1000 (one pass per step at least, two at most); the plan is arithmetic."""
    import time

    start = time.time()
    out = _dry_run(
        tmp_path,
        capsys,
        "--images_per_identity=1048576",
        "--identities_per_shard=1",
        "--sampler.num_inference_steps=1000",
    )
    took = time.time() - start
    wait_cpus_free(ray_local)
    assert "plan: 3 identities x 1048576 images = 3145728 images in 3 shards" in out
    assert "(mode uiface, 1000 steps; mean of 4 probe images, sampled at 25 steps and scaled)" in out
    per_image = float(re.search(r"UNet evaluations: ([\d.]+) per image", out).group(1))
    assert 1000 <= per_image <= 2000
    startup = float(re.search(r"plus (\d+) s to start the actors", out).group(1))
    assert 0 <= startup < took
    assert not (tmp_path / "out").exists()
