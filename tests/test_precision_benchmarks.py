"""The precision benchmarks of issue 25 (item 2) run end to end on --quick: the training curves of the
demo generator in float32 and bf16 autocast (CSV, PNG, table, both models), then the image cost of
bf16 on the float32 model it trained (pixels, adaptive t0, dlib cosine of each pair)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train_tables import write_face_table

ROOT = Path(__file__).resolve().parents[1]
LFW = Path(os.environ.get("UIFACE_LFW_DIR", ROOT.parent / "shared" / "data" / "lfw112"))


def _run(script: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_training_curves_then_image_cost_quick(tmp_path):
    if not (LFW / "images").is_dir():
        pytest.skip(f"LFW faces not found at {LFW} (set UIFACE_LFW_DIR)")
    table = write_face_table(str(tmp_path / "faces.parquet"), LFW, num_people=3, per_person=3)
    out = tmp_path / "curves"
    text = _run(
        "precision_train_curves.py", "--table", table, "--quick", "--threads", "1", "--out", str(out), cwd=tmp_path
    )
    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss_float32", "s_per_step_float32", "load1"} <= set(rows[0])
    other = next(k for k in rows[0] if k.startswith("loss_") and k != "loss_float32")
    assert all(float(r["loss_float32"]) > 0 and float(r[other]) > 0 for r in rows)
    assert rows[0]["loss_float32"] != "" and (out / "curves.png").stat().st_size > 1000
    assert "mean |loss difference| per step" in text and "s/step float32" in text
    model = out / "model_float32"
    assert model.is_dir()
    text = _run(
        "precision_cost.py",
        "--model",
        str(model),
        "--table",
        table,
        "--images",
        "3",
        "--batch",
        "3",
        "--steps",
        "10",
        cwd=tmp_path,
    )
    assert "adaptive t0 differs for" in text
    line = next(x for x in text.splitlines() if x.startswith("dlib cosine of each float32/"))
    mean = float(line.split("mean ")[1].split(",")[0])
    assert 0.0 < mean <= 1.0
