"""The one bounded JSON reader (uiface_ray.jsonfile) and every JSON file the package reads through it:
deep nesting (100,000 arrays: a RecursionError traceback before), a 5,001-digit integer and bytes
that are not UTF-8 are each one error naming the file, or, where a damaged file is skipped by
design (a lease, a journal segment), a warning naming it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from uiface_ray import jsonfile, storage
from uiface_ray.errors import InputError

NESTED = b"[" * 100_000 + b"]" * 100_000
HUGE_INT = b'{"step": ' + b"7" * 5001 + b"}"


def test_loads_reads_what_json_reads():
    doc = {"a": [1, 2.5, {"b": "x[y]{z}\\"}], "c": None, "d": "\u00e9\u2603", "e": True, "f": -3}
    text = json.dumps(doc, indent=2)
    assert jsonfile.loads(text) == doc
    assert jsonfile.loads(text.encode()) == doc
    assert jsonfile.nesting_depth(text.encode()) == 3  # brackets inside strings not counted


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (NESTED, "nests 100000 levels deep, more than the 64 read"),
        (b"[" * 65 + b"]" * 65, "nests 65 levels deep"),
        (HUGE_INT, "not valid JSON: Exceeds the limit (4300 digits) for integer string conversion"),
        (b'{"a": 1', "not valid JSON: Expecting"),
        (b'{"a": "\xff\xfe"}', "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_loads_refuses_with_a_short_reason(data, says):
    with pytest.raises(jsonfile.JSONFileError) as info:
        jsonfile.loads(data)
    assert says in str(info.value) and len(str(info.value)) < 300
    assert isinstance(info.value, ValueError)  # callers that caught ValueError for damaged JSON catch it


def test_loads_takes_64_levels():
    value, depth = jsonfile.loads(b"[" * 64 + b"]" * 64), 1
    while value:
        value, depth = value[0], depth + 1
    assert depth == 64


def test_checkpoint_record_nested(tmp_path):
    from uiface_ray.train.checkpoint import LATEST, read_latest

    (tmp_path / LATEST).write_bytes(NESTED)
    with pytest.raises(InputError, match=r"latest\.json is damaged \(nests 100000 levels deep"):
        read_latest(str(tmp_path))
    (tmp_path / LATEST).write_bytes(b"[1, 2]")
    with pytest.raises(InputError, match=r"latest\.json is damaged \(holds a list, not an object\)"):
        read_latest(str(tmp_path))


def test_lease_nested_is_ignored_with_a_warning_naming_it(tmp_path, caplog):
    from uiface_ray.synth.lease import LEASE_NAME, OutputLease

    (tmp_path / LEASE_NAME).write_bytes(NESTED)
    with caplog.at_level(logging.WARNING):
        assert OutputLease(str(tmp_path)).read() is None  # unreadable: the lease is free, as before
    assert LEASE_NAME in caplog.text and "nests 100000 levels deep" in caplog.text


def test_journal_segment_nested_is_skipped_with_a_warning(tmp_path, caplog):
    from uiface_ray.synth.journal import journal_url, read_committed
    from uiface_ray.synth.manifest import Manifest, write_manifest

    write_manifest(str(tmp_path), Manifest({"model_hash": "m"}, 2, 1, 2))
    storage.write_bytes_atomic(storage.join(journal_url(str(tmp_path)), "00000001.json"), NESTED)
    with caplog.at_level(logging.WARNING):
        manifest = read_committed(str(tmp_path))
    assert manifest is not None and manifest.shards == []
    assert "00000001.json" in caplog.text and "nests 100000 levels deep" in caplog.text


def test_model_marker_nested(tmp_path):
    from uiface_ray.model.bundle import MARKER, ModelLoadError, load_model

    (tmp_path / MARKER).write_bytes(NESTED)
    with pytest.raises(ModelLoadError, match=r"uiface\.json: nests 100000 levels deep"):
        load_model(str(tmp_path))


def test_autoencoder_config_nested(tmp_path):
    from uiface_ray.model.autoencoder import load_autoencoder_dir

    (tmp_path / "config.json").write_bytes(NESTED)
    with pytest.raises(ValueError, match=r"config\.json: nests 100000 levels deep"):
        load_autoencoder_dir(tmp_path)


def test_table_metadata_nested(tmp_path):
    import pyarrow as pa

    from uiface_ray.identities.table import read_identity_table
    from uiface_ray.storage.tables import IdentityTableError

    emb = np.eye(3, 8, dtype=np.float32)
    table = pa.table(
        {
            "identity_id": pa.array([0, 1, 2], pa.int64()),
            "embedding": pa.array([e.tolist() for e in emb], pa.list_(pa.float32())),
            "seed": pa.array([0, 1, 2], pa.int64()),
            "nn_similarity": pa.array([0.0] * 3, pa.float32()),
        }
    ).replace_schema_metadata({b"uiface.encoder": NESTED})
    storage.write_table(str(tmp_path / "t.parquet"), table)
    with pytest.raises(IdentityTableError, match=r"schema metadata uiface\.encoder is not JSON: nests 100000"):
        read_identity_table(str(tmp_path / "t.parquet"))


def test_export_metrics_and_shard_record_nested(tmp_path):
    from test_export import make_dataset
    from uiface_ray.export.config import ExportConfig
    from uiface_ray.export.plan import ExportInputError
    from uiface_ray.export.run import run_export
    from uiface_ray.export.shard import ShardDone

    ds = str(tmp_path / "ds")
    make_dataset(ds)
    (tmp_path / "ds" / "metrics.json").write_bytes(NESTED)
    with pytest.raises(ExportInputError, match=r"metrics\.json: nests 100000 levels deep"):
        run_export(ExportConfig(dataset=ds, output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(ValueError, match=r"done/x\.json is not a shard export record: nests 100000"):
        ShardDone.from_json(NESTED, "done/x.json")
