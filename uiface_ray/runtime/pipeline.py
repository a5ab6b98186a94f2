"""The whole chain at small scale, each stage through its own job config:
faces -> embeddings -> generator -> identities -> synthesis -> export -> metrics -> report.

Each stage's config is built from the pipeline's paths plus ``stages.<stage>.<key>`` overrides and
validated by the stage's own model, so an error names the stage and the key.  Stages whose output
is already complete for the same config are skipped, so a rerun resumes where the last one stopped
(synthesis and training also resume inside a stage)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import Field, ValidationError

from uiface_ray.config import Config, ConfigError, RayConfig, StorageConfig
from uiface_ray.errors import InputError
from uiface_ray.runtime.session import ray_session
from uiface_ray.storage import absolute_url, exists, join, read_bytes, write_bytes_atomic

LFW_IMAGES = "../shared/data/lfw112/images"
LFW_PEOPLE = "../shared/data/lfw112/peopleDevTrain.txt"

NO_FACES_MESSAGE = (
    "no real faces found at {source}: point the pipeline at aligned 112x112 face chips, either an image "
    "folder with one sub-folder per identity (--faces_source=/data/aligned) or an "
    "insightface train.rec with its train.idx beside it (--faces_source=/data/casia/train.rec)"
)


class FacesNotFoundError(InputError, FileNotFoundError):
    """The pipeline's real faces are not where the config says."""


class StageOverrides(Config):
    """Per-stage overrides, as the stage's own YAML keys (see each job's --help)."""

    prepare_faces: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/prepare_faces.py.")
    embed: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/embed.py.")
    train_diffusion: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/train_diffusion.py.")
    make_identities: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/make_identities.py.")
    synthesize: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/synthesize.py.")
    export: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/export.py.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Overrides for jobs/metrics.py.")


class PipelineConfig(Config):
    """Run every stage at small scale on one Ray (embedded unless an address is given)."""

    workdir: str = Field("out/pipeline", description="Where every stage writes (local path or s3://).")
    faces_source: str = Field(
        LFW_IMAGES,
        description="Real aligned faces: an image folder (one sub-folder per identity, any image type "
        "Pillow reads) or an insightface train.rec.")
    people_file: str | None = Field(
        "auto", description="Restrict to these people (LFW list format); 'auto': LFW's DevTrain people when "
        "faces_source is the LFW folder, else every identity folder; null: every identity folder.")
    min_images: int = Field(5, ge=1, description="Keep identities with at least this many images.")
    max_images_per_identity: int | None = Field(
        6, ge=1, description="Use at most this many images per identity (embedding time; empty: all).")
    train_config: str = Field(
        "configs/train_diffusion_pipeline.yaml", description="Base YAML of the generator's training.")
    generator: str | None = Field(
        None, description="Reuse this generator checkpoint (path or s3://) instead of training one.")
    generator_cache: str = Field(
        ".cache/generators", description="Trained generators are kept here, keyed by training config and data, "
        "and reused (or resumed) by later runs.")
    num_identities: int = Field(16, ge=1, description="Synthetic identities to make.")
    identity_similarity_threshold: float = Field(
        0.9, gt=-1, le=1, description="Keep a candidate identity only if its dlib cosine to every kept one is "
        "under this. Real LFW people: same person about 0.7, different about 0.0; a generator trained for "
        "minutes draws near-identical faces, hence the loose default here (use about 0.5 with a trained one).")
    identity_leakage_threshold: float = Field(
        0.9, gt=-1, le=1, description="Reject a candidate whose dlib cosine to a training identity reaches this.")
    images_per_identity: int = Field(4, ge=1, description="Images per synthetic identity.")
    num_actors: int = Field(2, ge=1, description="Sampler actors for identities and synthesis.")
    num_inference_steps: int = Field(50, ge=1, description="DDIM steps of every sampling stage.")
    seed: int = Field(0, description="Job seed of identities and synthesis.")
    stages: StageOverrides = Field(default_factory=StageOverrides, description="Per-stage overrides.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Where Ray runs.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")


