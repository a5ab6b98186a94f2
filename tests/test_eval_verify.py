"""10-fold accuracy, the LFW pairs reader, the restricted .bin unpickler, verification end to end."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from uiface_ray.evaluate.bin_reader import UnsafePickleError, parse_bin, restricted_loads
from uiface_ray.evaluate.pairs import parse_pairs
from uiface_ray.evaluate.config import VerifySetConfig
from uiface_ray.evaluate.tenfold import best_threshold, fold_ids, ten_fold_accuracy
from uiface_ray.evaluate.verify import verify_set


def test_ten_fold_on_constructed_pairs():
    # Same pairs score 0.6..0.9, different 0.0..0.3: separable, accuracy 1, threshold in (0.3, 0.6).
    rng = np.random.default_rng(0)
    same = rng.uniform(0.6, 0.9, 100)
    diff = rng.uniform(0.0, 0.3, 100)
    res = ten_fold_accuracy(np.concatenate([same, diff]), np.array([True] * 100 + [False] * 100))
    assert res.accuracy == 1.0 and res.accuracy_std == 0.0
    assert all(0.3 < t < 0.6 for t in res.thresholds)
    # Flip the labels of exactly 10 same pairs (one per fold): each fold loses 1 of 20.
    issame = np.array([True] * 100 + [False] * 100)
    scores = np.concatenate([same, diff])
    scores[np.arange(0, 100, 10)] = 0.1
    res2 = ten_fold_accuracy(scores, issame)
    assert res2.accuracy == pytest.approx(0.95)
    assert fold_ids(issame).tolist()[:10] == [0] * 10


def test_best_threshold_is_exact():
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2])
    issame = np.array([True, True, False, True, False, False])
    t = best_threshold(scores, issame)
    assert ((scores >= t) == issame).sum() == 5
    with pytest.raises(ValueError, match="10-fold"):
        ten_fold_accuracy(scores, issame)


def test_parse_pairs_formats():
    pairs = parse_pairs("2\nAl\t1\t2\nAl\t1\tBo\t3\n")
    assert [(p.same, p.name2, p.index2) for p in pairs] == [(True, "Al", 2), (False, "Bo", 3)]
    with pytest.raises(ValueError, match="line 2"):
        parse_pairs("1\nAl\tx\t2\n", "p.txt")


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((112, 112, 3), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_reads_bin_and_refuses_code(tmp_path):
    bins = [_jpeg(v) for v in (10, 20, 30, 40)]
    data = pickle.dumps((bins, [True, False]))
    out = parse_bin(data, "small.bin")
    assert out.images.shape == (4, 112, 112, 3) and out.issame.tolist() == [True, False]
    assert abs(int(out.images[1].mean()) - 20) <= 2
    # Encoded images stored as uint8 numpy arrays also load (numpy's reconstruct is allowed).
    arrays = [np.frombuffer(b, np.uint8) for b in bins]
    out2 = parse_bin(pickle.dumps((arrays, [True, False])), "arrays.bin")
    assert np.array_equal(out2.images, out.images)
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        restricted_loads(pickle.dumps(([_Boom()], [True])))
    with pytest.raises(UnsafePickleError, match="object"):
        restricted_loads(pickle.dumps(np.array([1, "a"], dtype=object)))
    with pytest.raises(ValueError, match="twice as many"):
        parse_bin(pickle.dumps((bins[:3], [True, False])), "bad.bin")


def test_verify_pairs_on_lfw_end_to_end(lfw_dir):
    from uiface_ray.encoders import EncoderConfig, load_encoder

    encoder = load_encoder(EncoderConfig(kind="dlib"))
    spec = VerifySetConfig(
        name="devtest-slice", pairs=str(lfw_dir / "pairsDevTest.txt"), images_root=str(lfw_dir / "images"), max_pairs=40
    )
    res = verify_set(encoder, spec)
    assert res.num_pairs == 40 and sum(res.issame) == 20
    assert res.accuracy > 0.8  # dlib's descriptor reaches ~97% on the full list
    # The same pairs seen at 32x32 (a 32-pixel generator's resolution): other scores, still far above chance.
    small = verify_set(encoder, spec, resolution=32)
    assert small.issame == res.issame and not np.allclose(small.scores, res.scores)
    assert small.accuracy > 0.7


def test_at_resolution_removes_detail_finer_than_the_size():
    from uiface_ray.evaluate.faceset import FaceSet, at_resolution, decode_images, faceset_at_resolution

    flat = np.full((1, 112, 112, 3), 90, np.uint8)
    assert np.array_equal(at_resolution(flat, 16), flat)  # nothing to lose
    yy, xx = np.mgrid[:112, :112]
    checker = np.repeat((((yy // 2 + xx // 2) % 2) * 255).astype(np.uint8)[None, ..., None], 3, axis=3)
    out = at_resolution(checker, 16)
    assert out.shape == checker.shape and out.std() < 0.2 * checker.std()  # 2-px squares averaged out
    buf = io.BytesIO()
    Image.fromarray(checker[0]).save(buf, format="PNG")
    faces = FaceSet([buf.getvalue()], np.zeros(1, np.int64), ["a"], "mem", "face_table")
    small = faceset_at_resolution(faces, 16)
    assert Image.open(io.BytesIO(small.images[0])).size == (16, 16) and small.identities == ["a"]
    assert decode_images(small.images).shape == (1, 16, 16, 3)


def test_verify_job_on_a_bin_with_an_iresnet_checkpoint(tmp_path, capsys):
    import json

    import torch

    import jobs.verify as job
    from uiface_ray.encoders import build_iresnet

    torch.manual_seed(0)
    torch.save(build_iresnet(18, 16).state_dict(), tmp_path / "backbone.pth")
    rng = np.random.default_rng(0)
    bins, issame = [], []
    for i in range(20):
        a = int(rng.integers(0, 255))
        same = i % 2 == 0
        bins += [_jpeg(a), _jpeg(a if same else (a + 128) % 256)]
        issame.append(same)
    (tmp_path / "tiny.bin").write_bytes(pickle.dumps((bins, issame)))
    rc = job.main(
        [
            "--encoder.kind",
            "iresnet",
            "--encoder.path",
            str(tmp_path / "backbone.pth"),
            "--encoder.depth",
            "18",
            "--encoder.embedding_dim",
            "16",
            "--sets",
            json.dumps([{"name": "tiny", "bin": str(tmp_path / "tiny.bin")}]),
            "--out",
            str(tmp_path / "v"),
        ]
    )
    assert rc == 0
    body = json.loads((tmp_path / "v" / "verify.json").read_text())
    (res,) = body["results"]
    assert res["name"] == "tiny" and res["num_pairs"] == 20 and 0.0 <= res["accuracy"] <= 1.0
    assert res["encoder"].startswith("iresnet-18:")
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_Boom()], [True])))
    rc = job.main(
        [
            "--encoder.kind",
            "iresnet",
            "--encoder.path",
            str(tmp_path / "backbone.pth"),
            "--encoder.depth",
            "18",
            "--encoder.embedding_dim",
            "16",
            "--sets",
            json.dumps([{"name": "evil", "bin": str(tmp_path / "evil.bin")}]),
            "--out",
            str(tmp_path / "evil-out"),
        ]
    )
    assert rc == 2  # refused as bad input: one 'error:' line, no traceback, nothing written
    assert "refusing global" in capsys.readouterr().err
    assert not (tmp_path / "evil-out" / "verify.json").exists()
