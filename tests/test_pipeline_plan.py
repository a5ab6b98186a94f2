"""The pipeline's plan (issue 34 item 4): every stage's estimate with its basis, from a probe whose
size does not depend on the request's; (slow) the estimate against the real run on a fresh copy, and
a request of 10^6 identities planned through real Ray."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from uiface_ray.cli import load_config
from uiface_ray.runtime.config import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]

#: 10^6 identities x 1,048,576 images x 1000 steps (one identity a shard: a shard holds at most 2^20 images)
HUGE = ("--num_identities=1000000", "--images_per_identity=1048576", "--num_inference_steps=1000")
HUGE_FLAGS = (*HUGE, "--identities_per_shard=1", "--stages.train_diffusion.max_steps=1000000")


def _huge_config(tmp_path) -> PipelineConfig:
    from uiface_ray.runtime.pipeline import resolve_pipeline

    flags = [f"--workdir={tmp_path}/work", f"--generator_cache={tmp_path}/gen", *HUGE_FLAGS]
    return resolve_pipeline(load_config(PipelineConfig, ROOT / "configs" / "pipeline.yaml", flags))


def test_the_probe_of_a_huge_request_has_the_probes_fixed_size(tmp_path, monkeypatch):
    """The probe runs the same stages with the same model, encoder, sampler and actors, at a size that
    does not depend on the request's; every probe stage config is valid."""
    from uiface_ray.runtime.estimate_probe import PROBE_STEPS, probe_config
    from uiface_ray.runtime.pipeline import Upstream
    from uiface_ray.runtime.pipeline_stages import STAGES

    monkeypatch.chdir(ROOT)
    cfg = _huge_config(tmp_path)
    up = Upstream(faces="f", embedded="e", embed_stamp="x", generator="g", identities="i", dataset="d", metrics="m")
    train = STAGES[2].plan(cfg, up).config
    probe = probe_config(cfg, str(tmp_path / "probe"), train)
    plans = {stage.name: stage.plan(probe, up).config for stage in STAGES}
    assert (probe.num_identities, probe.images_per_identity, probe.num_inference_steps) == (2, 2, PROBE_STEPS)
    assert plans["train_diffusion"].max_steps == 2 and plans["train_diffusion"].model == train.model
    assert plans["train_diffusion"].batch_size == train.batch_size
    assert plans["make_identities"].max_candidates == plans["make_identities"].candidates_per_task  # one task
    assert plans["prepare_faces"].max_identities * cfg.min_images >= train.batch_size  # one batch of real faces
    assert plans["prepare_faces"].max_identities >= train.grid.num_identities  # the checkpoint's grid rows
    assert plans["synthesize"].sampler.mode == "uiface" and plans["synthesize"].batch_size == 8
    assert plans["synthesize"].output.startswith(str(tmp_path / "probe"))
    assert probe.encoder == cfg.encoder and probe.ray == cfg.ray and probe.num_actors == cfg.num_actors


