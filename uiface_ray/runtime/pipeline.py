"""The pipeline's runner: a plain loop over stage plans, with skip-if-complete, stamps and timing.

A stage is a pure ``plan(cfg, upstream) -> StagePlan``: the stage's own validated job config (the
pipeline's paths plus the user's ``stages.<stage>.<key>`` overrides, so an error names the stage
and the key), the runtime call that runs it, the output whose stamp marks it complete, and the
URLs it hands to later stages.  :func:`run_stages` runs the plans in order; each stage's outputs
go forward in the frozen :class:`Upstream`.  The stages themselves, in order (prepare faces ->
embed -> train the generator -> make identities -> synthesize -> metrics -> export), are in
:mod:`uiface_ray.runtime.pipeline_stages`, which imports this module (never the reverse).

Stages whose output is already complete for the same config are skipped, so a rerun resumes where
the last one stopped (training and synthesis also resume inside a stage).  A failing stage leaves
the outputs of the stages before it in place, and its error names the stage.  With ``dry_run``,
:mod:`uiface_ray.runtime.estimate_probe` walks the same plans, prints each stage's ``preview`` instead
of running it, and estimates each stage from a probe run of the same stages.

Every run leaves its report and record under ``<workdir>/runs/`` (:func:`write_report`), never
overwritten; ``report.md`` is the newest.  A stage the run found done names the earlier run that did
it, with its time (:func:`original_runs`, matched by the stage config's stamp).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from uiface_ray import jsonfile
from uiface_ray.config import Config, ConfigError, StorageConfig
from uiface_ray.errors import InputError
from uiface_ray.runtime.config import LFW_IMAGES, LFW_PEOPLE, PipelineConfig
from uiface_ray.runtime.signals import restore_job_handlers
from uiface_ray.storage import exists, join, list_files, read_bytes, resolve_urls, write_bytes_atomic

NO_FACES_MESSAGE = (
    "no real faces found at {source}: point the pipeline at aligned 112x112 face chips, either an image "
    "folder with one sub-folder per identity (--faces_source=/data/aligned) or an "
    "insightface train.rec with its train.idx beside it (--faces_source=/data/casia/train.rec)"
)


class FacesNotFoundError(InputError, FileNotFoundError):
    """The pipeline's real faces are not where the config says."""


@dataclass(frozen=True)
class Upstream:
    """What the stages so far produced, for the ones after them (URLs)."""

    faces: str = ""  # face table
    embedded: str = ""  # face table with embeddings
    embed_stamp: str = ""  # the embedding stage's stamp (part of the generator cache key)
    generator: str | None = None  # model bundle
    identities: str = ""  # identity table
    dataset: str = ""  # synthetic dataset folder
    metrics: str | None = None  # metrics.json


@dataclass(frozen=True)
class StageOutcome:
    summary: str  # one line for the log and the report
    produces: dict[str, Any] = field(default_factory=dict)  # Upstream fields known only after running
    # what the stage did, in numbers (images, steps, rates; "reused": True when it found its work done):
    # kept in the run's record (runs/<run>.json), where a later dry run reads its rates
    work: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StagePlan:
    config: Config  # the stage's own job config, validated
    run: Callable[[Any], StageOutcome]  # the runtime call, given ``config``
    complete_marker: str | None = None  # output whose stamp says "complete for this config" (None: always run)
    produces: dict[str, Any] = field(default_factory=dict)  # Upstream fields known from the plan
    preview: Callable[[Any], StageOutcome] | None = None  # --dry_run: what ``run`` would do, writing nothing


@dataclass(frozen=True)
class Stage:
    name: str
    plan: Callable[["PipelineConfig", Upstream], StagePlan]


@dataclass(frozen=True)
class StageRecord:
    name: str
    seconds: float
    skipped: bool
    summary: str
    stamp: str = ""  # the stage config's stamp: which earlier run did this same work
    work: dict[str, Any] = field(default_factory=dict)  # StageOutcome.work
    started: float = 0.0  # epoch seconds

    @property
    def reused(self) -> bool:
        """Whether this run found the stage's work done (skipped, or it resumed with nothing left)."""
        return self.skipped or bool(self.work.get("reused"))


@dataclass
class PipelineResult:
    workdir: str
    stages: list[StageRecord] = field(default_factory=list)
    upstream: Upstream = field(default_factory=Upstream)
    report: str = ""
    started: float = field(default_factory=time.time)


