"""``jobs/pipeline.py --dry_run=true``: each stage's plan (stages already complete skipped, as a rerun
skips them) and the synthesis estimate; exit 0 and nothing written (#26 item 9, the pipeline)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tiny_assets import make_tiny_synthesis_inputs

ROOT = Path(__file__).resolve().parents[1]


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, mtime in ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _dry_run(args: list[str]) -> subprocess.CompletedProcess:
    tmp = tempfile.mkdtemp(prefix="uq", dir="/tmp")  # TMPDIR, short: Ray's socket paths live under it
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", "TMPDIR": tmp}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "jobs/pipeline.py", "--config", "configs/pipeline.yaml", *args, "--dry_run=true"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _lfw_args(lfw_dir: Path, work: Path) -> list[str]:
    return [
        f"--workdir={work / 'work'}",
        f"--generator_cache={work / 'gen'}",
        f"--faces_source={lfw_dir / 'images'}",
        f"--people_file={lfw_dir / 'peopleDevTrain.txt'}",
    ]


def test_a_fresh_dry_run_prints_every_stage_and_creates_nothing(lfw_dir, tmp_path):
    run = tmp_path / "run"
    out = _dry_run([*_lfw_args(lfw_dir, run), "--estimate=false"])  # the plan alone (the estimate: test_pipeline_plan)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    stages = ("prepare_faces", "embed", "train_diffusion", "make_identities", "synthesize", "metrics", "export")
    for i, stage in enumerate(stages, start=1):
        assert any(line.startswith(f"[pipeline] {i}/7 {stage}: would ") for line in lines), out.stdout
    table, gen = run / "work" / "faces_dlib.parquet", run / "gen"
    assert f"would train steps 0 -> 60 (batch 16) on {table} -> {gen}/" in out.stdout
    assert "x 4 images (2 identities per shard, mode uiface, 25 steps)" in out.stdout
    assert "rerun with --dry_run=true once stages 3 and 4 are complete" in out.stdout
    assert lines[-1] == "[pipeline] dry run: nothing written"
    assert not run.exists()  # neither the workdir nor the generator cache


@pytest.mark.slow
def test_a_resumed_dry_run_skips_complete_stages_and_estimates_synthesis(lfw_dir, tmp_path, monkeypatch):
    """Stages 1, 2 and 4 complete for this config, a given generator: they are skipped, and the
    synthesis estimate runs its probe through a real Ray task; the tree is unchanged."""
    from uiface_ray.cli import load_config
    from uiface_ray.runtime.config import PipelineConfig
    from uiface_ray.runtime.pipeline import Upstream, mark_complete, resolve_pipeline
    from uiface_ray.runtime.pipeline_stages import plan_embed, plan_identities, plan_prepare_faces

    model, identities = make_tiny_synthesis_inputs(tmp_path / "inputs", num_identities=3)
    work = tmp_path / "work"
    args = [
        *_lfw_args(lfw_dir, tmp_path),
        f"--generator={model}",
        "--num_inference_steps=4",
        "--images_per_identity=3",
        "--stages.synthesize.price_per_device_hour=2",
    ]
    monkeypatch.chdir(ROOT)
    cfg = resolve_pipeline(load_config(PipelineConfig, ROOT / "configs" / "pipeline.yaml", args))
    work.mkdir()
    faces = plan_prepare_faces(cfg, Upstream())
    embed = plan_embed(cfg, Upstream(faces=faces.produces["faces"]))
    ident = plan_identities(cfg, Upstream(embedded=embed.produces["embedded"], generator=cfg.generator))
    for plan, marker in ((faces, "faces.parquet"), (embed, "faces_dlib.parquet"), (ident, "identities.parquet")):
        assert plan.complete_marker == str(work / marker)
        shutil.copy(identities, work / marker)  # any file: the stamp is what says complete
        mark_complete(plan.complete_marker, plan.config, cfg.storage)
    before = _tree(tmp_path)

    out = _dry_run(args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for i, stage in ((1, "prepare_faces"), (2, "embed"), (4, "make_identities")):
        assert f"[pipeline] {i}/7 {stage}: already complete, would skip" in out.stdout
    assert f"[pipeline] 3/7 train_diffusion: would reuse the generator {model} (--generator)" in out.stdout
    assert "[pipeline]     plan: 3 identities x 3 images = 9 images in 2 shards (0 images already done)" in out.stdout
    assert "(mode uiface, 4 steps; mean of 4 probe images)" in out.stdout
    assert "s per evaluation (measured on 4 images, cpu)" in out.stdout and "at 2 per device-hour" in out.stdout
    assert "[pipeline] 6/7 metrics: would measure" in out.stdout and "[pipeline] 7/7 export: would export" in out.stdout
    assert out.stdout.splitlines()[-1] == "[pipeline] dry run: nothing written"
    after = _tree(tmp_path)
    assert after == before
