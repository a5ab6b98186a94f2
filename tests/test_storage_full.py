"""A full disk is its own error (issue 27 item 5c): ``no space left`` naming the path, never
``storage unreachable ... check the endpoint``; not retried; a rerun after freeing space resumes."""

from __future__ import annotations

import errno
import os

import pytest

from test_export import make_dataset
from uiface_ray import storage
from uiface_ray.runtime.job import run_job
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.run import run_export
from uiface_ray.synth.retry import write_with_retries


class FullAfter:
    """``os.fsync`` that raises ENOSPC (or EDQUOT) from its ``n``-th call on: the disk filled up."""

    def __init__(self, n: int, code: int = errno.ENOSPC):
        self.calls, self.n, self.code, self.real = 0, n, code, os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls >= self.n:
            raise OSError(self.code, os.strerror(self.code))
        self.real(fd)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_named_and_not_retried(tmp_path, monkeypatch, code):
    monkeypatch.setattr(os, "fsync", FullAfter(1, code))
    url = str(tmp_path / "out" / "shard.parquet")
    sleeps = []
    with pytest.raises(storage.StorageFullError) as err:
        write_with_retries(
            lambda: storage.write_bytes_atomic(url, b"x" * 10), url, attempts=5, backoff_s=1, sleep=sleeps.append
        )
    text = str(err.value)
    assert text.startswith("no space left") and url in text and "unreachable" not in text and "endpoint" not in text
    assert sleeps == [] and os.listdir(tmp_path / "out") == []  # no retry, no temporary file left


def test_export_on_a_full_disk_is_one_line_and_the_rerun_resumes(tmp_path, monkeypatch, capsys):
    ds, out = str(tmp_path / "ds"), tmp_path / "ex"
    make_dataset(ds)
    argv = [f"--dataset={ds}", f"--output={out}", "--formats=[folders]"]
    full = FullAfter(12)  # the probe, the marker, shard 0 (6 images, its record) land;, shard 1 meets the full disk
    monkeypatch.setattr(os, "fsync", full)
    rc = run_job(ExportConfig, run_export, argv)
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if not line.startswith("[export] shards ")]  # progress of what landed
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: no space left"), lines
    assert lines[-1] == err[0] and str(out) in err[0] and "endpoint" not in err[0]
    monkeypatch.setattr(os, "fsync", full.real)  # space freed
    result = run_export(ExportConfig.model_validate({"dataset": ds, "output": str(out), "formats": ["folders"]}))
    assert (result.shards_skipped, result.shards_run) == (1, 2)
