"""The boundary rule (issue 24 item 1): every path or URL field of every config is declared ``Url``,
and the one resolver makes each of them absolute and fills every storage section.

The config classes are found by walking the package's modules, so a config added anywhere is
checked; every ``str`` field must be either a URL field or named below with why it is plain text."""

from __future__ import annotations

import importlib
import pkgutil
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

import uiface_ray
from uiface_ray.config import Config, StorageConfig
from uiface_ray.storage import resolve_urls
from uiface_ray.urls import url_fields, url_marker

ROOT = Path(__file__).resolve().parents[1]

# str fields that are not paths, each with the reason; everything else of type str must be a Url
PLAIN_TEXT = {
    "StorageConfig.endpoint_url": "an HTTP(S) endpoint of the S3 service, not a storage path",
    "StorageConfig.region": "an AWS region name",
    "StorageConfig.access_key_id": "a credential",
    "StorageConfig.secret_access_key": "a credential",
    "StorageConfig.session_token": "a credential",
    "RayConfig.address": "a Ray cluster address ('auto', 'ray://host:10001')",
    "EncoderConfig.device": "a torch device name",
    "FRTrainConfig.run_name": "a Ray Train run name",
    "VerifySetConfig.name": "a benchmark's display name",
    "AblationConfig.device": "a torch device name",
    "CardConfig.license": "licence text of the dataset card",
    "CardConfig.intended_use": "free text of the dataset card",
    "ModelConfig.down_block_types": "diffusers block class names",
    "ModelConfig.up_block_types": "diffusers block class names",
    "OfficialImportConfig.encoder_kind": "an encoder kind name",
    "OfficialImportConfig.encoder_fingerprint": "a hash",
}
# a str field whose name says "path" must be a Url even if someone lists it above
PATH_LIKE = re.compile(
    r"path|dir|url|table|output|out$|model|autoencoder|checkpoint|identities|dataset|root|file|pairs|"
    r"metrics|data$|input|source|storage|cache|summary|embeddings|real|lpips|bin$|idx|vq_|config$"
)


def config_classes() -> list[type[Config]]:
    """Every Config subclass defined in a module of the package (imported by walking it)."""
    found = {}
    for info in pkgutil.walk_packages(uiface_ray.__path__, "uiface_ray."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Config) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def _has_str(annotation) -> bool:
    if annotation is str:
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return False  # a fixed set of words
    return any(_has_str(arg) for arg in typing.get_args(annotation))


def str_fields() -> list[tuple[type, str]]:
    return [
        (cls, name)
        for cls in config_classes()
        for name, info in cls.model_fields.items()
        if _has_str(info.annotation) and name in cls.__annotations__  # declared here, not inherited
    ]


def test_the_walk_finds_the_stage_configs():
    names = {cls.__name__ for cls in config_classes()}
    assert {"TrainConfig", "SynthesisConfig", "MakeIdentitiesConfig", "EmbedConfig", "ExportConfig"} <= names
    assert {"FRTrainConfig", "PipelineConfig", "AblationConfig", "ModelConfig", "AutoencoderTrainConfig"} <= names
    assert len(names) >= 25


def test_every_str_field_is_a_url_or_named_as_plain_text():
    missing, path_like_plain = [], []
    for cls, name in str_fields():
        key = f"{cls.__name__}.{name}"
        is_url = url_marker(cls.model_fields[name]) is not None
        if not is_url and key not in PLAIN_TEXT:
            missing.append(key)
        if key in PLAIN_TEXT and PATH_LIKE.search(name) and key != "StorageConfig.endpoint_url":
            path_like_plain.append(key)
    assert missing == [], f"declare these Url/OptionalUrl (uiface_ray/urls.py) or list them in PLAIN_TEXT: {missing}"
    assert path_like_plain == [], path_like_plain


