"""The typed table layer (storage/tables.py) and the one image resize (data/images.py)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from uiface_ray import storage
from uiface_ray.data.images import RESIZE_FILTER, ImageError, decode_images, resize_images
from uiface_ray.storage.tables import (
    FACE_TABLE,
    IDENTITY_TABLE,
    SHARD,
    FaceTableError,
    IdentityTableError,
    ShardError,
    read_face_table,
    read_typed,
    table_bytes,
    write_typed,
)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _faces(n: int = 4, dim: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    return {
        "image": [_png(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)) for _ in range(n)],
        "label": np.arange(n) // 2,
        "identity": [f"p{k // 2}" for k in range(n)],
        "source": [f"f{k}.png" for k in range(n)],
        "width": np.full(n, 6),
        "height": np.full(n, 6),
        "embedding": emb / np.linalg.norm(emb, axis=1, keepdims=True),
    }


def _untyped(path, columns: dict) -> str:
    """A Parquet file written around the typed layer (as another tool might)."""
    storage.write_table(str(path), pa.table(columns))
    return str(path)


# --- round trips ------------------------------------------------------------------------------


def test_face_table_round_trip_keeps_types_values_and_metadata(tmp_path):
    url = str(tmp_path / "f.parquet")
    cols = _faces()
    write_typed(FACE_TABLE, url, cols, metadata={"uiface.encoder": '{"dim": 8}'})
    t = read_face_table(url, required=["image", "label", "identity", "embedding"])
    types = dict(zip(t.data.schema.names, t.data.schema.types))
    assert types.pop("embedding").value_type == pa.float32()
    assert {k: str(v) for k, v in types.items()} == {
        "image": "binary",
        "label": "int64",
        "identity": "string",
        "source": "string",
        "width": "int32",
        "height": "int32",
    }
    assert t.column("label").dtype == np.int64 and t.column("width").dtype == np.int32
    np.testing.assert_array_equal(t.column("label"), cols["label"])
    assert t.column("image") == cols["image"] and t.column("identity") == cols["identity"]
    emb = t.embeddings(expected_dim=8)
    assert emb.dtype == np.float32 and emb.shape == (4, 8)
    np.testing.assert_array_equal(emb, cols["embedding"])
    assert t.json_metadata("uiface.encoder") == {"dim": 8}
    # a column added keeps the rest and the metadata
    again = str(tmp_path / "g.parquet")
    write_typed(
        FACE_TABLE, again, t.with_column("embedding", np.zeros((4, 3), np.float32) + 1), metadata={"uiface.other": "x"}
    )
    back = read_face_table(again)
    assert back.embeddings().shape == (4, 3) and back.metadata["uiface.encoder"] == '{"dim": 8}'
    assert back.metadata["uiface.other"] == "x" and back.column_names[-1] == "embedding"


def test_identity_table_and_shard_round_trip(tmp_path):
    url = str(tmp_path / "ids.parquet")
    emb = np.eye(3, 5, dtype=np.float32)
    write_typed(
        IDENTITY_TABLE,
        url,
        {
            "identity_id": np.arange(3),
            "embedding": emb,
            "seed": np.array([7, 8, 9]),
            "nn_similarity": np.array([0.1, 0.2, 0.3]),
        },
    )
    t = read_typed(IDENTITY_TABLE, url)
    np.testing.assert_array_equal(t.embeddings(5), emb)
    assert t.column("nn_similarity").dtype == np.float32 and t.column("seed").tolist() == [7, 8, 9]
    shard = {
        "identity_id": np.array([4, 4]),
        "image_index": np.array([0, 1]),
        "seed": np.array([1, 2]),
        "image": [b"a", b"b"],
        "t0": np.array([300, 400]),
        "mode": ["m", "m"],
        "model_hash": ["h", "h"],
    }
    data = table_bytes(SHARD, shard, {"uiface.mode": "m"}, compression="none")
    assert data == table_bytes(SHARD, shard, {"uiface.mode": "m"}, compression="none")  # deterministic
    s = read_typed(SHARD, "s.parquet", data=data)
    assert s.column("image_index").dtype == np.int32 and s.column("image") == [b"a", b"b"]
    assert s.metadata == {"uiface.mode": "m"}
    with pytest.raises(ShardError, match=r"shard s\.parquet has no 'identity_id', .*'t0', .* columns"):
        read_typed(SHARD, "s.parquet", data=table_bytes(FACE_TABLE, {"image": [b"a"]}))


def test_reading_accepts_other_widths_of_the_same_types(tmp_path):
    url = _untyped(
        tmp_path / "w.parquet",
        {
            "image": pa.array([b"x"], pa.large_binary()),
            "label": pa.array([3], pa.int32()),
            "embedding": pa.array([[1.0, 2.0]], pa.list_(pa.float64())),
        },
    )
    t = read_face_table(url)
    assert t.column("label").dtype == np.int64 and t.embeddings().dtype == np.float32


# --- checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, match",
    [
        ("ragged", r"mixed lengths \[2, 3\] \(row 0 has 2, row 1 has 3\)"),
        ("nan", r"1 embedding\(s\) hold NaN or infinite values \(first at row 1\)"),
        ("inf", r"NaN or infinite values \(first at row 2\)"),
        ("null", r"1 row\(s\) have no embedding \(first at row 1\)"),
        ("empty-list", r"non-empty \(N, E\)"),
    ],
)
def test_bad_embedding_columns(case, match, tmp_path):
    rows = {
        "ragged": [[1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0]],
        "nan": [[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]],
        "inf": [[1.0, 0.0], [0.0, 1.0], [np.inf, 1.0]],
        "null": [[1.0, 0.0], None, [0.0, 1.0]],
        "empty-list": [[], [], []],
    }[case]
    url = _untyped(
        tmp_path / "e.parquet",
        {"image": [b"a", b"b", b"c"], "label": [0, 0, 1], "embedding": pa.array(rows, pa.list_(pa.float32()))},
    )
    with pytest.raises(FaceTableError, match=match) as info:
        read_face_table(url).embeddings()
    assert "e.parquet" in str(info.value) and "\n" not in str(info.value)
    # the writer refuses the same column: nothing is written
    out = tmp_path / "out.parquet"
    with pytest.raises(FaceTableError, match=match):
        write_typed(
            FACE_TABLE,
            str(out),
            {"image": [b"a", b"b", b"c"], "label": [0, 0, 1], "embedding": pa.array(rows, pa.list_(pa.float32()))},
        )
    assert not out.exists()


def test_wrong_dimension_missing_column_nulls_types_and_empty(tmp_path):
    url = str(tmp_path / "f.parquet")
    write_typed(FACE_TABLE, url, _faces(dim=8))
    with pytest.raises(FaceTableError, match=r"f\.parquet: embeddings have dim 8, but the model expects 16"):
        read_face_table(url).embeddings(expected_dim=16)
    no_emb = {k: v for k, v in _faces().items() if k != "embedding"}
    write_typed(FACE_TABLE, url, no_emb)
    with pytest.raises(FaceTableError, match=r"has no 'embedding' column \(it has .*\); add identity embeddings"):
        read_face_table(url, required=["embedding"])
    with pytest.raises(FaceTableError, match=r"has no 'embedding' column"):
        read_face_table(url).embeddings()
    _untyped(tmp_path / "n.parquet", {"image": [b"a", b"b", b"c"], "label": [0, 1, None]})
    with pytest.raises(FaceTableError, match=r"n\.parquet: column 'label' has 1 null row\(s\) \(first at row 2\)"):
        read_face_table(str(tmp_path / "n.parquet"))
    _untyped(tmp_path / "s.parquet", {"image": [b"a"], "label": ["zero"]})
    with pytest.raises(FaceTableError, match=r"column 'label' is string, expected integer"):
        read_face_table(str(tmp_path / "s.parquet"))
    _untyped(tmp_path / "z.parquet", {"image": pa.array([], pa.binary()), "label": pa.array([], pa.int64())})
    with pytest.raises(FaceTableError, match=r"face table .*z\.parquet is empty"):
        read_face_table(str(tmp_path / "z.parquet"))
    _untyped(tmp_path / "e.parquet", {"identity_id": [], "embedding": [], "seed": [], "nn_similarity": []})
    with pytest.raises(IdentityTableError, match=r"identity table .*e\.parquet is empty"):  # null-typed columns
        read_typed(IDENTITY_TABLE, str(tmp_path / "e.parquet"))
    with pytest.raises(IdentityTableError, match=r"empty"):
        write_typed(
            IDENTITY_TABLE,
            str(tmp_path / "i.parquet"),
            {
                "identity_id": np.zeros(0, np.int64),
                "embedding": np.zeros((0, 4), np.float32),
                "seed": np.zeros(0, np.int64),
                "nn_similarity": np.zeros(0, np.float32),
            },
        )
    assert not (tmp_path / "i.parquet").exists()
    with pytest.raises(FaceTableError, match=r"face table not found: .*nope\.parquet"):
        read_face_table(str(tmp_path / "nope.parquet"))


@pytest.mark.parametrize("kind", [FACE_TABLE, IDENTITY_TABLE, SHARD], ids=lambda k: k.name)
def test_truncated_file_is_one_line_naming_it(kind, tmp_path):
    cols = {
        "face table": _faces(),
        "identity table": {
            "identity_id": np.arange(2),
            "embedding": np.eye(2, dtype=np.float32),
            "seed": np.arange(2),
            "nn_similarity": np.zeros(2),
        },
        "shard": {
            "identity_id": [0],
            "image_index": np.array([0], np.int32),
            "seed": [1],
            "image": [b"x"],
            "t0": np.array([1], np.int32),
            "mode": ["m"],
            "model_hash": ["h"],
        },
    }[kind.name]
    data = table_bytes(kind, cols)
    for cut in (0, 4, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut-{cut}.parquet"
        path.write_bytes(data[:cut])
        with pytest.raises(kind.error, match=rf"{kind.name} .*cut-{cut}\.parquet is not a readable Parquet") as info:
            read_typed(kind, str(path))
        assert "\n" not in str(info.value)


def test_every_stage_reads_embeddings_through_the_layer(tmp_path):
    """The readers that had their own checks (or none) now refuse a ragged or NaN column alike."""
    from uiface_ray.identities.table import read_identity_table
    from uiface_ray.runtime.identities import training_identity_embeddings
    from uiface_ray.train.data import load_face_data

    ragged = pa.array([[1.0, 0.0], [1.0, 0.0, 0.0]], pa.list_(pa.float32()))
    faces = _untyped(
        tmp_path / "f.parquet", {"image": [b"a", b"b"], "label": [0, 1], "identity": ["a", "b"], "embedding": ragged}
    )
    with pytest.raises(FaceTableError, match="mixed lengths"):
        training_identity_embeddings(faces)
    with pytest.raises(FaceTableError, match="mixed lengths"):
        load_face_data(faces, 2, with_images=False)
    nan = pa.array([[1.0, 0.0], [np.nan, 0.0]], pa.list_(pa.float32()))
    _untyped(tmp_path / "g.parquet", {"label": [0, 1], "embedding": nan})
    with pytest.raises(FaceTableError, match=r"NaN or infinite values \(first at row 1\)"):
        training_identity_embeddings(str(tmp_path / "g.parquet"))
    ids = _untyped(
        tmp_path / "i.parquet",
        {
            "identity_id": [0, 1],
            "embedding": ragged,
            "seed": [0, 0],
            "nn_similarity": pa.array([0.0, 0.0], pa.float32()),
        },
    )
    with pytest.raises(IdentityTableError, match="mixed lengths"):
        read_identity_table(ids)
    good = _untyped(
        tmp_path / "ok.parquet",
        {"label": [0, 0, 1], "embedding": pa.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], pa.list_(pa.float32()))},
    )
    np.testing.assert_allclose(training_identity_embeddings(good), [[2**-0.5, 2**-0.5], [0.0, -1.0]], atol=1e-6)


# --- the one resize ---------------------------------------------------------------------------


def test_resize_images_is_the_documented_filter():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 20, 12, 3), dtype=np.uint8)
    out = resize_images(images, 8)
    assert RESIZE_FILTER == Image.Resampling.BICUBIC
    assert out.shape == (2, 8, 8, 3) and out.dtype == np.uint8
    want = np.asarray(Image.fromarray(images[1]).resize((8, 8), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(out[1], want)
    assert not np.array_equal(out[1], np.asarray(Image.fromarray(images[1]).resize((8, 8), Image.Resampling.BILINEAR)))
    assert resize_images(images, (30, 10)).shape == (2, 30, 10, 3)
    assert resize_images(images, (20, 12)) is images  # already that size
    with pytest.raises(ValueError, match="uint8"):
        resize_images(images.astype(np.float32), 8)


def test_decode_images_resizes_like_resize_images_and_names_bad_rows():
    from uiface_ray.evaluate import faceset
    from uiface_ray.train import data as train_data

    assert faceset.decode_images is decode_images is train_data.decode_images  # one function
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    blobs = [_png(im) for im in images]
    np.testing.assert_array_equal(decode_images(blobs, 7), resize_images(images, 7))
    np.testing.assert_array_equal(decode_images(blobs), images)
    assert decode_images([], 5).shape == (0, 5, 5, 3)
    with pytest.raises(ImageError, match=r"unreadable image row 1: not a decodable image"):
        decode_images([blobs[0], b"not an image"], 7)
    with pytest.raises(ImageError, match=r"image b\.png is 8x8, but a\.png is 16x16"):
        decode_images([blobs[0], _png(images[0][:8, :8])], sources=["a.png", "b.png"])
    np.testing.assert_array_equal(faceset.at_resolution(images, 4), resize_images(resize_images(images, 4), 16))
