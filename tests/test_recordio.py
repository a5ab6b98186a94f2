"""insightface RecordIO: a file written by hand in the documented layout, writer->reader round
trips (local and S3), records that contain the magic number, and malformed files."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from uiface_ray.data.recordio import RecordIOError, RecordIOReader, write_recordio

MAGIC = 0xCED7230A


def _jpeg(seed: int, size: int = 16) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _hand_record(flag: int, label: float, labels: list[float], payload: bytes, rid: int) -> bytes:
    """One record exactly as the layout describes, written independently of the package."""
    body = struct.pack("<IfQQ", flag, label, rid, 0) + struct.pack(f"<{len(labels)}f", *labels) + payload
    return struct.pack("<II", MAGIC, len(body)) + body + b"\0" * (-len(body) % 4)


def _hand_split_record(label: float, payload_a: bytes, payload_b: bytes, rid: int) -> bytes:
    """A record whose payload is ``header + a + MAGIC + b``: two chunks, cflag 1 then 3."""
    first = struct.pack("<IfQQ", 0, label, rid, 0) + payload_a
    assert len(first) % 4 == 0
    out = struct.pack("<II", MAGIC, (1 << 29) | len(first)) + first
    out += struct.pack("<II", MAGIC, (3 << 29) | len(payload_b)) + payload_b
    return out + b"\0" * (-len(payload_b) % 4)


def test_reads_a_hand_written_insightface_file(tmp_path):
    images = [_jpeg(i) for i in range(5)]
    labels = [0, 0, 1, 1, 1]
    magic_bytes = struct.pack("<I", MAGIC)
    tricky = b"abcd" + magic_bytes + b"tail-of-image"  # magic at payload offset 24 + 4: aligned
    records = [_hand_record(2, 0.0, [6.0, 8.0], b"", 0)]
    records += [_hand_record(0, float(lab), [], img, i + 1) for i, (lab, img) in enumerate(zip(labels, images))]
    records[3] = _hand_split_record(1.0, b"abcd", b"tail-of-image", 3)
    records += [_hand_record(2, 0.0, [1.0, 3.0], b"", 6), _hand_record(2, 0.0, [3.0, 6.0], b"", 7)]
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    offsets, pos = [], 0
    for blob in records:
        offsets.append(pos)
        pos += len(blob)
    rec.write_bytes(b"".join(records))
    idx.write_text("".join(f"{i}\t{o}\n" for i, o in enumerate(offsets)))

    for reader in (RecordIOReader(str(rec)), RecordIOReader(str(rec), str(tmp_path / "absent.idx"))):
        with reader:
            assert len(reader) == 5
            assert reader.identity_ranges == [(1, 3), (3, 6)]
            got = list(reader)
            assert [g.label for g in got] == [0.0, 0.0, 1.0, 1.0, 1.0]
            assert got[2].image == tricky
            assert got[4].image == images[4] and reader[-1].image == images[4]
            assert reader[0] == (0.0, images[0])


def test_write_read_round_trip(tmp_path):
    magic_bytes = struct.pack("<I", MAGIC)
    payloads = [_jpeg(i) for i in range(7)]
    payloads[1] = magic_bytes + payloads[1]  # aligned (payload offset 24): record is split
    payloads[2] = b"xx" + magic_bytes + b"yy"  # unaligned: stored as is
    payloads[3] = b"ab" * 2 + magic_bytes + magic_bytes + b"z"  # two aligned in a row
    labels = [0, 0, 0, 1, 2, 2, 2]
    rec = tmp_path / "out" / "train.rec"
    summary = write_recordio(str(rec), None, zip(labels, payloads))
    assert (summary.num_images, summary.num_identities) == (7, 3)
    assert (tmp_path / "out" / "train.idx").is_file()
    raw = rec.read_bytes()
    assert struct.unpack_from("<I", raw)[0] == MAGIC and len(raw) % 4 == 0
    with RecordIOReader(str(rec)) as reader:
        assert len(reader) == 7
        assert [item.label for item in reader] == [float(v) for v in labels]
        assert [item.image for item in reader] == payloads
        assert reader.identity_ranges == [(1, 4), (4, 5), (5, 8)]
        head, body = reader.read_record(0)
        assert head.flag == 2 and head.labels == (8.0, 11.0) and body == b""
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train.idx", "train.rec"]


def test_round_trip_on_s3(s3_bucket):
    payloads = [_jpeg(i) for i in range(4)]
    url = f"{s3_bucket}/data/train.rec"
    write_recordio(url, None, zip([0, 1, 1, 2], payloads))
    with RecordIOReader(url) as reader:
        assert [tuple(x) for x in reader] == list(zip([0.0, 1.0, 1.0, 2.0], payloads))


def test_bad_magic_names_file_and_offset(tmp_path):
    rec = tmp_path / "train.rec"
    write_recordio(str(rec), None, zip([0, 1], [_jpeg(0), _jpeg(1)]))
    offset = int((tmp_path / "train.idx").read_text().splitlines()[2].split("\t")[1])
    data = bytearray(rec.read_bytes())
    data[offset : offset + 4] = b"\x00\x01\x02\x03"
    rec.write_bytes(bytes(data))
    with pytest.raises(RecordIOError, match=rf"train\.rec: bad magic number 0x03020100 at offset {offset}"):
        with RecordIOReader(str(rec)) as reader:
            list(reader)
    (tmp_path / "not.rec").write_bytes(b"JFIF" * 10)
    with pytest.raises(RecordIOError, match=r"not\.rec: bad magic number .* at offset 0"):
        RecordIOReader(str(tmp_path / "not.rec"))


def test_writer_rejects_scattered_labels_and_leaves_nothing(tmp_path):
    with pytest.raises(RecordIOError, match="label 0, whose images already ended"):
        write_recordio(str(tmp_path / "a.rec"), None, zip([0, 1, 0], [_jpeg(i) for i in range(3)]))
    with pytest.raises(RecordIOError, match="0..K-1"):
        write_recordio(str(tmp_path / "b.rec"), None, zip([0, 2], [_jpeg(i) for i in range(2)]))
    with pytest.raises(RecordIOError, match="expected an integer"):
        write_recordio(str(tmp_path / "c.rec"), None, zip([0.5], [_jpeg(0)]))
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_bad_idx(tmp_path):
    with pytest.raises(RecordIOError, match="not found: .*nothing.rec"):
        RecordIOReader(str(tmp_path / "nothing.rec"))
    write_recordio(str(tmp_path / "t.rec"), None, zip([0], [_jpeg(0)]))
    (tmp_path / "t.idx").write_text("0\t0\nbroken line\n")
    with pytest.raises(RecordIOError, match=r"t\.idx line 2"):
        RecordIOReader(str(tmp_path / "t.rec"))