class PipelineStageError(InputError):
    """A stage refused its input; the message names the stage."""


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, section by section (a deep merge of YAML trees)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def stage_config(cls: type[Config], stage: str, base: dict, overrides: dict | Config):
    """Build one stage's config: the pipeline's values, then the user's ``stages.<stage>`` overrides."""
    if isinstance(overrides, Config):  # the keys the user set (runtime.config.partial_config)
        overrides = overrides.model_dump(exclude_unset=True)
    try:
        return cls.model_validate(merge(base, overrides))
    except ValidationError as err:
        keys = ", ".join(f"stages.{stage}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"pipeline stage {stage}: {keys}") from None


def stamp(cfg: Config) -> str:
    """A stage config's identity, without where storage and Ray are (credentials rotate, results don't)."""
    data = cfg.model_dump(mode="json", exclude={"storage", "ray"} & set(type(cfg).model_fields))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def is_complete(url: str, cfg: Config, storage: StorageConfig) -> bool:
    stamp_url = url + ".stamp"
    return exists(url, storage) and exists(stamp_url, storage) and read_bytes(stamp_url, storage).decode() == stamp(cfg)


def mark_complete(url: str, cfg: Config, storage: StorageConfig) -> None:
    write_bytes_atomic(url + ".stamp", stamp(cfg).encode(), storage)


def run_stages(
    cfg: "PipelineConfig",
    stages: list[Stage],
    log: Callable[[str], None] = print,
    upstream: Upstream | None = None,
    result: PipelineResult | None = None,
) -> PipelineResult:
    """Plan and run each stage in order; skip those already complete for the same config.  Each
    finished stage's record goes into ``result`` as it ends (so a caller keeps them when a later
    stage fails or the run is stopped)."""
    if result is None:
        result = PipelineResult(workdir=cfg.workdir)
    result.upstream = upstream or Upstream(generator=cfg.generator)
    for i, stage in enumerate(stages, start=1):
        plan = stage.plan(cfg, result.upstream)
        skip = plan.complete_marker is not None and is_complete(plan.complete_marker, plan.config, cfg.storage)
        log(f"[pipeline] {i}/{len(stages)} {stage.name}: {'already complete, skipped' if skip else 'running'}")
        start = time.time()
        try:
            outcome = StageOutcome("reused") if skip else plan.run(plan.config)
            restore_job_handlers()  # a stage may have set its own (Ray Train's fit sets SIGINT's)
        except InputError as exc:
            raise PipelineStageError(f"pipeline stage {stage.name}: {exc}") from exc
        except Exception:
            log(f"[pipeline] {stage.name} failed; the stages before it are complete and a rerun resumes here")
            raise
        if not skip and plan.complete_marker is not None:
            mark_complete(plan.complete_marker, plan.config, cfg.storage)
        result.upstream = dataclasses.replace(result.upstream, **plan.produces, **outcome.produces)
        record = StageRecord(
            stage.name, time.time() - start, skip, outcome.summary, stamp(plan.config), dict(outcome.work), start
        )
        result.stages.append(record)
        log(f"[pipeline] {stage.name}: {record.summary} ({record.seconds:.1f} s)")
    return result


RUNS_DIR = "runs"  # under the workdir: <run>.md and <run>.json for every run, never overwritten


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _run_id(cfg: "PipelineConfig", started: float) -> str:
    """``20261207T101500Z`` (UTC start time), with ``_2``, ``_3`` ... when a run of the same second exists
    (names sort in the order the runs started)."""
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    for n in range(1, 1000):
        run = base if n == 1 else f"{base}_{n}"
        if not exists(join(cfg.workdir, RUNS_DIR, f"{run}.json"), cfg.storage):
            return run
    raise RuntimeError(f"more than 999 pipeline runs started at {base} in {cfg.workdir}")


def read_runs(workdir: str, storage: StorageConfig) -> list[dict]:
    """The records of every earlier run of ``workdir`` (``runs/<run>.json``), oldest first; a record
    that cannot be read is left out (it is history, not input)."""
    runs = []
    for url in list_files(join(workdir, RUNS_DIR), ".json", storage):
        try:
            record = json.loads(read_bytes(url, storage))
        except (ValueError, RecursionError, OSError):
            continue
        if isinstance(record, dict) and isinstance(record.get("stages"), list):
            runs.append(record)
    return sorted(runs, key=lambda r: r.get("started", 0))


def original_runs(rec: StageRecord, earlier: list[dict]) -> list[tuple[str, float, float]]:
    """(run, started, seconds) of each earlier run that did this stage's work (same name and stamp,
    not itself reused): a reused stage's original time; a resumed one's several pieces."""
    out = []
    for run in earlier:
        for st in run["stages"]:
            if not isinstance(st, dict) or st.get("name") != rec.name or st.get("stamp") != rec.stamp:
                continue
            if not (st.get("skipped") or (st.get("work") or {}).get("reused")):
                out.append((str(run.get("run")), float(st.get("started", 0)), float(st.get("seconds", 0))))
    return out


def _row(rec: StageRecord, earlier: list[dict]) -> tuple[str, float]:
    """The report's row for ``rec``, and the seconds it took originally when this run reused it."""
    if not rec.reused:
        return f"| {rec.name} | {rec.seconds:.1f} | ran now | {rec.summary} |", 0.0
    origin = original_runs(rec, earlier)
    if not origin:
        where = "done before (no earlier run of this workdir records it)"
        return f"| {rec.name} | {rec.seconds:.1f} | {where} | {rec.summary} |", 0.0
    took = sum(seconds for _, _, seconds in origin)
    if len(origin) == 1:
        ((run, started, _),) = origin
        where = f"reused: ran in run `{run}` at {_when(started)}, took {took:.1f} s"
    else:
        parts = ", ".join(f"`{run}` at {_when(started)} ({seconds:.1f} s)" for run, started, seconds in origin)
        where = f"reused: ran in {len(origin)} runs, took {took:.1f} s: {parts}"
    return f"| {rec.name} | {rec.seconds:.1f} | {where} | {rec.summary} |", took


def _report_lines(cfg: "PipelineConfig", result: PipelineResult, run: str, earlier: list[dict]) -> list[str]:
    finished = time.time()
    lines = [
        "# uiface-ray pipeline report",
        "",
        f"run `{run}`: {_when(result.started)} to {_when(finished)}; workdir `{cfg.workdir}`",
        "",
        "| stage | seconds | when | result |",
        "| --- | ---: | --- | --- |",
    ]
    original = 0.0
    for rec in result.stages:
        row, took = _row(rec, earlier)
        lines.append(row)
        original += took
    total = sum(r.seconds for r in result.stages)
    lines += ["", f"total: {total:.0f} s"]
    if original:
        lines[-1] += f" ({total + original:.0f} s with the reused stages' original times)"
    lines.append("")
    if result.upstream.metrics and exists(result.upstream.metrics, cfg.storage):
        metrics_json = jsonfile.loads(read_bytes(result.upstream.metrics, cfg.storage))
        lines += ["## metrics", "", "```json", json.dumps(metrics_json, indent=2, default=str), "```", ""]
    return lines


def write_report(cfg: "PipelineConfig", result: PipelineResult, stopped: str | None = None) -> str:
    """This run's report and record (``runs/<run>.md``, ``runs/<run>.json``; earlier runs' stay),
    then ``report.md``: the newest report, with a line pointing to it and to the earlier ones.
    ``stopped``: why a run ended before its last stage (its finished stages are recorded all the same)."""
    earlier = read_runs(cfg.workdir, cfg.storage)
    run = _run_id(cfg, result.started)
    lines = _report_lines(cfg, result, run, earlier)
    if stopped:
        lines[3:3] = [f"**stopped** after {len(result.stages)} stage(s): {stopped}; a rerun resumes", ""]
    record = {
        "run": run,
        "started": result.started,
        "finished": time.time(),
        "workdir": cfg.workdir,
        "stopped": stopped,
        "stages": [dataclasses.asdict(rec) for rec in result.stages],
    }
    runs = join(cfg.workdir, RUNS_DIR)
    write_bytes_atomic(join(runs, f"{run}.json"), json.dumps(record, indent=1, default=str).encode(), cfg.storage)
    write_bytes_atomic(join(runs, f"{run}.md"), "\n".join(lines).encode(), cfg.storage)
    pointer = f"newest run: [{RUNS_DIR}/{run}.md]({RUNS_DIR}/{run}.md)"
    if earlier:
        pointer += f"; {len(earlier)} earlier run(s) in `{RUNS_DIR}/` (one report and one record each)"
    url = join(cfg.workdir, "report.md")
    write_bytes_atomic(url, "\n".join([pointer, "", *lines]).encode(), cfg.storage)
    return url


def resolve_pipeline(cfg: PipelineConfig) -> PipelineConfig:
    """Every local path made absolute against the working directory the user ran from (stages
    run in Ray actors and Ray Train workers elsewhere), and ``people_file: auto`` decided."""
    people = cfg.people_file
    if people == "auto":
        people = LFW_PEOPLE if cfg.faces_source.rstrip("/") == LFW_IMAGES else None
    return resolve_urls(cfg.model_copy(update={"people_file": people}))


def check_faces_source(cfg: PipelineConfig) -> None:
    src = Path(cfg.faces_source)
    if "://" in cfg.faces_source:
        return
    if not (src.is_dir() or src.is_file()):
        raise FacesNotFoundError(NO_FACES_MESSAGE.format(source=cfg.faces_source))
    if cfg.people_file and "://" not in cfg.people_file and not Path(cfg.people_file).is_file():
        raise FacesNotFoundError(
            f"people_file {cfg.people_file} not found: give an LFW-style people list, "
            "or --people_file=null to use every identity folder under faces_source"
        )


def generator_cache_url(cfg: PipelineConfig, train_cfg: Config, faces_hash: str) -> str:
    key = hashlib.sha256((stamp(train_cfg.model_copy(update={"output": "-"})) + faces_hash).encode()).hexdigest()[:12]
    return join(cfg.generator_cache, key)


__all__ = [
    "RUNS_DIR",
    "PipelineResult",
    "PipelineStageError",
    "Stage",
    "StageOutcome",
    "StagePlan",
    "StageRecord",
    "Upstream",
    "check_faces_source",
    "generator_cache_url",
    "is_complete",
    "mark_complete",
    "merge",
    "original_runs",
    "read_runs",
    "resolve_pipeline",
    "run_stages",
    "stage_config",
    "stamp",
    "write_report",
]
