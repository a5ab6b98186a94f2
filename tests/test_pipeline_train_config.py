"""The pipeline's ``--train_config`` goes through the bounded loader of every ``--config`` file (#34
item 9): a missing file, a folder, a FIFO, ``/dev/zero`` and a 2 MiB file each end in one ``error:``
line naming the field, exit 2, within seconds and before Ray starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uiface_ray.config import ConfigError
from uiface_ray.runtime.config import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]


def _cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """case -> (the --train_config value, what its error line says)."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (2 * 1024 * 1024 // 10 + 1))
    (tmp_path / "folder.yaml").mkdir()
    return {
        "missing": (str(tmp_path / "nowhere.yaml"), "config file not found"),
        "folder": (str(tmp_path / "folder.yaml"), "not a regular file"),
        "fifo": (str(fifo), "not a regular file"),
        "dev_zero": ("/dev/zero", "not a regular file"),
        "2 MiB": (str(big), "refusing more than"),
    }


def test_every_bad_train_config_is_one_error_line_and_exit_2(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "TMPDIR": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    runs, cases = {}, _cases(tmp_path)
    for case, (value, _) in cases.items():  # all at once: each pays Python's start-up
        args = [sys.executable, "jobs/pipeline.py", f"--train_config={value}", f"--workdir={tmp_path / 'work'}"]
        runs[case] = (
            subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
            time.time(),
        )
    try:
        for case, (proc, started) in runs.items():
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 2, (case, out[-2000:], err[-2000:])
            assert "Traceback" not in err and err.count("error:") == 1, (case, err[-2000:])
            line = next(line for line in err.splitlines() if line.startswith("error:"))
            assert "train_config" in line and cases[case][1] in line, (case, line)
            assert time.time() - started < 170, case
    finally:
        for proc, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("case", ["missing", "folder", "fifo", "dev_zero", "2 MiB"])
def test_the_loader_names_the_problem(tmp_path, case):
    from uiface_ray.runtime.pipeline_stages import train_config_base

    value, says = _cases(tmp_path)[case]
    start = time.time()
    with pytest.raises(ConfigError) as err:
        train_config_base(PipelineConfig(train_config=value))
    assert time.time() - start < 5
    assert str(err.value).startswith(f"train_config: config file {value}") or value in str(err.value)
    assert says in str(err.value), str(err.value)


def test_a_good_train_config_is_read_as_before():
    import yaml

    from uiface_ray.runtime.pipeline_stages import train_config_base

    path = ROOT / "configs" / "train_diffusion_pipeline.yaml"
    assert train_config_base(PipelineConfig(train_config=str(path))) == yaml.safe_load(path.read_text())
