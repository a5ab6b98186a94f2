"""What a resume refuses (issue 27 items 5 and 5b), through jobs/synthesize.py and jobs/export.py on a
tiny model: another batch_size (float32 images depend on it), a truncated manifest, a manifest that
is a symbolic link to another file: each one ``error:`` line, exit 2, nothing written."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from tiny_assets import make_tiny_synthesis_inputs

ROOT = Path(__file__).resolve().parents[1]


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_job", ROOT / "jobs" / f"{name}.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


def _args(model: str, identities: str, out: Path, batch_size: int) -> list[str]:
    return [
        f"--model={model}",
        f"--identities={identities}",
        f"--output={out}",
        "--images_per_identity=2",
        "--identities_per_shard=1",
        f"--batch_size={batch_size}",
        "--sampler.num_inference_steps=3",
        "--actors.num_actors=1",
        "--actors.use_gpu=false",
    ]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _one_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def dataset(ray_local, tmp_path_factory):
    """A finished tiny dataset made with batch_size 2 (3 identities, one shard each)."""
    base = tmp_path_factory.mktemp("guard")
    model, identities = make_tiny_synthesis_inputs(base / "in", num_identities=3)
    out = base / "ds"
    assert _job("synthesize").main(_args(model, identities, out, 2)) == 0
    return model, identities, out


def test_a_resume_with_another_batch_size_is_refused(dataset, tmp_path, capsys):
    import shutil

    model, identities, done = dataset
    out = tmp_path / "ds"
    shutil.copytree(done, out)
    (out / "shards" / "shard-00002.parquet").unlink()  # a run stopped before its last shard
    before = _digest(out)
    line = _one_error(capsys, _job("synthesize").main(_args(model, identities, out, 3)))
    assert "batch_size: 2 -> 3" in line, line
    assert _digest(out) == before


@pytest.mark.parametrize("job", ["synthesize", "export"])
@pytest.mark.parametrize("damage", ["truncated", "symlink"])
def test_a_damaged_or_linked_manifest_is_one_line(dataset, tmp_path, capsys, job, damage):
    import shutil

    model, identities, done = dataset
    out = tmp_path / "ds"
    shutil.copytree(done, out)
    manifest = out / "manifest.json"
    other = tmp_path / "other.json"
    if damage == "truncated":
        manifest.write_bytes(manifest.read_bytes()[:-40])
    else:
        other.write_bytes(manifest.read_bytes())  # a valid manifest elsewhere: still not followed
        manifest.unlink()
        manifest.symlink_to(other)
    before = _digest(tmp_path)
    if job == "synthesize":
        rc = _job("synthesize").main(_args(model, identities, out, 2))
    else:
        rc = _job("export").main([f"--dataset={out}", f"--output={tmp_path / 'export'}"])
    line = _one_error(capsys, rc)
    assert str(manifest) in line and ("is damaged" if damage == "truncated" else "symbolic link") in line, line
    assert "remove the output folder" in line
    assert _digest(tmp_path) == before and manifest.is_symlink() == (damage == "symlink")
