"""The bad-input table: every input a user can get wrong, and the one line the job answers with.

Each case builds its bad input under a temporary folder and names the job, its arguments and the
message the user sees.  ``tests/test_bad_inputs.py`` runs every case (exit 2, one ``error:`` line,
no traceback, nothing written) and checks that ``docs/RELIABILITY.md`` lists exactly these cases
(regenerate the table with ``.venv/bin/python tests/bad_inputs.py``).
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    job: str  # jobs/<job>.py
    what: str  # the bad input, as the table says it
    sees: str  # regex of the error line (after 'error: '), also the table's "what the user sees"
    build: Callable[[Path, dict], list[str]]  # (tmp dir, shared assets) -> the job's arguments
    output: str = "out"  # the output under tmp that must not exist afterwards
    needs: tuple[str, ...] = ()  # shared assets: 'synth' (tiny model + identity table), 'lfw', 's3'


# ---------------------------------------------------------------------------------------------
# builders


def _jpeg(value: int = 90, size: int = 32) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _identity_table(path: Path, emb: np.ndarray, ids=None) -> str:
    from uiface_ray import storage

    n = len(emb)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    storage.write_table(
        str(path),
        {
            "identity_id": ids,
            "embedding": list(np.asarray(emb, np.float32)),
            "seed": np.arange(n),
            "nn_similarity": np.zeros(n, np.float32),
        },
    )
    return str(path)


def _unit(n: int = 3, dim: int = 128) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _synth(tmp: Path, a: dict, *extra: str, identities: str | None = None, model: str | None = None) -> list[str]:
    return [
        f"--model={model or a['model']}",
        f"--identities={identities or a['identities']}",
        f"--output={tmp / 'out'}",
        "--images_per_identity=1",
        "--sampler.num_inference_steps=2",
        *extra,
    ]


def _table_case(mutate: Callable[[np.ndarray], tuple[np.ndarray, object]]):
    def build(tmp: Path, a: dict) -> list[str]:
        emb, ids = mutate(_unit())
        return _synth(tmp, a, identities=_identity_table(tmp / "t.parquet", emb, ids))

    return build


def _set(emb, row, col, value):
    emb = emb.copy()
    emb[row, col] = value
    return emb


def _faces_tree(tmp: Path, bad: dict[str, bytes]) -> Path:
    root = tmp / "faces"
    for person in ("alice", "bob"):
        (root / person).mkdir(parents=True)
        for i in range(2):
            (root / person / f"{i}.jpg").write_bytes(_jpeg(40 * i + 20))
    for name, data in bad.items():
        (root / "bob" / name).write_bytes(data)
    return root


def _prepare(tmp: Path, root: Path | str) -> list[str]:
    return [f"--input={root}", f"--output={tmp / 'out' / 'faces.parquet'}"]


def _rec(tmp: Path, idx_text: str | None = None, idx_lines: Callable[[list[str]], list[str]] | None = None) -> Path:
    from uiface_ray.data import write_recordio

    rec = tmp / "train.rec"
    write_recordio(str(rec), None, [(float(i // 2), _jpeg(10 * i + 5)) for i in range(4)])
    idx = tmp / "train.idx"
    lines = idx.read_text().splitlines()
    idx.write_text(idx_text if idx_text is not None else "\n".join(idx_lines(lines)) + "\n")
    return rec


def _past_end(lines: list[str]) -> list[str]:
    key, _ = lines[-1].split("\t")
    return lines[:-1] + [f"{key}\t{10**9}"]


def _mid_record(lines: list[str]) -> list[str]:
    key, off = lines[1].split("\t")
    return [lines[0], f"{key}\t{int(off) + 3}"] + lines[2:]


class _System:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _Eval:
    def __reduce__(self):
        return (eval, ("1+1",))


def _verify(tmp: Path, a: dict, sets: list[dict]) -> list[str]:
    import json

    return [
        "--encoder.kind=iresnet",
        f"--encoder.path={a['backbone']}",
        "--encoder.depth=18",
        "--encoder.embedding_dim=16",
        "--sets",
        json.dumps(sets),
        f"--out={tmp / 'out'}",
    ]


def _bin(tmp: Path, a: dict, payload: bytes) -> list[str]:
    (tmp / "x.bin").write_bytes(payload)
    return _verify(tmp, a, [{"name": "b", "bin": str(tmp / "x.bin")}])


def _pairs(tmp: Path, a: dict, text: str | bytes, images: bool = True) -> list[str]:
    root = tmp / "imgs"
    if images:
        for name in ("Al", "Bo"):
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in (1, 2):
                (root / name / f"{name}_{i:04d}.jpg").write_bytes(_jpeg(60 * i, 112))
    (tmp / "pairs.txt").write_bytes(text if isinstance(text, bytes) else text.encode())
    return _verify(tmp, a, [{"name": "p", "pairs": str(tmp / "pairs.txt"), "images_root": str(root)}])


def _evil_pth(tmp: Path, legacy: bool) -> Path:
    import torch

    path = tmp / "evil.pth"
    torch.save({"w": _System()}, path, _use_new_zipfile_serialization=not legacy)
    return path


def _embed(tmp: Path, a: dict, legacy: bool) -> list[str]:
    return [
        f"--input={a['faces']}",
        f"--output={tmp / 'out' / 'emb.parquet'}",
        "--encoder.kind=iresnet",
        f"--encoder.path={_evil_pth(tmp, legacy)}",
        "--encoder.depth=18",
        "--encoder.embedding_dim=16",
        "--num_actors=1",
    ]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _damaged_model(tmp: Path, a: dict, rel: str, cut: bool) -> str:
    import shutil

    model = tmp / "model"
    shutil.copytree(a["model"], model)
    target = model / rel
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2] if cut else b"{not json")
    return str(model)


def _dataset(tmp: Path, truncate: bool) -> Path:
    """A finished tiny dataset (synth core only), optionally with its first shard cut in half."""
    from uiface_ray import storage
    from uiface_ray.synth.manifest import Manifest, ShardRecord, write_manifest
    from uiface_ray.synth.plan import plan_shards
    from uiface_ray.synth.shard import ShardRows, encode_image, encode_shard, sha256

    ds = tmp / "ds"
    plan = plan_shards(2, 1, 2)
    man = Manifest({"model_hash": "abc", "seed": 1}, 2, 2, len(plan), job_config={"identities": ""})
    for spec in plan:
        ids = np.full(2, spec.index)
        rows = ShardRows(
            ids,
            np.arange(2),
            ids * 10,
            [encode_image(np.zeros((8, 8, 3), np.uint8), "png")] * 2,
            np.full(2, 500),
            "uiface",
            "abc",
        )
        data = encode_shard(rows)
        storage.write_bytes_atomic(str(ds / "shards" / spec.name), data)
        man.shards.append(ShardRecord(spec.name, spec.index, 2, sha256(data)))
    write_manifest(str(ds), man)
    if truncate:
        first = sorted((ds / "shards").iterdir())[0]
        first.write_bytes(first.read_bytes()[:100])
    return ds


def _yaml(tmp: Path, text: str) -> Path:
    (tmp / "c.yaml").write_text(text)
    return tmp / "c.yaml"


def _alias_bomb(levels: int, width: int = 9, key: str = "seed") -> str:
    """A YAML 'billion laughs': ``levels`` lists of ``width`` aliases of the one before (width**levels values)."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines + [f"{key}: *a{levels - 1}"]) + "\n"