def test_the_plain_text_list_holds_no_stale_entry():
    known = {f"{cls.__name__}.{name}" for cls, name in str_fields()}
    assert sorted(set(PLAIN_TEXT) - known) == []
    urls = {f"{cls.__name__}.{n}" for cls, n in str_fields() if url_marker(cls.model_fields[n]) is not None}
    assert sorted(set(PLAIN_TEXT) & urls) == []


def _submodel(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_submodel, typing.get_args(annotation)) if m is not None), None)


def _relative_instance(cls: type[BaseModel], prefix: str = ""):
    """``cls`` built without validation: every URL field a relative path named after it, every nested
    config built the same way (one element for a tuple of configs), other required fields None."""
    values = {}
    for name, info in cls.model_fields.items():
        sub = _submodel(info.annotation)
        if url_marker(info) is not None:
            rel = f"rel/{prefix}{name}"
            values[name] = (rel,) if typing.get_origin(info.annotation) is tuple else rel
        elif sub is not None and sub is not StorageConfig:
            one = _relative_instance(sub, f"{prefix}{name}.")
            values[name] = (one,) if typing.get_origin(info.annotation) is tuple else one
        elif info.is_required():
            values[name] = None
    return cls.model_construct(**values)


def _values_at(obj, dotted: str) -> list:
    head, _, rest = dotted.partition(".")
    value = getattr(obj, head)
    items = value if isinstance(value, tuple) and rest else [value]
    return [v for item in items for v in (_values_at(item, rest) if rest else [item])]


