"""Embedding a face table with Ray encoder actors: order kept, column and metadata written,
bad checkpoints fail before any output, and prepare+embed on the loopback S3 server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from uiface_ray.data import PrepareFacesConfig, decode_batch, prepare_faces, read_people_list
from uiface_ray.encoders import CheckpointError, EncoderConfig, build_iresnet, load_encoder
from uiface_ray.encoders.config import EmbedConfig
from uiface_ray.runtime.embed import run_embed
from uiface_ray.storage import exists, read_table, write_table
from uiface_ray.storage.parquet import table_metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jobs.embed as embed_job  # noqa: E402

pytest.importorskip("dlib", reason="the dlib extra is not installed (pip install -e '.[dlib]')")


def _quiet(_msg: str) -> None:
    pass


def _prepare(lfw_dir, output: str, workdir: Path, people: int = 4, per_person: int = 3) -> None:
    """A face table of the first ``people`` DevTrain people with >= 5 images, ``per_person`` each."""
    names = [n for n, k in read_people_list(str(lfw_dir / "peopleDevTrain.txt")) if k >= 5][:people]
    listed = workdir / "people.txt"
    listed.write_text(f"{len(names)}\n" + "".join(f"{n}\t5\n" for n in names))
    prepare_faces(
        PrepareFacesConfig(
            input=str(lfw_dir / "images"), people_file=str(listed), max_images_per_identity=per_person, output=output
        ),
        log=_quiet,
    )


def test_embed_with_actors_keeps_order(lfw_dir, tmp_path, ray_local):
    faces = str(tmp_path / "faces.parquet")
    out = str(tmp_path / "embedded.parquet")
    _prepare(lfw_dir, faces, tmp_path)
    cfg = EmbedConfig(input=faces, output=out, num_actors=2, block_size=5)  # 12 images: blocks of 5, 5, 2
    result = run_embed(cfg, log=_quiet)
    assert result.images == 12 and result.dim == 128 and result.num_actors == 2

    table = read_table(out)
    before = read_table(faces)
    assert table.column_names == before.column_names + ["embedding"]
    emb_type = table.schema.field("embedding").type
    assert str(emb_type).startswith("list<") and str(emb_type.value_type) == "float"  # list<float32>
    assert table.column("image").to_pylist() == before.column("image").to_pylist()
    meta = table_metadata(table)
    encoder_info = json.loads(meta["uiface.encoder"])
    assert encoder_info["kind"] == "dlib" and encoder_info["dim"] == 128 and len(encoder_info["hash"]) == 12
    assert "uiface.face_table" in meta  # the ingest's metadata is kept

    emb = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # The same rows, in the same order, as one in-process encoder gives.
    cols = before.to_pydict()
    direct = load_encoder(EncoderConfig(kind="dlib")).embed(decode_batch(cols["image"], cols["source"]))
    np.testing.assert_allclose(emb, direct, atol=1e-5)
    labels = np.array(cols["label"])
    sims = emb @ emb.T
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    assert sims[same].mean() > sims[labels[:, None] != labels[None]].mean()


def test_embed_in_place_replaces_embedding(lfw_dir, tmp_path, ray_local):
    faces = str(tmp_path / "faces.parquet")
    _prepare(lfw_dir, faces, tmp_path, people=2, per_person=2)
    table = read_table(faces)
    stale = {name: table.column(name) for name in table.column_names}
    stale["embedding"] = [np.zeros(3, np.float32)] * table.num_rows  # from some older encoder
    write_table(faces, stale, metadata=table_metadata(table))
    run_embed(EmbedConfig(input=faces, num_actors=1), log=_quiet)  # no output: replace the input
    table = read_table(faces)
    assert table.column_names.count("embedding") == 1 and table.num_rows == 4
    emb = np.array(table.column("embedding").to_pylist())
    assert emb.shape == (4, 128) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_bad_checkpoint_fails_before_output(lfw_dir, tmp_path, capsys):
    faces = str(tmp_path / "faces.parquet")
    _prepare(lfw_dir, faces, tmp_path, people=2, per_person=2)
    state = build_iresnet(18).state_dict()
    del state["fc.weight"]
    ckpt = tmp_path / "backbone.pth"
    torch.save(state, ckpt)
    out = tmp_path / "embedded.parquet"
    cfg = EmbedConfig(input=faces, output=str(out), encoder=EncoderConfig(kind="iresnet", path=str(ckpt), depth=18))
    with pytest.raises(CheckpointError, match=r"backbone\.pth .*missing keys: fc\.weight"):
        run_embed(cfg, log=_quiet)
    assert not out.exists()
    # The job prints the same as one line and exits with 2.
    argv = [
        f"--input={faces}",
        f"--output={out}",
        "--encoder.kind=iresnet",
        f"--encoder.path={ckpt}",
        "--encoder.depth=18",
    ]
    assert embed_job.main(argv) == 2
    err = capsys.readouterr().err
    assert "error: checkpoint" in err and "fc.weight" in err and "Traceback" not in err
    assert not out.exists()


def test_prepare_and_embed_on_s3(lfw_dir, s3_bucket, s3_server, ray_local, tmp_path):
    faces = f"{s3_bucket}/faces/devtrain.parquet"
    _prepare(lfw_dir, faces, tmp_path, people=3, per_person=2)
    assert exists(faces)
    cfg = EmbedConfig(
        input=faces,
        output=f"{s3_bucket}/faces/embedded.parquet",
        num_actors=2,
        block_size=4,
        storage={"endpoint_url": s3_server},
    )
    run_embed(cfg, log=_quiet)
    table = read_table(cfg.output)
    assert table.num_rows == 6 and json.loads(table_metadata(table)["uiface.encoder"])["dim"] == 128
    assert table.column("label").to_pylist() == [0, 0, 1, 1, 2, 2]