#: 100,000 nested JSON arrays: json.loads raised RecursionError (a traceback) before the bounded reader.
NESTED_JSON = b"[" * 100_000 + b"]" * 100_000


def _npy_claiming(tmp: Path, shape: tuple[int, ...]) -> str:
    """A .npy whose header claims ``shape`` (float32) followed by 4 rows of data only."""
    path = tmp / "identities.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
        fh.write(_unit(4).astype("<f4").tobytes())
    return str(path)


def _overflowing_model(tmp: Path, a: dict) -> str:
    """The tiny model with its UNet's last conv scaled by 1e38: eps overflows, the latents turn NaN."""
    import torch

    from uiface_ray.model import load_model, save_model

    model = load_model(a["model"], "cpu")
    with torch.no_grad():
        model.unet.conv_out.weight.mul_(1e38)
    save_model(model, str(tmp / "overflow"))
    return str(tmp / "overflow")


# ---------------------------------------------------------------------------------------------
# the table

CASES: dict[str, Case] = {
    # --- config (every job shares this path; shown on synthesize) ---
    "config-key-typo-cli": Case(
        "synthesize",
        "a misspelt key on the command line (`--images_per_identty=3`)",
        r"images_per_identty: unknown key \(did you mean 'images_per_identity'\?\)",
        lambda t, a: _synth(t, a, "--images_per_identty=3"),
        needs=("synth",),
    ),
    "config-key-typo-yaml": Case(
        "synthesize",
        "a misspelt key in the YAML file",
        r"seeed: unknown key .*c\.yaml",
        lambda t, a: _synth(t, a, "--config", str(_yaml(t, "seeed: 3\n"))),
        needs=("synth",),
    ),
    "config-yaml-list": Case(
        "synthesize",
        "a YAML file holding a list",
        r"must hold a mapping of keys, not list",
        lambda t, a: _synth(t, a, "--config", str(_yaml(t, "- 1\n- 2\n"))),
        needs=("synth",),
    ),
    "config-bad-yaml": Case(
        "synthesize",
        "a YAML file that is not YAML",
        r"is not valid YAML",
        lambda t, a: _synth(t, a, "--config", str(_yaml(t, "a: [1,\n"))),
        needs=("synth",),
    ),
    "config-images-negative": Case(
        "synthesize",
        "`images_per_identity: -1`",
        r"images_per_identity: Input should be "
        r"greater than or equal to 1",
        lambda t, a: _synth(t, a, "--images_per_identity=-1"),
        needs=("synth",),
    ),
    "config-images-zero": Case(
        "synthesize",
        "`images_per_identity: 0`",
        r"images_per_identity: Input should be "
        r"greater than or equal to 1",
        lambda t, a: _synth(t, a, "--images_per_identity=0"),
        needs=("synth",),
    ),
    "config-unknown-mode": Case(
        "synthesize",
        "an unknown sampler mode",
        r"sampler\.mode: Input should be",
        lambda t, a: _synth(t, a, "--sampler.mode=fancy"),
        needs=("synth",),
    ),
    "config-secret-not-echoed": Case(
        "synthesize",
        "a wrong-typed secret key (`--storage.secret_access_key=[9876]`)",
        r"secret_access_key: .*\(value hidden: secret field\)",
        lambda t, a: _synth(t, a, "--storage.secret_access_key=[98765432109876543210]"),
        needs=("synth",),
    ),
    # --- identity tables ---
    "table-nan": Case(
        "synthesize",
        "an identity table with a NaN",
        r"NaN",
        _table_case(lambda e: (_set(e, 1, 5, np.nan), None)),
        needs=("synth",),
    ),
    "table-inf": Case(
        "synthesize",
        "an identity table with an inf",
        r"NaN or inf|inf",
        _table_case(lambda e: (_set(e, 0, 0, np.inf), None)),
        needs=("synth",),
    ),
    "table-wrong-dim": Case(
        "synthesize",
        "embeddings of the wrong dimension",
        r"dim 64.*expects 128",
        _table_case(lambda e: (e[:, :64], None)),
        needs=("synth",),
    ),
    "table-zero-row": Case(
        "synthesize",
        "an all-zero embedding",
        r"all-zero embedding at row 2",
        _table_case(lambda e: (_set(e, 2, slice(None), 0.0), None)),
        needs=("synth",),
    ),
    "table-empty": Case(
        "synthesize", "an identity table with no rows", r"empty", _table_case(lambda e: (e[:0], None)), needs=("synth",)
    ),
    "table-duplicate-ids": Case(
        "synthesize", "duplicate identity ids", r"not unique", _table_case(lambda e: (e, [0, 1, 1])), needs=("synth",)
    ),
    "table-not-parquet": Case(
        "synthesize",
        "an identity table that is not Parquet",
        r"t\.parquet",
        lambda t, a: _synth(t, a, identities=_write(t / "t.parquet", b"id,embedding\n")),
        needs=("synth",),
    ),
    # --- model, output, storage ---
    "model-truncated-unet": Case(
        "synthesize",
        "a truncated unet/*.safetensors",
        r"diffusion_pytorch_model\.safetensors: not a readable safetensors file",
        lambda t, a: _synth(t, a, model=_damaged_model(t, a, "unet/diffusion_pytorch_model.safetensors", cut=True)),
        needs=("synth",),
    ),
    "model-truncated-context": Case(
        "synthesize",
        "a truncated context_encoder.safetensors",
        r"context_encoder\.safetensors: not a readable safetensors file",
        lambda t, a: _synth(t, a, model=_damaged_model(t, a, "context_encoder.safetensors", cut=True)),
        needs=("synth",),
    ),
    "model-garbage-unet-config": Case(
        "synthesize",
        "a garbage unet/config.json",
        r"unet/config\.json: not valid JSON",
        lambda t, a: _synth(t, a, model=_damaged_model(t, a, "unet/config.json", cut=False)),
        needs=("synth",),
    ),
    "model-garbage-marker": Case(
        "synthesize",
        "a garbage uiface.json",
        r"uiface\.json: not valid JSON",
        lambda t, a: _synth(t, a, model=_damaged_model(t, a, "uiface.json", cut=False)),
        needs=("synth",),
    ),
    "model-missing": Case(
        "synthesize",
        "a model folder that does not exist",
        r"no UIFace model at .*nope",
        lambda t, a: _synth(t, a, model=str(t / "nope")),
        needs=("synth",),
    ),
    "output-is-a-file": Case(
        "synthesize",
        "an output path under a plain file",
        r"not writable",
        lambda t, a: _synth(t, a)[:2] + [f"--output={_write(t / 'out', b'a file')}/ds"],
        output="out/ds",
        needs=("synth",),
    ),
    "s3-missing-bucket": Case(
        "synthesize",
        "an output in a bucket that does not exist",
        r"no-such-bucket-x7",
        lambda t, a: _synth(t, a)[:2] + ["--output=s3://no-such-bucket-x7/ds"],
        needs=("synth", "s3"),
    ),
    "s3-endpoint-down": Case(
        "synthesize",
        "an S3 endpoint that is down",
        r"not writable|cannot",
        lambda t, a: _synth(t, a)[:2] + ["--output=s3://any-bucket/ds", "--storage.endpoint_url=http://127.0.0.1:9"],
        needs=("synth",),
    ),
    # --- prepare_faces ---
    "faces-corrupt-jpeg": Case(
        "prepare_faces",
        "a corrupt JPEG in a face folder",
        r"unreadable image .*bad\.jpg",
        lambda t, a: _prepare(t, _faces_tree(t, {"bad.jpg": _jpeg()[:40]})),
    ),
    "faces-zero-byte": Case(
        "prepare_faces",
        "a zero-byte image file",
        r"unreadable image .*empty\.jpg",
        lambda t, a: _prepare(t, _faces_tree(t, {"empty.jpg": b""})),
    ),
    "faces-fake-png": Case(
        "prepare_faces",
        "a text file named .png",
        r"unreadable image .*fake\.png",
        lambda t, a: _prepare(t, _faces_tree(t, {"fake.png": b"just text"})),
    ),
    "faces-all-three": Case(
        "prepare_faces",
        "all three at once",
        r"unreadable image",
        lambda t, a: _prepare(t, _faces_tree(t, {"bad.jpg": _jpeg()[:40], "empty.jpg": b"", "fake.png": b"just text"})),
    ),
    "faces-missing-folder": Case(
        "prepare_faces",
        "a face folder that does not exist",
        r"image folder not found",
        lambda t, a: _prepare(t, t / "nowhere"),
    ),
    "rec-idx-past-end": Case(
        "prepare_faces",
        "a .idx entry pointing past the end of the .rec",
        r"train\.(rec|idx)",
        lambda t, a: _prepare(t, _rec(t, idx_lines=_past_end)),
    ),
    "rec-idx-mid-record": Case(
        "prepare_faces",
        "a .idx entry pointing into the middle of a record",
        r"train\.(rec|idx)",
        lambda t, a: _prepare(t, _rec(t, idx_lines=_mid_record)),
    ),
    "rec-idx-garbage": Case(
        "prepare_faces",
        "a garbage line in the .idx",
        r"train\.idx",
        lambda t, a: _prepare(t, _rec(t, idx_lines=lambda ls: ls + ["not a line"])),
    ),
    # --- verify ---
    "pairs-missing-image": Case(
        "verify",
        "a pairs line naming an image that does not exist",
        r"Zed_0001\.jpg",
        lambda t, a: _pairs(t, a, "1\nZed\t1\t2\n"),
        needs=("backbone",),
    ),
    "pairs-negative-index": Case(
        "verify",
        "a negative image number",
        r"1-based",
        lambda t, a: _pairs(t, a, "1\nAl\t-1\t2\n"),
        needs=("backbone",),
    ),
    "pairs-two-fields": Case(
        "verify",
        "a pairs line with 2 fields",
        r"expected 3 or 4 fields, got 2",
        lambda t, a: _pairs(t, a, "1\nAl\t1\n"),
        needs=("backbone",),
    ),
    "pairs-not-integer": Case(
        "verify",
        "a non-integer image number",
        r"image numbers must be integers",
        lambda t, a: _pairs(t, a, "1\nAl\tone\t2\n"),
        needs=("backbone",),
    ),
    "pairs-five-fields": Case(
        "verify",
        "a pairs line with 5 fields",
        r"expected 3 or 4 fields, got 5",
        lambda t, a: _pairs(t, a, "1\nAl\t1\tBo\t2\t3\n"),
        needs=("backbone",),
    ),
    "pairs-empty": Case(
        "verify", "an empty pairs file", r"empty pairs file", lambda t, a: _pairs(t, a, ""), needs=("backbone",)
    ),
    "pairs-no-count-line": Case(
        "verify",
        "a pairs file without its count line",
        r"line 1: expected a count",
        lambda t, a: _pairs(t, a, "Al\t1\t2\n"),
        needs=("backbone",),
    ),
    "pairs-binary": Case(
        "verify",
        "a binary file given as pairs",
        r"not a text pairs file",
        lambda t, a: _pairs(t, a, b"\xff\xfe\x00\x81" * 8),
        needs=("backbone",),
    ),
    "bin-os-system": Case(
        "verify",
        "a .bin pickle that calls os.system",
        r"refusing global (posix|os)\.system",
        lambda t, a: _bin(t, a, pickle.dumps(([_System()], [True]))),
        needs=("backbone",),
    ),
    "bin-eval": Case(
        "verify",
        "a .bin pickle that calls eval",
        r"refusing global builtins\.eval",
        lambda t, a: _bin(t, a, pickle.dumps(([_Eval()], [True]))),
        needs=("backbone",),
    ),
    "bin-pickle-of-42": Case(
        "verify",
        "a .bin that is a pickle of 42",
        r"expected a pickle of \(bins, issame_list\)",
        lambda t, a: _bin(t, a, pickle.dumps(42)),
        needs=("backbone",),
    ),
    "bin-not-images": Case(
        "verify",
        "a .bin whose image bytes are not images",
        r"image 0 cannot be decoded",
        lambda t, a: _bin(t, a, pickle.dumps(([b"xx", b"yy"], [True]))),
        needs=("backbone",),
    ),
    "bin-no-pairs": Case(
        "verify",
        "a .bin with no pairs",
        r"no pairs",
        lambda t, a: _bin(t, a, pickle.dumps(([], []))),
        needs=("backbone",),
    ),
    "bin-truncated": Case(
        "verify",
        "a truncated .bin",
        r"not a readable pickle",
        lambda t, a: _bin(t, a, pickle.dumps(([_jpeg(), _jpeg()], [True]))[:-30]),
        needs=("backbone",),
    ),
    "pth-code-zip": Case(
        "verify",
        "a .pth (zip) whose pickle would run code",
        r"refusing checkpoint .*could run code",
        lambda t, a: _verify(t, {"backbone": _evil_pth(t, legacy=False)}, [{"name": "b", "bin": str(t / "none.bin")}]),
    ),
    "pth-code-legacy": Case(
        "verify",
        "a legacy .pth whose pickle would run code",
        r"refusing checkpoint .*could run code",
        lambda t, a: _verify(t, {"backbone": _evil_pth(t, legacy=True)}, [{"name": "b", "bin": str(t / "none.bin")}]),
    ),
    "pth-code-embed": Case(
        "embed",
        "a .pth whose pickle would run code, through embed",
        r"refusing checkpoint .*could run code",
        lambda t, a: _embed(t, a, legacy=False),
        needs=("faces",),
    ),
    # --- export ---
    "export-truncated-shard": Case(
        "export",
        "export of a dataset with a truncated shard",
        r"shard-00000\.parquet",
        lambda t, a: [f"--dataset={_dataset(t, truncate=True)}", f"--output={t / 'out'}"],
    ),
    "export-missing-metrics": Case(
        "export",
        "export with --metrics naming a missing file",
        r"metrics",
        lambda t, a: [
            f"--dataset={_dataset(t, truncate=False)}",
            f"--output={t / 'out'}",
            f"--metrics={t / 'nope.json'}",
        ],
    ),
    "export-no-manifest": Case(
        "export",
        "export of a folder with no manifest",
        r"manifest",
        lambda t, a: [f"--dataset={_write(t / 'ds' / 'notes.txt', b'x').parent}", f"--output={t / 'out'}"],
    ),
    # --- helper "docs" (#26 item 5): import_official answers before converting, and says what to do ---
    "import-tiny-as-release": Case(
        "import_official",
        "release-format files of the tiny architecture imported without --architecture=tiny",
        r"looks like the tiny test architecture.*pass --architecture=tiny",
        lambda t, a: _release_files(t, tiny_flag=False) + [f"--output={t / 'out'}"],
    ),
    "import-misspelt-checkpoint": Case(
        "import_official",
        "a misspelt checkpoint file name",
        r"checkpoint .*modle_100\.ckpt: no such file",
        lambda t, a: [x.replace("model_100", "modle_100") for x in _release_files(t)] + [f"--output={t / 'out'}"],
    ),
    "import-missing-bucket": Case(
        "import_official",
        "an import into a bucket that does not exist (answered before converting)",
        r"output s3://no-such-bucket-x7/model is not writable.*create the bucket",
        lambda t, a: _release_files(t) + ["--output=s3://no-such-bucket-x7/model"],
        needs=("s3",),
    ),
    # --- helper 'safety' (issue 27 items 4, 5, 5c) ---
    "export-output-inside-dataset": Case(
        "export",
        "export whose output is inside the dataset",
        r"overlap: the output is inside the dataset",
        lambda t, a: [f"--dataset={_dataset(t, truncate=False)}", f"--output={t / 'ds' / 'export'}"],
        output="ds/export",
    ),
    "export-dataset-inside-output": Case(
        "export",
        "export whose output contains the dataset (--dataset=<out>/images/ds --output=<out>)",
        r"overlap: the dataset is inside the output",
        lambda t, a: [f"--dataset={_dataset(t / 'out' / 'images', truncate=False)}", f"--output={t / 'out'}"],
        output="out/train.rec",
    ),
    "export-output-not-empty": Case(
        "export",
        "export into a folder holding the user's own files",
        r"is not empty .*not made by an export",
        lambda t, a: [
            f"--dataset={_dataset(t, truncate=False)}",
            f"--output={_write(t / 'mine' / 'README.md', b'my notes').parent}",
        ],
        output="mine/train.rec",
    ),
    "export-manifest-truncated": Case(
        "export",
        "export of a dataset whose manifest.json is truncated",
        r"manifest\.json is damaged",
        lambda t, a: [f"--dataset={_truncated_manifest(_dataset(t, truncate=False))}", f"--output={t / 'out'}"],
    ),
    "synth-manifest-truncated": Case(
        "synthesize",
        "a resume whose manifest.json is truncated",
        r"manifest\.json is damaged",
        lambda t, a: _synth(t, a) if _write(t / "out" / "manifest.json", b'{"format": "uiface-synth/1", "gen') else [],
        output="out/shards",
        needs=("synth",),
    ),
    "synth-manifest-symlink": Case(
        "synthesize",
        "a resume whose manifest.json is a symbolic link to another file",
        r"manifest\.json is a symbolic link",
        lambda t, a: _synth(t, a) if _linked_manifest(t) else [],
        output="out/shards",
        needs=("synth",),
    ),
    "pairs-name-escapes-root": Case(
        "verify",
        "a pairs line whose name climbs out of images_root ('../secret')",
        r"not a folder directly under images_root",
        lambda t, a: _pairs(_secret_beside(t), a, "1\n../secret\t1\t2\n"),
        needs=("backbone",),
    ),
    # --- helper badin (issue 27 items 6-8): absurd numbers, a YAML alias bomb, NaN from the sampler ---
    "config-guidance-inf": Case(
        "synthesize",
        "`sampler.guidance_scale: 1e999` (inf; NaN and inf are refused in every float field)",
        r"sampler\.guidance_scale: Input should be a finite number",
        lambda t, a: _synth(t, a, "--sampler.guidance_scale=1e999"),
        needs=("synth",),
    ),
    "config-guidance-huge": Case(
        "synthesize",
        "`sampler.guidance_scale: 1e30` (all-black images before)",
        r"sampler\.guidance_scale: Input should be less than or equal to 100",
        lambda t, a: _synth(t, a, "--sampler.guidance_scale=1e30"),
        needs=("synth",),
    ),
    "config-images-per-identity-huge": Case(
        "synthesize",
        "`images_per_identity: 10**18`",
        r"images_per_identity: Input should be less than or equal to 1048576",
        lambda t, a: _synth(t, a, f"--images_per_identity={10**18}"),
        needs=("synth",),
    ),
    "config-shard-too-big": Case(
        "synthesize",
        "`identities_per_shard` x `images_per_identity` over 2**20 images in one shard",
        r"identities_per_shard x images_per_identity = 4096 x 1024 = 4194304 images in one shard",
        lambda t, a: _synth(t, a, "--identities_per_shard=4096", "--images_per_identity=1024"),
        needs=("synth",),
    ),
    "config-yaml-alias-bomb": Case(
        "synthesize",
        "a YAML alias bomb (9 levels of 9 aliases: 387 million values)",
        r"c\.yaml expands to more than 100000 values",
        lambda t, a: _synth(t, a, "--config", str(_yaml(t, _alias_bomb(9)))),
        needs=("synth",),
    ),
    "model-overflows-to-nan": Case(
        "synthesize",
        "a model whose output overflows to NaN (its shard is not written)",
        r"shard 0: the sampler produced non-finite values \(NaN/inf\)",
        lambda t, a: _synth(t, a, model=_overflowing_model(t, a)),
        output="out/shards",
        needs=("synth",),
    ),
    # --- helper hardening (issue 34 item 9): a 5,001-digit integer, nested JSON, a lying .npy header ---
    "config-int-5001-digits-cli": Case(
        "synthesize",
        "an integer of 5,001 digits on the command line (`--seed=99...9`)",
        r"override --seed: an integer of 5001 digits: refusing it",
        lambda t, a: _synth(t, a, "--seed=" + "9" * 5001),
        needs=("synth",),
    ),
    "config-int-5001-digits-yaml": Case(
        "synthesize",
        "an integer of 5,001 digits in the YAML file (`sampler: {num_inference_steps: 11...1}`)",
        r"c\.yaml: sampler\.num_inference_steps: an integer of 5001 digits",
        lambda t, a: _synth(t, a, "--config", str(_yaml(t, "sampler:\n  num_inference_steps: " + "1" * 5001 + "\n"))),
        needs=("synth",),
    ),
    "synth-manifest-nested": Case(
        "synthesize",
        "a resume whose manifest.json is 100,000 nested JSON arrays",
        r"manifest\.json is damaged \(nests 100000 levels deep",
        lambda t, a: _synth(t, a) if _write(t / "out" / "manifest.json", NESTED_JSON) else [],
        output="out/shards",
        needs=("synth",),
    ),
    "export-manifest-nested": Case(
        "export",
        "export of a dataset whose manifest.json is 100,000 nested JSON arrays",
        r"manifest\.json is damaged \(nests 100000 levels deep",
        lambda t, a: [
            f"--dataset={_write(_dataset(t, truncate=False) / 'manifest.json', NESTED_JSON).parent}",
            f"--output={t / 'out'}",
        ],
    ),
    "export-marker-nested": Case(
        "export",
        "export into an output whose .uiface-export.json is 100,000 nested JSON arrays",
        r"out/\.uiface-export\.json is damaged \(nests 100000 levels deep",
        lambda t, a: [
            f"--dataset={_dataset(t, truncate=False)}",
            f"--output={_write(t / 'out' / '.uiface-export.json', NESTED_JSON).parent}",
        ],
        output="out/images",
    ),
    "identities-npy-huge-header": Case(
        "synthesize",
        "a .npy identity file whose header claims shape (10**12, 128) (4 rows follow it)",
        r"identities\.npy: its \.npy header claims shape \(1000000000000, 128\) of float32",
        lambda t, a: _synth(t, a, identities=_npy_claiming(t, (10**12, 128))),
        needs=("synth",),
    ),
    # --- boundary: typed sections that were dicts (issue 24 item 4) ---
    "ablation-sampler-key-typo": Case(
        "ablation",
        "a misspelt key in the ablation's shared sampler settings",
        r"sampler\.num_inference_stepz: unknown key \(did you mean 'num_inference_steps'\?\)",
        lambda t, a: [f"--model={t / 'model'}", f"--out={t / 'out'}", "--sampler.num_inference_stepz=2"],
    ),
    "pipeline-stage-key-typo": Case(
        "pipeline",
        "a misspelt key in a pipeline stage's overrides",
        r"stages\.train_diffusion\.max_stepz: unknown key \(did you mean 'max_steps'\?\)",
        lambda t, a: [f"--workdir={t / 'out'}", "--stages.train_diffusion.max_stepz=2"],
    ),
    "train-missing-autoencoder": Case(
        "train_diffusion",
        "latent training with a model.autoencoder folder that is not there",
        r"model\.autoencoder.*nope: no diffusers autoencoder there",
        lambda t, a: [
            f"--data.table={a['faces']}",
            f"--output={t / 'out'}",
            "--model.space=latent",
            f"--model.autoencoder={t / 'nope'}",
        ],
        needs=("faces",),
    ),
    # paper: the UNet family and the export to the release's files
    "train-unknown-unet-family": Case(
        "train_diffusion",
        "a model.unet that is neither family",
        r"model\.unet: Input should be 'diffusers' or 'release' \(got 'unet3'\)",
        lambda t, a: [f"--data.table={a['faces']}", f"--output={t / 'out'}", "--model.unet=unet3"],
        needs=("faces",),
    ),
    "export-release-of-a-diffusers-model": Case(
        "export_release",
        "export_release of a model of the diffusers family",
        r"a UNet2DConditionModel model; only model\.unet=release models have the release's layout",
        lambda t, a: [f"--model={a['model']}", f"--output={t / 'out'}"],
    ),
}


