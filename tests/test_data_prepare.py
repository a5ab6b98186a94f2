"""Face-data ingest on real LFW faces: image folders, people lists, RecordIO input, bad inputs."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uiface_ray.data import (
    FaceDataError,
    ImageError,
    PrepareFacesConfig,
    RecordIOError,
    prepare_faces,
    read_people_list,
    write_recordio,
)
from uiface_ray.storage import read_table
from uiface_ray.storage.parquet import table_metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jobs.prepare_faces as prepare_job  # noqa: E402


def _quiet(_msg: str) -> None:
    pass


def _subset(lfw_dir, tmp_path, people: dict[str, int]) -> Path:
    """A small tree copied from LFW: ``people`` maps name -> number of images to copy."""
    root = tmp_path / "images"
    for name, n in people.items():
        (root / name).mkdir(parents=True)
        for src in sorted((lfw_dir / "images" / name).glob("*.jpg"))[:n]:
            shutil.copy(src, root / name / src.name)
    return root


def _devtrain_people(lfw_dir, min_n: int, count: int) -> list[str]:
    return [name for name, n in read_people_list(str(lfw_dir / "peopleDevTrain.txt")) if n >= min_n][:count]


def test_people_list_and_min_images(lfw_dir, tmp_path):
    people = read_people_list(str(lfw_dir / "peopleDevTrain.txt"))
    assert len(people) == 4038 and people[0] == ("AJ_Cook", 1)
    assert sum(1 for _, n in people if n >= 5) == 298

    names = _devtrain_people(lfw_dir, 5, 3) + ["AJ_Cook"]  # AJ_Cook has 1 image: dropped at min 2
    listed = tmp_path / "people.txt"
    listed.write_text(f"{len(names)}\n" + "".join(f"{n}\t0\n" for n in names))
    out = tmp_path / "faces.parquet"
    cfg = PrepareFacesConfig(
        input=str(lfw_dir / "images"), people_file=str(listed), min_images=2, max_images_per_identity=4, output=str(out)
    )
    result = prepare_faces(cfg, log=_quiet)
    table = read_table(str(out))
    assert table.column_names == ["image", "label", "identity", "source", "width", "height"]
    assert str(table.schema.field("label").type) == "int64"
    assert str(table.schema.field("width").type) == "int32"
    cols = table.to_pydict()
    assert sorted(set(cols["identity"])) == sorted(names[:3])
    assert result.table.images == 12 and result.table.identities == 3
    # Labels contiguous from 0, one per identity, identities in name order.
    assert cols["label"] == [0] * 4 + [1] * 4 + [2] * 4
    assert cols["identity"][::4] == sorted(names[:3])
    # 112x112 input at resolution 112: the original JPEG bytes, untouched.
    first = cols["source"][0]
    assert first.endswith(".jpg") and Path(first).read_bytes() == cols["image"][0]
    assert set(cols["width"]) == {112} and set(cols["height"]) == {112}
    meta = json.loads(table_metadata(table)["uiface.face_table"])
    assert meta["min_images"] == 2 and meta["images"] == 12


def test_smaller_resolution_and_png(lfw_dir, tmp_path):
    root = _subset(lfw_dir, tmp_path, {"Aaron_Peirsol": 2, "Abdullah_Gul": 2})
    out = tmp_path / "faces32.parquet"
    prepare_faces(PrepareFacesConfig(input=str(root), resolution=32, image_format="png", output=str(out)), log=_quiet)
    cols = read_table(str(out)).to_pydict()
    assert cols["label"] == [0, 0, 1, 1] and set(cols["width"]) == {32}
    for data in cols["image"]:
        img = Image.open(io.BytesIO(data))
        assert img.format == "PNG" and img.size == (32, 32) and img.mode == "RGB"


def test_recordio_input(lfw_dir, tmp_path):
    names = _devtrain_people(lfw_dir, 5, 3)
    records = []
    for label, name in enumerate(names):
        for f in sorted((lfw_dir / "images" / name).glob("*.jpg"))[: 2 + label]:  # 2, 3, 4 images
            records.append((label, f.read_bytes()))
    rec = tmp_path / "train.rec"
    write_recordio(str(rec), None, records)
    out = tmp_path / "faces.parquet"
    result = prepare_faces(PrepareFacesConfig(input=str(rec), min_images=3, output=str(out)), log=_quiet)
    cols = read_table(str(out)).to_pydict()
    assert result.source_kind == "rec" and result.table.identities == 2
    # Identities 1 and 2 kept (3 and 4 images), relabelled 0 and 1; sources are record indices.
    assert cols["identity"] == ["1"] * 3 + ["2"] * 4 and cols["label"] == [0] * 3 + [1] * 4
    assert cols["source"][0] == "rec:3" and cols["image"] == [img for _, img in records[2:]]


def test_job_writes_table(lfw_dir, tmp_path):
    root = _subset(lfw_dir, tmp_path, {"Aaron_Peirsol": 3, "Abdullah_Gul": 2})
    out = tmp_path / "job.parquet"
    assert prepare_job.main([f"--input={root}", f"--output={out}", "--min_images=3"]) == 0
    assert read_table(str(out)).to_pydict()["identity"] == ["Aaron_Peirsol"] * 3


# ---------------------------------------------------------------------------------------------
# Bad input: one clear error naming the file, and no output.


def _run_expecting(tmp_path, error, pattern, **cfg):
    out = tmp_path / "out" / "faces.parquet"
    with pytest.raises(error, match=pattern):
        prepare_faces(PrepareFacesConfig(output=str(out), **cfg), log=_quiet)
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_folder(tmp_path):
    _run_expecting(tmp_path, FaceDataError, r"image folder not found: .*nowhere", input=str(tmp_path / "nowhere"))


def test_stray_files_and_folders_without_images_are_skipped(lfw_dir, tmp_path):
    root = _subset(lfw_dir, tmp_path, {"Aaron_Peirsol": 2})
    (root / "Empty_Person").mkdir()
    (root / "Empty_Person" / "notes.txt").write_text("no faces here")
    (root / "README").write_text("my faces")
    (root / "Aaron_Peirsol" / ".DS_Store").write_bytes(b"\0")
    lines = []
    result = prepare_faces(PrepareFacesConfig(input=str(root), output=str(tmp_path / "f.parquet")), log=lines.append)
    assert (result.table.identities, result.table.images) == (1, 2)
    assert any("skipped 3 non-image files" in line for line in lines), lines


def test_folder_with_no_images_at_all(tmp_path):
    root = tmp_path / "faces"
    (root / "someone").mkdir(parents=True)
    (root / "someone" / "notes.txt").write_text("x")
    _run_expecting(tmp_path, FaceDataError, r"faces holds no images in identity folders", input=str(root))


def test_listed_person_without_folder(lfw_dir, tmp_path):
    root = _subset(lfw_dir, tmp_path, {"Aaron_Peirsol": 2})
    listed = tmp_path / "people.txt"
    listed.write_text("2\nAaron_Peirsol\t2\nNo_Such_Person\t3\n")
    _run_expecting(
        tmp_path,
        FaceDataError,
        r"identity folder .*No_Such_Person is missing",
        input=str(root),
        people_file=str(listed),
    )


def test_bad_people_list(lfw_dir, tmp_path):
    listed = tmp_path / "people.txt"
    listed.write_text("3\nAaron_Peirsol\t2\n")
    _run_expecting(
        tmp_path,
        FaceDataError,
        r"people.txt: first line says 3 people, 1 listed",
        input=str(lfw_dir / "images"),
        people_file=str(listed),
    )


def test_unreadable_image(lfw_dir, tmp_path):
    root = _subset(lfw_dir, tmp_path, {"Aaron_Peirsol": 2, "Abdullah_Gul": 2})
    (root / "Abdullah_Gul" / "Abdullah_Gul_0099.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    _run_expecting(tmp_path, ImageError, r"unreadable image .*Abdullah_Gul_0099\.jpg", input=str(root))


def test_recordio_bad_magic(tmp_path):
    rec = tmp_path / "train.rec"
    rec.write_bytes(np.arange(64, dtype=np.uint32).tobytes())
    _run_expecting(tmp_path, RecordIOError, r"train\.rec: bad magic number 0x00000000 at offset 0", input=str(rec))


def test_job_reports_bad_input_in_one_line(tmp_path, capsys):
    out = tmp_path / "faces.parquet"
    assert prepare_job.main([f"--input={tmp_path / 'nowhere'}", f"--output={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image folder not found") and "Traceback" not in err
    assert not out.exists()


def _att_like_tree(tmp_path, people: int = 3, per_person: int = 4) -> Path:
    """A user's own faces as the AT&T/ORL set ships them: s1/1.pgm ..., grey 92x112, a README on top."""
    root = tmp_path / "att"
    rng = np.random.default_rng(0)
    for p in range(1, people + 1):
        (root / f"s{p}").mkdir(parents=True)
        for i in range(1, per_person + 1):
            Image.fromarray(rng.integers(0, 255, (112, 92), dtype=np.uint8), mode="L").save(root / f"s{p}" / f"{i}.pgm")
    (root / "README").write_text("The ORL Database of Faces\n")
    return root


