"""The prepared GPU check runs end to end on the CPU with --quick (issue 25, item 4), so it is known
to work before a GPU is ever lent: every row of its table passes, and its synthesize row went
through a fake GPU slot (use_gpu=true) to a complete manifest on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_check_quick_passes_on_cpu(tmp_path):
    table = tmp_path / "table.json"
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", str(Path(os.sys.executable)))}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--quick", "--json", str(table)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["check"]: r for r in json.loads(table.read_text())}
    assert set(rows) == {"parity float32 vs cpu", "throughput float16", "throughput bfloat16", "synthesize use_gpu"}
    assert all(r["ok"] for r in rows.values())
    assert "max |dpix| 0," in rows["parity float32 vs cpu"]["result"]  # the same device: bit-equal
    assert "manifest complete, 8 images, cpu" in rows["synthesize use_gpu"]["result"]
    assert "check" in proc.stdout and "PASS" in proc.stdout and "FAIL" not in proc.stdout
