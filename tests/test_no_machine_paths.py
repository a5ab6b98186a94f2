"""No shipped config, document or code names a folder of one developer's machine (#26 item 10).

Paths in configs and docs are relative (``out/...``) or URLs, so that a fresh clone runs them as
written.  ``deploy/`` is left out: its cluster files name folders on the cluster's own nodes
(``/home/ubuntu/uiface-ray``, ``/root/.aws`` inside the images), which is what they are for.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w./-])/(work|home|root)/[\w.-]")
SCANNED = (".md", ".py", ".yaml", ".yml", ".toml", ".sh", ".cfg", ".txt")
SKIPPED = ("deploy/", "tests/test_deploy_")  # the cluster nodes' own folders (see the docstring)


def shipped_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / f for f in listed if f.endswith(SCANNED) and not f.startswith(SKIPPED) and (ROOT / f).is_file()]


def machine_paths(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line) and "test_no_machine_paths" not in path.name:
                found.append(f"{path}:{number}: {line.strip()[:120]}")
    return found


def test_the_pattern_finds_a_machine_path_and_spares_urls_and_relative_paths(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output: /work/runs/train_diffusion\nmodel: /home/me/m\n")
    good = tmp_path / "good.yaml"
    good.write_text("output: out/train_diffusion\nurl: s3://bucket/work/runs\nlink: https://x.org/home/a\n")
    assert len(machine_paths([bad])) == 2
    assert machine_paths([good]) == []


def test_no_shipped_file_names_a_developer_machine_folder():
    files = shipped_files()
    assert any(f.name == "train_diffusion.yaml" for f in files)
    assert machine_paths(files) == []