def test_own_grey_pgm_faces_keep_their_size(tmp_path):
    root = _att_like_tree(tmp_path)
    out = tmp_path / "faces.parquet"
    lines = []
    result = prepare_faces(
        PrepareFacesConfig(input=str(root), resolution=None, image_format="png", output=str(out)), log=lines.append
    )
    assert (result.table.identities, result.table.images) == (3, 12)
    assert any("skipped 1 non-image files" in line for line in lines), lines
    table = read_table(str(out))
    assert set(table.column("width").to_pylist()) == {92} and set(table.column("height").to_pylist()) == {112}
    img = Image.open(io.BytesIO(table.column("image")[0].as_py()))
    assert img.mode == "RGB" and img.size == (92, 112)
    # the grey values survive as R = G = B
    arr = np.asarray(img)
    assert np.array_equal(arr[..., 0], arr[..., 1]) and arr.std() > 10


def test_own_faces_resized_square(tmp_path):
    root = _att_like_tree(tmp_path, people=2, per_person=2)
    result = prepare_faces(
        PrepareFacesConfig(input=str(root), resolution=64, output=str(tmp_path / "f.parquet")), log=_quiet
    )
    table = read_table(result.table.output)
    assert set(table.column("width").to_pylist()) == {64} == set(table.column("height").to_pylist())


def test_people_file_naming_none_of_the_folders(lfw_dir, tmp_path):
    root = _att_like_tree(tmp_path, people=2, per_person=2)
    _run_expecting(
        tmp_path,
        FaceDataError,
        r"people_file .*peopleDevTrain.txt lists none of the 2 identity folders "
        r"under .*att .*set people_file to null",
        input=str(root),
        people_file=str(lfw_dir / "peopleDevTrain.txt"),
    )