def test_the_estimate_of_a_huge_request_is_arithmetic(tmp_path, monkeypatch):
    """Each stage's estimate for 10^6 identities x 1,048,576 images x 1000 steps, from probe figures:
    fixed cost + the request's units x the unit cost / actors, with a basis that names them; no
    array or loop grows with the request."""
    from uiface_ray.runtime import estimate as E
    from uiface_ray.runtime.pipeline import Upstream
    from uiface_ray.runtime.pipeline_stages import STAGES

    monkeypatch.chdir(ROOT)
    cfg = _huge_config(tmp_path)
    up = Upstream(faces="f", embedded="e", embed_stamp="x", generator="g", identities="i", dataset="d", metrics="m")
    c = {stage.name: stage.plan(cfg, up).config for stage in STAGES}
    units = E.UnitCosts(encoder_s=0.05, evaluation_s=0.01, evaluations_per_step=1.5, msssim_pair_s=0.02, face_s=0.01)
    images = 10**6 * 1048576
    sizes = E.Sizes(faces=1788, identities=10**6, images=images, train_steps=10**6, cpus=2)
    probe = E.ProbeStage
    start = time.perf_counter()
    synth = E.estimate_synthesis_stage(
        c["synthesize"], c["synthesize"], probe(30.0, {"images": 4, "shards": 1, "actors": 1}), units, sizes
    )
    fixed = 30.0 - 4 * 1.5 * 1000 * 0.01  # the probe sampled at the request's 1000 steps here: all variable
    assert synth.seconds == pytest.approx(max(0.0, fixed) + images * 1.5 * 1000 * 0.01 / 2)
    assert f"{images:,} images on 2 actor(s)" in synth.basis and "1500.0 UNet evaluations per image" in synth.basis
    train = E.estimate_train(c["train_diffusion"], probe(40.0, {"steps": 2, "step_s": 0.5}), units, sizes)
    checkpoints = -(-(10**6) // c["train_diffusion"].checkpoint_every)
    assert train.seconds >= 39.0 + 10**6 * 0.5 and f"{checkpoints} checkpoint(s)" in train.basis
    ident = E.estimate_identities(
        c["make_identities"], c["make_identities"], probe(20.0, {"candidates": 2}), units, sizes
    )
    tasks = -(-(10**6) // 16)
    assert f"{tasks:,} task(s) of 16 on 2 actor(s)" in ident.basis
    embed = E.estimate_embed(c["embed"], probe(8.0, {"images": 24, "actors": 1}), units, sizes)
    assert embed.seconds == pytest.approx(8.0 - 24 * 0.05 + 1788 * 0.05 / 2)
    psizes = E.Sizes(faces=24, identities=2, images=4, train_steps=2, cpus=2)
    metrics = E.estimate_metrics(c["metrics"], c["metrics"], probe(5.0, {"images": 4}), units, sizes, psizes)
    pairs = E.msssim_pairs(10**6, 1048576, c["metrics"].diversity_identities, c["metrics"].diversity_pairs)
    assert f"{pairs:,} MS-SSIM pairs" in metrics.basis and metrics.seconds > images * 0.05
    prepare = E.estimate_prepare(probe(3.0, {"images": 24}), units, sizes)
    assert prepare.seconds == pytest.approx(3.0 - 24 * 0.01 + 1788 * 0.01) and "1,788 faces" in prepare.basis
    export = E.estimate_export(probe(2.0, {"images": 4}), units, sizes)
    assert export.seconds == pytest.approx(2.0 + (images - 4) * 0.01)
    assert time.perf_counter() - start < 1.0
    assert E.duration(synth.seconds).endswith(" days") and E.duration(75) == "1 min 15 s"


def _env(tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", TMPDIR=tmp)
    return env


def _total_s(text: str) -> float:
    """The seconds of the dry run's ``estimate total: 2 min 50 s (...)``."""
    value = re.search(r"estimate total: ([^(]+) \(", text).group(1).strip()
    for pattern, scale in ((r"(\d+) s", (1,)), (r"(\d+) min (\d+) s", (60, 1)), (r"(\d+) h (\d+) min", (3600, 60))):
        found = re.fullmatch(pattern, value)
        if found:
            return sum(int(g) * k for g, k in zip(found.groups(), scale))
    return float(value.removesuffix(" days").replace(",", "")) * 86400


@pytest.mark.slow
def test_the_dry_runs_total_is_within_2x_of_the_real_run_on_a_fresh_copy(lfw_dir, tmp_path):
    """From a fresh copy, as a user runs it: the dry run (its estimate printed, nothing written), the
    real run, then a rerun; the estimate's total is within 2x of the real run's wall time, and the
    rerun's report keeps the first run's and shows the reused stages' original times (items 4, 5)."""
    from test_docs_commands import _fresh_copy
    from test_pipeline import STAGE_NAMES, TINY_PIPELINE_FLAGS

    clone = tmp_path / "clone"
    clone.mkdir()
    _fresh_copy(clone)
    tmp = tempfile.mkdtemp(prefix="uq", dir="/tmp")
    # the README's command (scripts/run.sh runs it) with the docs test's toy sizes; the copy finds
    # the faces at ../shared/data/lfw112, as a clone does
    args = [".venv/bin/python", "jobs/pipeline.py", "--config", "configs/pipeline.yaml", *TINY_PIPELINE_FLAGS]
    try:
        start = time.time()
        dry = subprocess.run(
            [*args, "--dry_run=true"], capture_output=True, text=True, timeout=1800, cwd=clone, env=_env(tmp)
        )
        dry_s = time.time() - start
        assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
        assert not (clone / "out").exists() and not (clone / ".cache").exists()
        estimate = _total_s(dry.stdout)
        rows = [line for line in dry.stdout.splitlines() if line.startswith("[pipeline]   ")]
        for stage in STAGE_NAMES:
            assert any(re.match(rf"\[pipeline\]   {stage} +\d.*  probe: ", row) for row in rows), (stage, rows)
        start = time.time()
        real = subprocess.run(args, capture_output=True, text=True, timeout=2400, cwd=clone, env=_env(tmp))
        real_s = time.time() - start
        assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
        load = os.getloadavg()
        print(f"\ndry run {dry_s:.0f} s, estimate total {estimate:.0f} s, real run {real_s:.0f} s (load {load})")
        print("\n".join(rows))
        assert real_s / 2 <= estimate <= real_s * 2, (estimate, real_s)

        work = clone / "out" / "pipeline"
        (first,) = sorted((work / "runs").glob("*.md"))
        first_text = first.read_text()
        rerun = subprocess.run(args, capture_output=True, text=True, timeout=1200, cwd=clone, env=_env(tmp))
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        reports = sorted((work / "runs").glob("*.md"))
        assert len(reports) == 2 and reports[0] == first and first.read_text() == first_text
        newest = (work / "report.md").read_text()
        assert f"newest run: [runs/{reports[1].name}]" in newest
        embed_s = re.search(r"\| embed \| ([\d.]+) \| ran now", first_text).group(1)
        assert re.search(
            rf"\| embed \| 0\.0 \| reused: ran in run `{first.stem}` at [^,]+, took {embed_s} s \|", newest
        )
        # once everything is done, the dry run probes nothing: the export's last time, and the last run's
        again = subprocess.run(
            [*args, "--dry_run=true"], capture_output=True, text=True, timeout=600, cwd=clone, env=_env(tmp)
        )
        assert again.returncode == 0 and "probing" not in again.stdout, again.stdout[-3000:] + again.stderr[-3000:]
        assert f"the last run's export of this dataset ({reports[1].stem})" in again.stdout
        assert f"[pipeline] the last run of this workdir, {reports[1].stem} at " in again.stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_a_dry_run_of_a_million_identities_plans_in_bounded_time_and_memory(lfw_dir, tmp_path):
    """``--dry_run=true`` with 10^6 identities x 1,048,576 images x 1000 steps: the probe is the toy
    run's size, so it ends like any dry run (exit 0, every stage estimated, a total in days), with no
    worker lost and nothing written (issue 34 item 9)."""
    tmp = tempfile.mkdtemp(prefix="uq", dir="/tmp")
    work = tmp_path / "run"
    args = [
        sys.executable,
        "jobs/pipeline.py",
        "--config",
        "configs/pipeline.yaml",
        f"--workdir={work / 'work'}",
        f"--generator_cache={work / 'gen'}",
        f"--faces_source={lfw_dir / 'images'}",
        f"--people_file={lfw_dir / 'peopleDevTrain.txt'}",
        *HUGE_FLAGS,
        "--dry_run=true",
    ]
    try:
        start = time.time()
        out = subprocess.run(args, capture_output=True, text=True, timeout=1800, cwd=ROOT, env=_env(tmp))
        took = time.time() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nthe huge dry run took {took:.0f} s (load {os.getloadavg()})")
    print(
        "\n".join(line for line in out.stdout.splitlines() if line.startswith(("[pipeline]   ", "[pipeline] estimate")))
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "WorkerCrashedError" not in out.stdout + out.stderr
    assert "1,048,576,000,000 images on" in out.stdout and "1,000,000 steps" in out.stdout
    assert re.search(r"estimate total: [\d,.]+ days", out.stdout)
    assert out.stdout.splitlines()[-1] == "[pipeline] dry run: nothing written"
    assert not work.exists()
