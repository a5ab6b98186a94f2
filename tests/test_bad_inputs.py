"""Every bad input of tests/bad_inputs.py: exit 2, one `error:` line naming it, no traceback, nothing
written; docs/RELIABILITY.md lists exactly these cases; and a seeded fuzz of configs and truncated files."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import CASES, ROOT, _faces_tree, markdown_table


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import torch

    from tiny_assets import make_tiny_synthesis_inputs
    from uiface_ray.data import PrepareFacesConfig, prepare_faces
    from uiface_ray.encoders import build_iresnet

    base = tmp_path_factory.mktemp("assets")
    model, identities = make_tiny_synthesis_inputs(base / "synth", num_identities=3)
    torch.manual_seed(0)
    torch.save(build_iresnet(18, 16).state_dict(), base / "backbone.pth")
    faces = prepare_faces(
        PrepareFacesConfig(input=str(_faces_tree(base, {})), resolution=32, output=str(base / "faces.parquet")),
        log=lambda _m: None,
    )
    return {
        "model": model,
        "identities": identities,
        "backbone": str(base / "backbone.pth"),
        "faces": faces.table.output,
    }


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_line(name, assets, tmp_path, capsys, request):
    case = CASES[name]
    if "synth" in case.needs or case.job == "embed":
        request.getfixturevalue("ray_local")  # jobs reuse the session's Ray instead of starting one
    if "s3" in case.needs:
        request.getfixturevalue("s3_server")
    argv = case.build(tmp_path, assets)
    rc = _job(case.job).main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and len(errors[0]) < 600, err[-3000:]
    # besides the error: progress lines ("[stage] ...") before it, or the keys of a config error after it
    others = [ln for ln in lines if not ln.startswith(("error: ", "[", "  "))]
    assert others == [], err[-3000:]
    assert re.search(case.sees, err), (case.sees, err[-2000:])
    out = tmp_path / case.output
    assert not out.exists() or (out.is_dir() and not any(out.iterdir())), f"{case.output} was written"


def test_reliability_doc_lists_every_case():
    doc = (ROOT / "docs" / "RELIABILITY.md").read_text()
    assert markdown_table() in doc, "regenerate the table: .venv/bin/python tests/bad_inputs.py"


# ---------------------------------------------------------------------------------------------
# seeded fuzz: random config values, and truncations of every kind of file the jobs read

FUZZ_VALUES = ["-1", "0", "nan", "inf", "[]", "{}", "''", "null", "1e309", "[1, [2]]", "x" * 300, "-1e9", "true"]
FUZZ_KEYS = [
    "images_per_identity",
    "identities_per_shard",
    "batch_size",
    "seed",
    "sampler.mode",
    "sampler.num_inference_steps",
    "sampler.guidance_scale",
    "actors.num_actors",
    "image_format",
    "jpeg_quality",
    "output",
    "model",
    "identities",
    "storage.endpoint_url",
    "actors.dtype",
]


def test_fuzzed_config_values_never_crash(assets, tmp_path, capsys, ray_local, monkeypatch):
    """40 random (key, value) overrides: either the job accepts them and finishes, or exit 2 in one line.

    A fuzzed ``output`` such as ``-1`` is a valid relative path: the job runs in a scratch folder so
    that it lands there, not in the folder pytest was started from."""
    rng = np.random.default_rng(20261202)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    job = _job("synthesize")
    for i in range(40):
        key = FUZZ_KEYS[int(rng.integers(len(FUZZ_KEYS)))]
        value = FUZZ_VALUES[int(rng.integers(len(FUZZ_VALUES)))]
        out = tmp_path / f"o{i}"
        argv = [
            f"--model={assets['model']}",
            f"--identities={assets['identities']}",
            f"--output={out}",
            "--images_per_identity=1",
            "--sampler.num_inference_steps=1",
            f"--{key}={value}",
        ]
        rc = job.main(argv)
        err = capsys.readouterr().err
        assert rc in (0, 2), (key, value, err[-2000:])
        assert "Traceback" not in err, (key, value, err[-2000:])
        if rc == 2:
            assert [ln for ln in err.splitlines() if ln.startswith("error: ")], (key, value, err)
            assert not (out / "manifest.json").exists(), (key, value)
    relative = sorted(p.name for p in cwd.iterdir())
    assert set(relative) <= set(FUZZ_VALUES), relative  # only fuzzed relative outputs, nothing else


def _truncations(data: bytes, rng) -> list[bytes]:
    cuts = sorted({0, 1, len(data) // 2, len(data) - 1, int(rng.integers(1, max(2, len(data))))})
    # a cut that only drops trailing whitespace (a text file's last newline) leaves the same content
    return [data[:c] for c in cuts if c < len(data) and data[:c].rstrip() != data.rstrip()]


def test_truncated_files_of_every_kind(assets, tmp_path, capsys, ray_local):
    """Face table, identity table, model weights and configs, .rec, .idx, .bin, pairs: each truncated
    at several points is refused with exit 2 and one line (seeded)."""
    import pickle
    import shutil

    from bad_inputs import _jpeg, _rec

    rng = np.random.default_rng(7)
    synth, prep, verify, train = _job("synthesize"), _job("prepare_faces"), _job("verify"), _job("train_diffusion")
    model_files = [p.relative_to(assets["model"]) for p in Path(assets["model"]).rglob("*") if p.is_file()]
    checked = 0
    rec_dir = tmp_path / "recsrc"
    rec_dir.mkdir()
    rec = _rec(rec_dir, idx_lines=lambda ls: ls)
    kinds = {
        "identity table": Path(assets["identities"]),
        "face table": Path(assets["faces"]),
        "rec": rec,
        "idx": rec.with_suffix(".idx"),
        "bin": None,
        **{f"model {f}": Path(assets["model"]) / f for f in model_files},
    }
    bin_bytes = pickle.dumps(([_jpeg(1, 112), _jpeg(2, 112)], [True]))
    for kind, src in kinds.items():
        data = bin_bytes if kind == "bin" else src.read_bytes()
        for n, cut in enumerate(_truncations(data, rng)):
            case = tmp_path / f"{kind.replace(' ', '_').replace('/', '_')}-{n}"
            case.mkdir()
            out = case / "out"
            if kind == "identity table":
                (case / "t.parquet").write_bytes(cut)
                argv, job = (
                    [f"--model={assets['model']}", f"--identities={case / 't.parquet'}", f"--output={out}"],
                    synth,
                )
            elif kind == "face table":
                (case / "f.parquet").write_bytes(cut)
                argv = [
                    f"--data.table={case / 'f.parquet'}",
                    f"--output={out}",
                    "--model.image_size=16",
                    "--max_steps=1",
                ]
                job = train
            elif kind in ("rec", "idx"):
                shutil.copy(rec, case / "train.rec")
                shutil.copy(rec.with_suffix(".idx"), case / "train.idx")
                (case / f"train.{kind}").write_bytes(cut)
                argv, job = [f"--input={case / 'train.rec'}", f"--output={out / 'f.parquet'}"], prep
            elif kind == "bin":
                (case / "x.bin").write_bytes(cut)
                argv = [
                    "--encoder.kind=iresnet",
                    f"--encoder.path={assets['backbone']}",
                    "--encoder.depth=18",
                    "--encoder.embedding_dim=16",
                    "--sets",
                    f'[{{"name": "b", "bin": "{case / "x.bin"}"}}]',
                    f"--out={out}",
                ]
                job = verify
            else:
                shutil.copytree(assets["model"], case / "model")
                (case / "model" / kind.split(" ", 1)[1]).write_bytes(cut)
                argv, job = (
                    [f"--model={case / 'model'}", f"--identities={assets['identities']}", f"--output={out}"],
                    synth,
                )
            rc = job.main(argv)
            err = capsys.readouterr().err
            assert rc == 2, (kind, len(cut), err[-2000:])
            assert "Traceback" not in err and "error: " in err, (kind, len(cut), err[-2000:])
            assert not out.exists() or not any(out.rglob("*.parquet")), (kind, len(cut))
            checked += 1
    assert checked >= 25
