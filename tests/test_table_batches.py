"""Typed tables read and written in blocks (issue 27.9): the reader yields checked blocks of exactly
the asked size across row groups, the writer puts nothing in place before its commit, and embed
streams a face table of 10^4 rows through its Ray actors with progress lines from the start and the
same rows and embeddings as one in-process encoder."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uiface_ray.storage import FaceTableError, read_face_table
from uiface_ray.storage.batches import TableWriter, open_typed
from uiface_ray.storage.tables import FACE_TABLE, IDENTITY_TABLE


def _png(value: int, size: int = 4) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _faces(path, n: int, row_group_size: int | None = None, nulls_at: int | None = None) -> str:
    images = [_png(i % 16) for i in range(16)]
    labels = pa.array([None if i == nulls_at else i // 10 for i in range(n)], pa.int64())
    table = pa.table(
        {
            "image": pa.array([images[i % 16] for i in range(n)], pa.binary()),
            "label": labels,
            "identity": [f"p{i // 10}" for i in range(n)],
            "source": [f"p{i // 10}/{i}.png" for i in range(n)],
        }
    ).replace_schema_metadata({"uiface.face_table": "{}"})
    pq.write_table(table, str(path), row_group_size=row_group_size)
    return str(path)


def test_reader_yields_blocks_across_row_groups(tmp_path):
    url = _faces(tmp_path / "f.parquet", 23, row_group_size=7)
    assert pq.ParquetFile(url).metadata.num_row_groups == 4
    with open_typed(FACE_TABLE, url, required=["image", "source"]) as reader:
        assert reader.num_rows == 23 and reader.metadata == {"uiface.face_table": "{}"}
        blocks = list(reader.blocks(5))
    assert [len(b) for b in blocks] == [5, 5, 5, 5, 3]
    whole = read_face_table(url, required=["image", "source"])
    assert sum((b.column("source") for b in blocks), []) == whole.column("source")
    np.testing.assert_array_equal(np.concatenate([b.column("label") for b in blocks]), whole.column("label"))


def test_reader_checks_footer_then_each_block(tmp_path):
    with pytest.raises(FaceTableError, match=r"face table not found: .*nope\.parquet"):
        open_typed(FACE_TABLE, str(tmp_path / "nope.parquet"))
    with pytest.raises(FaceTableError, match=r"has no 'embedding' column"):
        open_typed(FACE_TABLE, _faces(tmp_path / "a.parquet", 3), required=["embedding"])
    with pytest.raises(FaceTableError, match=r"is empty: it has no rows"):
        open_typed(FACE_TABLE, _faces(tmp_path / "e.parquet", 0))
    cut = tmp_path / "cut.parquet"
    cut.write_bytes((tmp_path / "a.parquet").read_bytes()[:-20])
    with pytest.raises(FaceTableError, match=r"cut\.parquet is not a readable Parquet file"):
        open_typed(FACE_TABLE, str(cut))
    with pytest.raises(FaceTableError, match=r"column 'label' is string, expected integer"):
        bad = pa.table({"image": [b"x"], "label": ["one"]})
        pq.write_table(bad, str(tmp_path / "t.parquet"))
        open_typed(FACE_TABLE, str(tmp_path / "t.parquet"))
    reader = open_typed(FACE_TABLE, _faces(tmp_path / "n.parquet", 30, row_group_size=10, nulls_at=17))
    with pytest.raises(FaceTableError, match=r"column 'label' has 1 null row\(s\) \(first at row 17\)"):
        list(reader.blocks(4))
    reader.close()


def test_writer_commits_whole_or_nothing(tmp_path):
    url = str(tmp_path / "ids" / "t.parquet")
    rows = lambda a, n: {  # noqa: E731
        "identity_id": np.arange(a, a + n),
        "embedding": np.eye(n, 4, dtype=np.float32) + 1,
        "seed": np.arange(n),
        "nn_similarity": np.zeros(n, np.float32),
    }
    with TableWriter(IDENTITY_TABLE, url, metadata={"k": "v"}, row_group_rows=4) as writer:
        for a in range(0, 10, 3):
            writer.write(rows(a, 3))
            assert not os.path.exists(url)  # nothing in place before the commit
    meta = pq.ParquetFile(url).metadata
    assert meta.num_rows == 12 and meta.num_row_groups == 3 and writer.rows == 12
    assert pq.read_table(url).column("identity_id").to_pylist() == list(range(12))
    assert pq.read_schema(url).metadata == {b"k": b"v"}

    other = str(tmp_path / "ids" / "u.parquet")
    with pytest.raises(RuntimeError, match="boom"):
        with TableWriter(IDENTITY_TABLE, other) as writer:
            writer.write(rows(0, 3))
            raise RuntimeError("boom")
    bad = rows(0, 2)
    bad["embedding"][1, 0] = np.nan
    with pytest.raises(Exception, match="NaN or infinite"):
        with TableWriter(IDENTITY_TABLE, other) as writer:
            writer.write(bad)
    assert sorted(os.listdir(tmp_path / "ids")) == ["t.parquet"]  # no partial file, no temporary left


def test_writer_to_memory_store():
    url = "memory://batches-test/t.parquet"
    with TableWriter(FACE_TABLE, url) as writer:
        writer.write({"image": [b"a", b"b"], "label": np.array([1, 2])})
    with open_typed(FACE_TABLE, url) as reader:
        assert [b.column("label").tolist() for b in reader.blocks(1)] == [[1], [2]]


def test_embed_streams_many_rows_with_progress(tmp_path, ray_local, monkeypatch):
    """10^4 tiny faces through real encoder actors: progress lines from the start, blocks written
    in order, every embedding equal to one in-process encoder's on the same blocks."""
    import torch

    import uiface_ray.runtime.embed as embed
    from uiface_ray.data.images import decode_batch
    from uiface_ray.encoders import build_iresnet, load_encoder
    from uiface_ray.encoders.config import EmbedConfig, EncoderConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    torch.save(build_iresnet(18, 16, input_size=32, width=0.25).state_dict(), ckpt)
    n, block = 10_000, 500
    faces = _faces(tmp_path / "faces.parquet", n, row_group_size=3000)
    out = str(tmp_path / "embedded.parquet")
    encoder = EncoderConfig(kind="iresnet", path=str(ckpt), depth=18, embedding_dim=16, batch_size=block)
    lines: list[str] = []
    monkeypatch.setattr(embed, "PROGRESS_EVERY_S", 0.0)
    result = embed.run_embed(
        EmbedConfig(input=faces, output=out, encoder=encoder, num_actors=2, block_size=block), log=lines.append
    )
    assert result.images == n and result.dim == 16
    progress = [ln for ln in lines if "/10000 images" in ln]
    assert progress[0].startswith("0/10000 images") and "ETA ?" in progress[0]
    assert len(progress) == n // block + 1 and progress[-1].startswith("10000/10000")

    table = pq.read_table(out)
    before = pq.read_table(faces)
    assert table.column_names == before.column_names + ["embedding"]
    assert table.column("source").to_pylist() == before.column("source").to_pylist()
    assert json.loads(table.schema.metadata[b"uiface.encoder"])["dim"] == 16
    assert b"uiface.face_table" in table.schema.metadata
    emb = np.array(table.column("embedding").to_pylist(), np.float32)
    direct = load_encoder(encoder)
    images, sources = before.column("image").to_pylist(), before.column("source").to_pylist()
    for start in (0, n // 2, n - block):  # blocks as the actors got them (as the old whole-table path cut them)
        want = direct.embed(decode_batch(images[start : start + block], sources[start : start + block]))
        np.testing.assert_allclose(emb[start : start + block], want, rtol=0, atol=1e-6)
