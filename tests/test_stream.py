"""The streaming plan and its readers (uiface_ray.data.stream*, storage.row_groups), without Ray: the order
is a pure function of (seed, epoch), rank shares are disjoint and cover the epoch, a resume at step k
reads nothing before it, the rows read are the rows planned, and bad files are one error naming them."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from uiface_ray.data.stream import StreamPlan, make_plan
from uiface_ray.data.stream_read import DecodeImages, ReadSpec, iter_local, read_unit
from uiface_ray.data.stream_source import open_source, parquet_files
from uiface_ray.storage.row_groups import RowGroupError


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tables(folder, sizes=(37, 47, 57), row_group_size=13, classes=5, seed=0) -> np.ndarray:
    """Face tables whose image i (in file order) is a flat grey of value i % 251 and whose label is
    random; returns the labels in file order."""
    rng = np.random.default_rng(seed)
    labels, at = [], 0
    for f, n in enumerate(sizes):
        lab = rng.integers(0, classes, n) * 10  # not contiguous: the plan ranks them densely
        table = pa.table({"image": [_png((at + i) % 251) for i in range(n)], "label": lab.tolist()})
        pq.write_table(table, str(folder / f"part-{f}.parquet"), row_group_size=row_group_size)
        labels.append(lab)
        at += n
    return np.concatenate(labels)


def _plan(kept, window=20, b=4, world=2, seed=7) -> StreamPlan:
    return StreamPlan(np.asarray(kept, dtype=np.int64), seed, window, b, world)


KEPT = np.array([8, 5, 8, 8, 0, 7, 8, 8, 3, 8, 8, 8, 8, 1, 8, 8])  # 104 rows, one empty piece


def test_order_is_a_pure_function_of_seed_and_epoch():
    a, b = _plan(KEPT), _plan(KEPT)
    for e in range(3):
        assert np.array_equal(
            a.rows(0, e * a.steps_per_epoch, (e + 1) * a.steps_per_epoch),
            b.rows(0, 0, 99)[e * a.steps_per_epoch * 4 : (e + 1) * a.steps_per_epoch * 4],
        )
    one_epoch = a.steps_per_epoch
    assert not np.array_equal(a.rows(0, 0, one_epoch), a.rows(0, one_epoch, 2 * one_epoch))  # epochs differ
    assert not np.array_equal(a.rows(0, 0, one_epoch), _plan(KEPT, seed=8).rows(0, 0, one_epoch))  # seeds differ
    # the epoch's stream does not depend on the number of workers: rank r of W reads positions r*L ...
    stream = np.concatenate([a.span_rows(1, j) for j in range(len(a.epoch(1).span_starts) - 1)])
    assert sorted(stream.tolist()) == list(range(104))  # every row once per epoch
    for world in (1, 2, 3, 5):
        p = _plan(KEPT, world=world)
        for r in range(world):
            got = p.rows(r, p.steps_per_epoch, 2 * p.steps_per_epoch)
            assert np.array_equal(got, stream[r * p.share : r * p.share + p.steps_per_epoch * 4])


def test_spans_hold_at_least_the_window_and_shuffle_inside_it():
    plan = _plan(KEPT, window=20)
    order = plan.epoch(0)
    sizes = np.diff(order.span_starts)
    assert (sizes[:-1] >= 20).all() and sizes.sum() == 104 and 4 not in order.pieces  # the empty piece skipped
    for j in range(len(sizes)):
        rows = plan.span_rows(0, j)
        pieces = order.span(j)
        expected = np.concatenate([plan.offsets[p] + np.arange(KEPT[p]) for p in pieces])
        assert sorted(rows.tolist()) == sorted(expected.tolist()) and not np.array_equal(rows, expected)
    whole = _plan(KEPT, window=1000)  # a window past the dataset: one full permutation per epoch
    assert len(whole.epoch(0).span_starts) == 2


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_rank_shares_are_disjoint_and_cover_the_epoch(world):
    plan = _plan(KEPT, world=world, b=3)
    spe = plan.steps_per_epoch
    for e in range(2):
        shares = [plan.rows(r, e * spe, (e + 1) * spe) for r in range(world)]
        every = np.concatenate(shares)
        assert len(every) == world * spe * 3 == len(set(every.tolist()))
        assert every.min() >= 0 and every.max() < 104
        assert world * spe * 3 > 104 - world * (3 + 1)  # only the short tail of each share is left out
        # global batch s is the union of every rank's local batch s
        for s in range(spe):
            batch = [plan.rows(r, e * spe + s, e * spe + s + 1) for r in range(world)]
            assert all(len(x) == 3 for x in batch)


def test_resume_at_step_k_is_o1_and_equals_the_uninterrupted_stream():
    plan = _plan(KEPT, world=2, b=4)
    spe = plan.steps_per_epoch
    straight = plan.rows(1, 0, 5 * spe)
    fresh = _plan(KEPT, world=2, b=4)
    k = 4 * spe + 3
    assert fresh.position(1, k) == (4, fresh.share + 3 * 4)
    assert np.array_equal(fresh.rows(1, k, 5 * spe), straight[k * 4 :])
    assert set(fresh._epochs) == {4}  # no earlier epoch's order was computed
    units = list(fresh.units(1, k, 5 * spe))
    assert sum(u.hi - u.lo for u in units) == (5 * spe - k) * 4


def test_the_rows_read_are_the_rows_planned_labels_dense(tmp_path):
    labels = _tables(tmp_path)
    src = open_source(str(tmp_path), parquet_files(str(tmp_path)), "label", piece_rows=8)
    assert src.num_rows == 141 and src.classes.tolist() == sorted(set(labels.tolist()))
    assert max(p.stop - p.start for p in src.pieces) == 8
    plan = make_plan(src, 3, 20, 4, 2)
    spec = ReadSpec.of(plan, src, None)
    for rank in (0, 1):
        batches = list(iter_local(spec, rank, 1, 2 * plan.steps_per_epoch, DecodeImages(None, spec), 3))
        rows = np.concatenate([b["row"] for b in batches])
        assert all(len(b["row"]) == 4 for b in batches)
        assert np.array_equal(rows, plan.rows(rank, 1, 2 * plan.steps_per_epoch))
        images = np.concatenate([b["image"] for b in batches])  # (n, 8, 8, 3), grey value = row id % 251
        assert np.array_equal(images[:, 0, 0, 0], rows % 251)
        dense = np.searchsorted(np.unique(labels), labels)
        assert np.array_equal(np.concatenate([b["label"] for b in batches]), dense[rows])


def test_a_row_filter_keeps_only_its_classes(tmp_path):
    labels = _tables(tmp_path)
    src = open_source(str(tmp_path), parquet_files(str(tmp_path)), "label", piece_rows=8)
    keys, counts = src.key_counts()
    assert keys.tolist() == sorted(set(labels.tolist())) and counts.sum() == 141
    kept = src.restrict(keys[counts >= np.sort(counts)[-2]])  # the two largest classes
    assert kept.num_rows == int(np.isin(labels, kept.classes).sum()) and kept.num_classes == 2
    plan = make_plan(kept, 0, 16, 4, 1)
    spec = ReadSpec.of(plan, kept, None)
    got = list(iter_local(spec, 0, 0, plan.steps_per_epoch, DecodeImages(None), 2))
    rows = np.concatenate([b["row"] for b in got])
    grey = np.concatenate([b["image"][:, 0, 0, 0] for b in got])
    original = np.flatnonzero(np.isin(labels, kept.classes))  # kept row id -> file row
    assert np.array_equal(grey, original[rows] % 251)
    assert set(np.concatenate([b["label"] for b in got]).tolist()) == {0, 1}


def test_pieces_of_one_large_row_group(tmp_path):
    """A table written as one row group (as write_table does) is read in pieces, each the right rows."""
    labels = _tables(tmp_path, sizes=(100,), row_group_size=1 << 20)
    src = open_source(str(tmp_path), parquet_files(str(tmp_path)), "label", piece_rows=16)
    assert len(src.pieces) == 7 and {p.row_group for p in src.pieces} == {0}
    plan = make_plan(src, 1, 10, 5, 1)
    spec = ReadSpec.of(plan, src, None)
    for unit in plan.units(0, 0, plan.steps_per_epoch):
        rows = read_unit(spec, unit)
        assert np.array_equal(
            np.array([Image.open(io.BytesIO(b)).getpixel((0, 0))[0] for b in rows["image"]]), rows["row"] % 251
        )
        assert np.array_equal(rows["label"], np.searchsorted(np.unique(labels), labels)[rows["row"]])


def test_a_truncated_file_is_one_error_naming_it(tmp_path):
    _tables(tmp_path)
    bad = tmp_path / "part-1.parquet"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(RowGroupError, match=r"part-1\.parquet: not a readable Parquet file") as err:
        open_source(str(tmp_path), parquet_files(str(tmp_path)), "label")
    assert "\n" not in str(err.value)


def test_a_damaged_page_met_mid_stream_names_the_file(tmp_path):
    """The footer and the labels read well (the plan is made), an image page does not: the loader's
    error names the file."""
    _tables(tmp_path, sizes=(60,), row_group_size=60)
    path = tmp_path / "part-0.parquet"
    meta = pq.ParquetFile(path).metadata.row_group(0).column(0)  # the image column chunk, first in the file
    assert meta.path_in_schema == "image"
    data = bytearray(path.read_bytes())
    at = (meta.dictionary_page_offset if meta.has_dictionary_page else meta.data_page_offset) + 100
    assert at + 200 < meta.data_page_offset  # inside the images' first page, before the labels
    data[at : at + 200] = bytes(range(200))
    path.write_bytes(bytes(data))
    src = open_source(str(tmp_path), parquet_files(str(tmp_path)), "label")
    spec = ReadSpec.of(make_plan(src, 0, 8, 4, 1), src, None)
    with pytest.raises(RowGroupError, match=r"part-0\.parquet: cannot read row group 0") as err:
        list(iter_local(spec, 0, 0, 15, DecodeImages(None, spec), 2))
    assert "\n" not in str(err.value)


def test_a_file_changed_after_planning_is_named(tmp_path):
    _tables(tmp_path, sizes=(30,))
    src = open_source(str(tmp_path), parquet_files(str(tmp_path)), "label", piece_rows=8)
    spec = ReadSpec.of(make_plan(src, 0, 8, 4, 1), src, None)
    _tables(tmp_path, sizes=(20,))  # rewritten smaller
    with pytest.raises(RowGroupError, match=r"part-0\.parquet: .*changed since the run was planned"):
        list(iter_local(spec, 0, 0, 7, DecodeImages(None), 2))


def test_an_s3_source_streams_the_same_rows(tmp_path, s3_bucket):
    from uiface_ray import storage

    _tables(tmp_path)
    for f in sorted(tmp_path.glob("*.parquet")):
        storage.write_bytes_atomic(f"{s3_bucket}/faces/{f.name}", f.read_bytes())
    local = open_source(str(tmp_path), parquet_files(str(tmp_path)), "label", piece_rows=8)
    remote = open_source(f"{s3_bucket}/faces", parquet_files(f"{s3_bucket}/faces"), "label", piece_rows=8)
    assert remote.files[0].startswith("s3://") and remote.num_rows == local.num_rows
    out = []
    for src in (local, remote):
        plan = make_plan(src, 5, 20, 4, 2)
        batches = iter_local(ReadSpec.of(plan, src, None), 1, 0, plan.steps_per_epoch, DecodeImages(None), 2)
        out.append([(b["row"].tolist(), b["label"].tolist(), b["image"].tobytes()) for b in batches])
    assert out[0] == out[1] and len(out[0]) == make_plan(local, 5, 20, 4, 2).steps_per_epoch


def test_an_error_in_the_reader_thread_reaches_the_consumer_and_the_thread_stops(tmp_path):
    import threading

    _tables(tmp_path, sizes=(40,))
    src = open_source(str(tmp_path), parquet_files(str(tmp_path)), "label", piece_rows=8)
    spec = ReadSpec.of(make_plan(src, 0, 8, 4, 1), src, None)

    def failing(batch):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(iter_local(spec, 0, 0, 10, failing, 2))
    it = iter_local(spec, 0, 0, 10, DecodeImages(None), 1)
    next(it)
    it.close()  # stops the reader thread, which was blocked on a full queue
    assert not [t for t in threading.enumerate() if t.name == "uiface-stream"]


def test_an_undecodable_image_names_its_file_and_row_group(tmp_path):
    from uiface_ray.errors import InputError

    _tables(tmp_path, sizes=(20, 30))
    table = pq.read_table(tmp_path / "part-1.parquet").to_pydict()
    table["image"][17] = b"not an image"
    pq.write_table(pa.table(table), str(tmp_path / "part-1.parquet"), row_group_size=13)
    src = open_source(str(tmp_path), parquet_files(str(tmp_path)), "label", piece_rows=8)
    spec = ReadSpec.of(make_plan(src, 0, 100, 5, 1), src, None)
    with pytest.raises(InputError, match=r"part-1\.parquet row group 1 \(rows 0:8\): not a decodable image"):
        list(iter_local(spec, 0, 0, 10, DecodeImages(None, spec), 2))
