"""The official release's identities: a .npy array read directly as an identity table."""

from __future__ import annotations

import io

import numpy as np
import pytest

from uiface_ray.identities.table import IdentityTableError, read_identity_table
from uiface_ray.storage.fs import write_bytes_atomic


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_npy_rows_become_identities_with_row_ids(tmp_path, request, where):
    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(5, 512)) * 3.0  # float64, not normalised, as a user might have it
    url = base + "/identities_10k.npy"
    write_bytes_atomic(url, npy_bytes(raw))
    table = read_identity_table(url, expected_dim=512)
    assert table.identity_ids.tolist() == [0, 1, 2, 3, 4]
    assert table.embeddings.dtype == np.float32 and table.embeddings.shape == (5, 512)
    np.testing.assert_allclose(table.embeddings, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)
    assert len(table.sha256) == 64 and table.encoder["kind"] == "npy"
    # the same file under another name gives the same ids and hash: ids depend on row order only
    write_bytes_atomic(base + "/copy.npy", npy_bytes(raw))
    again = read_identity_table(base + "/copy.npy")
    assert again.sha256 == table.sha256 and np.array_equal(again.identity_ids, table.identity_ids)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.array([{"a": 1}, None], dtype=object), r"Python objects \(refused: allow_pickle=False\)"),
        (np.zeros((3, 512)), r"all-zero embedding at row 0"),
        (np.full((2, 512), np.nan), r"NaN or infinite"),
        (np.ones((4, 128)), r"dim 128, but the model expects 512"),
        (np.ones((0, 512)), r"non-empty \(N, E\)"),
        (np.ones(512), r"non-empty \(N, E\)"),
    ],
)
def test_bad_npy_is_one_clear_error(tmp_path, array, message):
    path = tmp_path / "ids.npy"
    path.write_bytes(npy_bytes(array, allow_pickle=array.dtype == object))
    with pytest.raises(IdentityTableError, match=message) as info:
        read_identity_table(str(path), expected_dim=512)
    assert "ids.npy" in str(info.value) and "\n" not in str(info.value)


def test_truncated_npy(tmp_path):
    data = npy_bytes(np.ones((10, 512), dtype=np.float32))
    (tmp_path / "t.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(IdentityTableError, match="t.npy"):
        read_identity_table(str(tmp_path / "t.npy"))