@pytest.mark.parametrize("cls", config_classes(), ids=lambda c: c.__name__)
def test_the_resolver_makes_every_url_field_absolute(cls, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    resolved = resolve_urls(_relative_instance(cls))
    for dotted in url_fields(cls):
        for value in _values_at(resolved, dotted):
            values = value if isinstance(value, tuple) else (value,)
            assert values == (str(tmp_path / "rel" / dotted),), (cls.__name__, dotted, value)
    storages = [
        v for dotted in _storage_fields(cls) for v in _values_at(resolved, dotted) if isinstance(v, StorageConfig)
    ]
    assert all(s.endpoint_url == "http://127.0.0.1:9" for s in storages), storages


def _storage_fields(cls: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in cls.model_fields.items():
        sub = _submodel(info.annotation)
        if sub is StorageConfig:
            out.append(prefix + name)
        elif sub is not None:
            out.extend(_storage_fields(sub, f"{prefix}{name}."))
    return out


def test_remote_urls_none_and_keep_words_stay(tmp_path, monkeypatch):
    from uiface_ray.runtime.config import PipelineConfig
    from uiface_ray.train.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    train = TrainConfig.model_validate(
        {"data": {"table": "s3://b/faces.parquet"}, "output": "memory://run", "model": {"autoencoder": None}}
    )
    assert resolve_urls(train).data.table == "s3://b/faces.parquet"
    assert resolve_urls(train).output == "memory://run"
    assert resolve_urls(train).model.autoencoder is None
    pipe = resolve_urls(PipelineConfig())
    assert pipe.people_file == "auto" and pipe.workdir == str(tmp_path / "out" / "pipeline")
    assert resolve_urls(pipe) == pipe  # idempotent


def test_the_storage_section_is_filled_from_the_driver(monkeypatch):
    from uiface_ray.synth.config import SynthesisConfig

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "driver-key")
    cfg = SynthesisConfig(model="s3://b/m", identities="s3://b/i.parquet", output="s3://b/o")
    assert resolve_urls(cfg).storage.access_key_id == "driver-key"
    given = cfg.model_copy(update={"storage": StorageConfig(access_key_id="cfg-key")})
    assert resolve_urls(given).storage.access_key_id == "cfg-key"  # the config's own value wins


def test_no_module_lists_url_fields_by_hand():
    """Only the storage layer calls absolute_url; nothing defines a resolve_* of its own."""
    hand = []
    for path in (ROOT / "uiface_ray").rglob("*.py"):
        if "storage" in path.parts:
            continue
        text = path.read_text()
        if "absolute_url(" in text or re.search(
            r"^def resolve_(config|paths|train_config|export_config)\(", text, re.M
        ):
            hand.append(str(path.relative_to(ROOT)))
    assert hand == []


def _untyped(annotation) -> bool:
    if annotation is dict or annotation is typing.Any:
        return True
    return typing.get_origin(annotation) is dict or any(_untyped(a) for a in typing.get_args(annotation))


def test_no_config_holds_an_untyped_dict():
    """A dict section skips every check (and the URL walk): nest the stage's own config instead."""
    untyped = [
        f"{cls.__name__}.{name}"
        for cls in config_classes()
        for name, info in cls.model_fields.items()
        if _untyped(info.annotation)
    ]
    assert untyped == []


def _job(work: Path, job: str, cfg: dict, env: dict) -> str:
    """Run ``jobs/<job>.py --config <job>.yaml`` from ``work`` (exit 0 required); returns its stdout."""
    import subprocess
    import sys

    import yaml

    (work / f"{job}.yaml").write_text(yaml.safe_dump({**cfg, "ray": {"num_cpus": 2}}))
    run = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--config", f"{job}.yaml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0 and "Traceback" not in run.stderr, f"{job}: {run.stdout[-1500:]}{run.stderr[-3000:]}"
    return run.stdout


@pytest.mark.slow
def test_every_ray_job_runs_from_another_folder_with_relative_paths(lfw_dir, tmp_path):
    """make_identities -> synthesize -> export, embed and train_fr, each a real job with its own embedded
    Ray, started from a folder that is not the repository, every path relative to it (the actors and
    Ray Train workers run elsewhere). Latent diffusion training: tests/test_latent_training.py."""
    import os
    import shutil
    import tempfile

    pytest.importorskip("dlib")
    from tiny_assets import make_tiny_model
    from train_tables import write_face_table
    from uiface_ray.storage.tables import read_face_table
    from uiface_ray.synth.manifest import read_manifest

    work = tmp_path / "work"
    work.mkdir()
    make_tiny_model(str(work / "model"))
    write_face_table(str(work / "faces.parquet"), lfw_dir, num_people=2, per_person=2, embedding="missing")
    ray_tmp = tempfile.mkdtemp(prefix="ub", dir="/tmp")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    one_actor = {"num_actors": 1, "use_gpu": False}
    try:
        _job(
            work,
            "make_identities",
            {
                "model": "model",
                "output": "ids.parquet",
                "num_identities": 2,
                "similarity_threshold": 0.999,
                "candidates_per_task": 2,
                "max_candidates": 8,
                "num_inference_steps": 2,
                "actors": one_actor,
            },
            env,
        )
        synth = {"model": "model", "identities": "ids.parquet", "output": "synthetic", "images_per_identity": 2}
        synth.update(identities_per_shard=1, batch_size=2, sampler={"num_inference_steps": 2}, actors=one_actor)
        _job(work, "synthesize", synth, env)
        assert read_manifest(str(work / "synthetic")).num_rows == 4
        _job(work, "export", {"dataset": "synthetic", "output": "export"}, env)
        assert (work / "export" / "train.rec").is_file() and (work / "export" / "README.md").is_file()
        _job(work, "embed", {"input": "faces.parquet", "output": "embedded.parquet", "num_actors": 1}, env)
        assert len(read_face_table(str(work / "embedded.parquet"), required=("embedding",))) == 4
        fr = {"data": "synthetic", "out": "fr", "depth": 18, "width": 0.25, "input_size": 16, "embedding_dim": 16}
        fr.update(epochs=1, batch_size=2, num_workers=1, run_name="boundary-relative")
        _job(work, "train_fr", fr, env)
        assert (work / "fr" / "backbone.pth").is_file()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
