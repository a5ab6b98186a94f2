"""An export never deletes or overwrites what it did not write (issue 27 item 4): output/dataset
overlaps refused, a non-empty folder it did not make refused, a user's files beside an earlier
export left alone; local and on the loopback S3 server."""

from __future__ import annotations

import hashlib
import os

import pytest

from test_export import _export_job, make_dataset
from uiface_ray import storage
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.run import run_export


MARKER = ".uiface-export.json"  # uiface_ray.export.output.MARKER (checked in the last test)


def digest(url: str) -> dict[str, str]:
    """{relative path: sha256} of every file under ``url`` (local or S3)."""
    return {
        rel: hashlib.sha256(storage.read_bytes(storage.join(url, rel))).hexdigest() for rel in storage.find_files(url)
    }


def run_job(capsys, *args: str) -> tuple[int, str]:
    rc = _export_job().main(list(args))
    err = capsys.readouterr().err
    return rc, err


def one_error(rc: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def base_url(where: str, tmp_path, request) -> str:
    return request.getfixturevalue("s3_bucket") if where == "s3" else str(tmp_path)


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("case", ["dataset_inside_output", "output_inside_dataset", "same"])
def test_overlapping_output_and_dataset_are_refused(tmp_path, capsys, request, where, case):
    base = base_url(where, tmp_path, request)
    out = storage.join(base, "out")
    ds = {
        "dataset_inside_output": storage.join(out, "images"),  # stored under the name the export uses
        "output_inside_dataset": storage.join(base, "ds"),
        "same": out,
    }[case]
    target = {"output_inside_dataset": storage.join(ds, "export")}.get(case, out)
    make_dataset(ds)
    before = digest(base)
    line = one_error(*run_job(capsys, f"--dataset={ds}", f"--output={target}"))
    assert ds in line and target in line and ("overlap" in line or "same folder" in line), line
    assert digest(base) == before  # the dataset's shards and manifest are all there, unchanged


def test_output_linked_into_the_dataset_is_refused(tmp_path, capsys):
    ds = tmp_path / "ds"
    make_dataset(str(ds))
    (tmp_path / "link").symlink_to(ds)
    before = digest(str(ds))
    line = one_error(*run_job(capsys, f"--dataset={ds}", f"--output={tmp_path / 'link' / 'export'}"))
    assert "output is inside the dataset" in line
    assert digest(str(ds)) == before and not (ds / "export").exists()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_folder_with_the_users_files_is_refused(tmp_path, capsys, request, where):
    base = base_url(where, tmp_path, request)
    ds, out = storage.join(base, "ds"), storage.join(base, "mine")
    make_dataset(ds)
    storage.write_bytes_atomic(storage.join(out, "README.md"), b"my notes\n")
    storage.write_bytes_atomic(storage.join(out, "images", "mine", "0.jpg"), b"my photo")
    before = digest(out)
    line = one_error(*run_job(capsys, f"--dataset={ds}", f"--output={out}"))
    assert out in line and "not empty" in line and "README.md" in line
    assert digest(out) == before  # not a byte written, nothing removed


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_exports_own_output_is_replaced_and_the_users_files_beside_it_kept(tmp_path, request, where):
    base = base_url(where, tmp_path, request)
    ds, out = storage.join(base, "ds"), storage.join(base, "ex")
    make_dataset(ds)
    run_export(ExportConfig(dataset=ds, output=out, formats=("folders",)))
    storage.write_bytes_atomic(storage.join(out, "notes.txt"), b"mine")
    storage.write_bytes_atomic(storage.join(out, "images", "0", "9.jpg"), b"x")  # an earlier export's name
    run_export(ExportConfig(dataset=ds, output=out, formats=("folders", "recordio")))
    files = storage.find_files(out)
    assert storage.read_bytes(storage.join(out, "notes.txt")) == b"mine"
    assert "images/0/9.jpg" not in files and "train.rec" in files and MARKER in files
    # a user's file put among the export's images: the export refuses to replace the folder
    storage.write_bytes_atomic(storage.join(out, "images", "mine", "me.png"), b"my photo")
    with pytest.raises(Exception, match="images/mine/me.png, which no export wrote"):
        run_export(ExportConfig(dataset=ds, output=out, formats=("folders",)))
    assert storage.read_bytes(storage.join(out, "images", "mine", "me.png")) == b"my photo"
    storage.remove(storage.join(out, "images", "mine"), recursive=True)
    # a name the marker does not list, written by the user: an export that would write it is refused
    storage.write_bytes_atomic(storage.join(out, "README.md"), b"my readme")
    with pytest.raises(Exception, match="README.md, which no export wrote"):
        run_export(ExportConfig(dataset=ds, output=out))
    assert storage.read_bytes(storage.join(out, "README.md")) == b"my readme"


def test_an_empty_folder_is_claimed_and_bad_input_leaves_it_empty(tmp_path, capsys):
    ds, out = tmp_path / "ds", tmp_path / "empty"
    make_dataset(str(ds))
    out.mkdir()
    shard = ds / "shards" / "shard-00002.parquet"  # no size in the manifest: found while exporting
    good = shard.read_bytes()
    shard.write_bytes(good[:-100])
    one_error(*run_job(capsys, f"--dataset={ds}", f"--output={out}"))
    assert os.listdir(out) == []  # the marker it wrote went with the rest
    shard.write_bytes(good)
    assert run_job(capsys, f"--dataset={ds}", f"--output={out}")[0] == 0
    assert (out / MARKER).is_file() and (out / "train.rec").is_file()
    from uiface_ray.export.output import MARKER as marker

    assert marker == MARKER


def test_a_file_as_output_is_refused(tmp_path, capsys):
    ds = tmp_path / "ds"
    make_dataset(str(ds))
    (tmp_path / "f").write_bytes(b"keep")
    line = one_error(*run_job(capsys, f"--dataset={ds}", f"--output={tmp_path / 'f'}"))
    assert "is a file" in line and (tmp_path / "f").read_bytes() == b"keep"
