"""Shard plan, shard encoding, manifest and resume rules (no Ray, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from uiface_ray import storage
from uiface_ray.synth.manifest import Manifest, ShardRecord, config_differences, read_manifest, write_manifest
from uiface_ray.synth.plan import plan_shards, shard_name
from uiface_ray.synth.resume import ResumeError, expected_rows, resume_state
from uiface_ray.synth.shard import ShardRows, decode_image, encode_image, encode_shard, read_shard, sha256


def test_plan_covers_every_identity_once():
    plan = plan_shards(10, 4, 3)
    assert [s.name for s in plan] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    assert [(s.row_start, s.row_stop) for s in plan] == [(0, 4), (4, 8), (8, 10)]
    assert sum(s.num_images for s in plan) == 30
    assert shard_name(42) == "shard-00042.parquet"
    with pytest.raises(ValueError):
        plan_shards(0, 4, 3)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_image_encoding(fmt):
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = encode_image(img, fmt, quality=90)
    assert data == encode_image(img, fmt, quality=90)
    back = decode_image(data)
    assert back.shape == (16, 16, 3)
    if fmt == "png":
        np.testing.assert_array_equal(back, img)
    with pytest.raises(ValueError):
        encode_image(img.astype(np.float32), fmt)


def _rows(spec, ids, seed_offset=0):
    rng = np.random.default_rng(spec.index + seed_offset)
    idn, idx = expected_rows(spec, ids)
    imgs = [encode_image(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in idn]
    return ShardRows(idn, idx, idn * 100 + idx, imgs, np.full(len(idn), 500), "two_stage", "m" * 8)


def test_shard_roundtrip_and_determinism(tmp_path):
    spec = plan_shards(5, 2, 3)[1]
    rows = _rows(spec, np.arange(5))
    data = encode_shard(rows)
    assert data == encode_shard(rows)
    url = str(tmp_path / spec.name)
    storage.write_bytes_atomic(url, data)
    back = read_shard(url)
    np.testing.assert_array_equal(back.identity_id, [2, 2, 2, 3, 3, 3])
    np.testing.assert_array_equal(back.image_index, [0, 1, 2, 0, 1, 2])
    assert back.image == rows.image and back.mode == "two_stage" and back.model_hash == "m" * 8


def test_config_differences_names_keys():
    diffs = config_differences({"seed": 1, "sampler": {"steps": 10}}, {"seed": 1, "sampler": {"steps": 20}, "x": 1})
    assert diffs == ["sampler.steps: 10 -> 20", "x: '<absent>' -> 1"]


def _setup(out, gen, n_done=2):
    ids = np.arange(5)
    plan = plan_shards(5, 2, 3)
    man = Manifest(gen, 5, 3, len(plan), job_config={"a": 1})
    for spec in plan[:n_done]:
        data = encode_shard(_rows(spec, ids))
        storage.write_bytes_atomic(storage.join(out, "shards", spec.name), data)
        man.shards.append(ShardRecord(spec.name, spec.index, spec.num_images, sha256(data)))
    write_manifest(out, man)
    return ids, plan, man


def test_resume_rules(tmp_path):
    out = str(tmp_path / "out")
    gen = {"model_hash": "m" * 8, "seed": 3}
    assert resume_state(out, gen, plan_shards(5, 2, 3), np.arange(5)).todo == plan_shards(5, 2, 3)
    ids, plan, man = _setup(out, gen)
    back = read_manifest(out)
    assert back.shards == man.shards and not back.complete and back.num_rows == 12
    st = resume_state(out, gen, plan, ids)
    assert sorted(st.done) == [0, 1] and [s.index for s in st.todo] == [2]
    # shard 2 written, manifest not yet updated: adopted; shard 0 corrupted: rerun
    storage.write_bytes_atomic(storage.join(out, "shards", plan[2].name), encode_shard(_rows(plan[2], ids)))
    storage.write_bytes_atomic(storage.join(out, "shards", plan[0].name), encode_shard(_rows(plan[0], ids, 7)))
    st = resume_state(out, gen, plan, ids)
    assert st.adopted == [plan[2].name] and st.redo == [plan[0].name] and [s.index for s in st.todo] == [0]
    # an unlisted shard with the wrong rows is rerun, not adopted
    storage.write_bytes_atomic(storage.join(out, "shards", plan[2].name), encode_shard(_rows(plan[1], ids)))
    assert 2 in [s.index for s in resume_state(out, gen, plan, ids).todo]


def test_resume_refuses_other_config_and_foreign_files(tmp_path):
    out = str(tmp_path / "out")
    ids, plan, _ = _setup(out, {"model_hash": "m" * 8, "seed": 3})
    with pytest.raises(ResumeError, match=r"seed: 3 -> 4"):
        resume_state(out, {"model_hash": "m" * 8, "seed": 4}, plan, ids)
    storage.write_bytes_atomic(storage.join(out, "shards", "shard-00099.parquet"), b"x")
    with pytest.raises(ResumeError, match="shard-00099"):
        resume_state(out, {"model_hash": "m" * 8, "seed": 3}, plan, ids)
    other = str(tmp_path / "other")
    storage.write_bytes_atomic(storage.join(other, "shards", "shard-00000.parquet"), b"x")
    with pytest.raises(ResumeError, match="no manifest"):
        resume_state(other, {}, plan, ids)


def test_progress_line_counts_and_eta():
    import io

    from uiface_ray.progress import Progress
    from uiface_ray.synth.progress import progress_line, show_progress

    out = io.StringIO()
    p = Progress(40, 10, every_s=0.0, parts_total=4, parts_done=1)
    p.start -= 10.0  # as if 10 s had passed
    p.add(10, parts=1)
    line = progress_line(p)
    assert "shards 2/4" in line and "images 20/40" in line and "1.00 img/s" in line and "ETA 0:00:20" in line
    show_progress(p, stream=out)
    p.add(10, parts=1)
    p.add(10, parts=1)
    show_progress(p, stream=out)
    show_progress(p, force=True, stream=out)  # the final line is not printed twice
    assert out.getvalue().count("\n") == 2 and "shards 4/4" in out.getvalue().splitlines()[-1]


def test_plan_refuses_datasets_whose_rows_cannot_exist():
    """Issue 27.7: counts past 2**40 images are refused at planning, before anything is allocated."""
    from uiface_ray.synth.errors import SynthesisInputError
    from uiface_ray.synth.plan import MAX_DATASET_IMAGES

    with pytest.raises(SynthesisInputError, match=r"2\*\*40"):
        plan_shards(2**21, 2**21, 2**20)
    assert len(plan_shards(MAX_DATASET_IMAGES // 2**20, 2**20, 2**20)) == 1


def test_synthesis_config_bounds_shard_size():
    from pydantic import ValidationError

    from uiface_ray.synth.config import MAX_SHARD_IMAGES, SynthesisConfig

    base = dict(model="m", identities="i", output="o")
    with pytest.raises(ValidationError, match="images_per_identity"):
        SynthesisConfig(**base, images_per_identity=10**18)
    with pytest.raises(ValidationError, match=r"identities_per_shard x images_per_identity = 2048 x 1024"):
        SynthesisConfig(**base, identities_per_shard=2048, images_per_identity=1024)
    with pytest.raises(ValidationError, match="lease_ttl_s"):
        SynthesisConfig(**base, lease_ttl_s=1e300)
    assert SynthesisConfig(**base, identities_per_shard=1, images_per_identity=MAX_SHARD_IMAGES)


def test_non_finite_images_fail_the_shard(tmp_path):
    """Issue 27.6: a batch whose latents turn NaN is an error naming the shard, never black images."""
    import torch

    from uiface_ray.sample import SamplerConfig, UIFaceSampler
    from uiface_ray.synth.generate import NonFiniteImagesError, generate_shard

    torch.set_num_threads(1)
    cfg = SamplerConfig(num_inference_steps=2)
    emb = np.random.default_rng(0).standard_normal((2, 128)).astype(np.float32)
    spec = plan_shards(6, 2, 2)[2]
    kw = dict(job_seed=0, batch_size=3, image_format="png", jpeg_quality=95, mode="uiface", model_hash="h")
    from bad_inputs import _overflowing_model
    from tiny_assets import make_tiny_model

    tiny = make_tiny_model(str(tmp_path / "tiny"))
    bad = UIFaceSampler.from_pretrained(_overflowing_model(tmp_path, {"model": tiny}), config=cfg)
    with pytest.raises(
        NonFiniteImagesError, match=r"shard 2: the sampler produced non-finite values .*identity 4, image 0"
    ):
        generate_shard(bad, spec, np.array([4, 5]), emb, **kw)
    good = UIFaceSampler.from_pretrained(tiny, config=cfg)
    out = generate_shard(good, spec, np.array([4, 5]), emb, **kw)
    assert len(out.rows) == 4