def _release_files(tmp: Path, tiny_flag: bool = True) -> list[str]:
    """The tiny architecture's weights written as the release writes them; the import's arguments."""
    from test_official_import import write_release_files  # tests/ is on sys.path under pytest

    _, argv = write_release_files(tmp / "release")
    return argv if tiny_flag else [x for x in argv if x != "--architecture=tiny"]


def _truncated_manifest(ds: Path) -> Path:
    manifest = ds / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:-40])
    return ds


def _linked_manifest(tmp: Path) -> bool:
    _write(tmp / "other.json", b'{"format": "uiface-synth/1"}')
    (tmp / "out").mkdir()
    (tmp / "out" / "manifest.json").symlink_to(tmp / "other.json")
    return True


def _secret_beside(tmp: Path) -> Path:
    """Images outside the pairs' images_root (tmp/imgs) that '../secret' would reach."""
    (tmp / "secret").mkdir()
    for i in (1, 2):
        _write(tmp / f"secret_{i:04d}.jpg", _jpeg(30 * i, 112))
    return tmp


def markdown_table() -> str:
    lines = ["| case | job | bad input | what the user sees (exit 2, one line) |", "|---|---|---|---|"]
    for name, case in CASES.items():
        sees = case.sees.replace(".*", " … ").replace("\\", "").replace("|", " or ")
        lines.append(f"| `{name}` | {case.job} | {case.what} | error: …{sees}… |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