@dataclass
class StageRecord:
    name: str
    seconds: float
    skipped: bool
    summary: str


@dataclass
class PipelineResult:
    workdir: str
    stages: list[StageRecord] = field(default_factory=list)
    report: str = ""


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def stage_config(cls: type[Config], stage: str, base: dict, overrides: dict):
    """Build one stage's config: the pipeline's values, then the user's ``stages.<stage>`` overrides."""
    tree = _merge(base, overrides)
    try:
        return cls.model_validate(tree)
    except ValidationError as err:
        keys = ", ".join(f"stages.{stage}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"pipeline stage {stage}: {keys}") from None


def _stamp(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def _done(url: str, cfg: Config, storage: StorageConfig) -> bool:
    stamp_url = url + ".stamp"
    return exists(url, storage) and exists(stamp_url, storage) and read_bytes(stamp_url, storage).decode() == _stamp(cfg)


def _mark(url: str, cfg: Config, storage: StorageConfig) -> None:
    write_bytes_atomic(url + ".stamp", _stamp(cfg).encode(), storage)


class _Runner:
    def __init__(self, cfg: PipelineConfig, log: Callable[[str], None]):
        self.cfg, self.log, self.result = cfg, log, PipelineResult(workdir=cfg.workdir)
        # Filled by the stages as they go: what later stages read.
        self.embed_stamp = ""
        self.generator: str | None = cfg.generator
        self.identities = ""
        self.dataset = ""
        self.metrics_url: str | None = None

    def stage(self, name: str, fn: Callable[[], str], skip: bool = False) -> None:
        start = time.time()
        self.log(f"[pipeline] {name}: {'already complete, skipped' if skip else 'running'}")
        summary = "reused" if skip else fn()
        rec = StageRecord(name, time.time() - start, skip, summary)
        self.result.stages.append(rec)
        self.log(f"[pipeline] {name}: {summary} ({rec.seconds:.1f} s)")


def resolve_pipeline(cfg: PipelineConfig) -> PipelineConfig:
    """Every local path made absolute against the working directory the user ran from (stages
    run in Ray actors and Ray Train workers elsewhere), and ``people_file: auto`` decided."""
    people = cfg.people_file
    if people == "auto":
        people = LFW_PEOPLE if cfg.faces_source.rstrip("/") == LFW_IMAGES else None
    paths = {name: absolute_url(getattr(cfg, name)) for name in
             ("workdir", "faces_source", "train_config", "generator", "generator_cache")}
    return cfg.model_copy(update={**paths, "people_file": absolute_url(people)})


def check_faces_source(cfg: PipelineConfig) -> None:
    src = Path(cfg.faces_source)
    if "://" in cfg.faces_source:
        return
    if not (src.is_dir() or src.is_file()):
        raise FacesNotFoundError(NO_FACES_MESSAGE.format(source=cfg.faces_source))
    if cfg.people_file and "://" not in cfg.people_file and not Path(cfg.people_file).is_file():
        raise FacesNotFoundError(f"people_file {cfg.people_file} not found: give an LFW-style people list, "
                                 "or --people_file=null to use every identity folder under faces_source")


def run_pipeline(cfg: PipelineConfig, log: Callable[[str], None] = print) -> PipelineResult:
    from uiface_ray.runtime.pipeline_stages import STAGES

    cfg = resolve_pipeline(cfg)
    check_faces_source(cfg)
    runner = _Runner(cfg, log)
    with ray_session(cfg.ray):
        for stage in STAGES:
            stage(cfg, runner)
    from uiface_ray.runtime.pipeline_stages import write_report

    runner.result.report = write_report(cfg, runner.result)
    return runner.result


def generator_cache_url(cfg: PipelineConfig, train_cfg: Config, faces_hash: str) -> str:
    key = hashlib.sha256((_stamp(train_cfg.model_copy(update={"output": "-"})) + faces_hash).encode()).hexdigest()[:12]
    return join(cfg.generator_cache, key)


__all__ = ["PipelineConfig", "PipelineResult", "run_pipeline", "stage_config", "join"]
