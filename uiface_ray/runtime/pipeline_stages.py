"""The pipeline's stages, in order, and :func:`run_pipeline`.

Each stage is a pure ``plan_<stage>(cfg, upstream) -> StagePlan`` (no I/O, testable without Ray)
whose ``run`` calls the package's runtime function for that stage, and whose ``preview`` says what
``run`` would do, reading only (``--dry_run``; :func:`dry_run_pipeline`).  To add a stage: write its
plan function and put it in :data:`STAGES`.
"""

from __future__ import annotations

from typing import Any, Callable

from uiface_ray.cli import read_config_file
from uiface_ray.config import ConfigError
from uiface_ray.runtime.config import PipelineConfig
from uiface_ray.runtime.pipeline import (
    PipelineResult,
    Stage,
    StageOutcome,
    StagePlan,
    Upstream,
    check_faces_source,
    generator_cache_url,
    merge,
    resolve_pipeline,
    run_stages,
    stage_config,
    stamp,
    write_report,
)
from uiface_ray.runtime.session import ray_session
from uiface_ray.storage import join

__all__ = [
    "STAGES",
    "dry_run_pipeline",
    "plan_embed",
    "plan_export",
    "plan_identities",
    "plan_metrics",
    "plan_prepare_faces",
    "plan_synthesize",
    "plan_train_diffusion",
    "run_pipeline",
]


def _common(cfg: PipelineConfig, ray: bool = True) -> dict:
    out: dict[str, Any] = {"storage": cfg.storage.model_dump()}
    if ray:
        out["ray"] = cfg.ray.model_dump()
    return out


def _encoder(cfg: PipelineConfig) -> dict:
    return cfg.encoder.model_dump(mode="json")


def plan_prepare_faces(cfg: PipelineConfig, up: Upstream) -> StagePlan:
    from uiface_ray.data.config import PrepareFacesConfig

    out = join(cfg.workdir, "faces.parquet")
    base = {
        "input": cfg.faces_source,
        "people_file": cfg.people_file,
        "min_images": cfg.min_images,
        "max_images_per_identity": cfg.max_images_per_identity,
        "resolution": cfg.face_resolution,
        "output": out,
        **_common(cfg, ray=False),
    }
    stage_cfg = stage_config(PrepareFacesConfig, "prepare_faces", base, cfg.stages.prepare_faces)

    def run(c) -> StageOutcome:
        from uiface_ray.data.prepare import prepare_faces

        t = prepare_faces(c).table
        work = {"images": t.images, "identities": t.identities}
        return StageOutcome(f"{t.images} images of {t.identities} identities -> {t.output}", work=work)

    def preview(c) -> StageOutcome:
        people = f", the people in {c.people_file}" if c.people_file else ""
        cap = f", at most {c.max_images_per_identity} each" if c.max_images_per_identity else ""
        return StageOutcome(
            f"would read faces of {c.input} (identities with >= {c.min_images} images{cap}{people}) -> {c.output}"
        )

    return StagePlan(stage_cfg, run, complete_marker=out, produces={"faces": out}, preview=preview)


def plan_embed(cfg: PipelineConfig, up: Upstream) -> StagePlan:
    from uiface_ray.encoders.config import EmbedConfig

    out = join(cfg.workdir, "faces_dlib.parquet")
    base = {"input": up.faces, "output": out, "encoder": _encoder(cfg), "num_actors": cfg.num_actors, **_common(cfg)}
    stage_cfg = stage_config(EmbedConfig, "embed", base, cfg.stages.embed)

    def run(c) -> StageOutcome:
        from uiface_ray.runtime.embed import run_embed

        r = run_embed(c)
        return StageOutcome(
            f"{r.images} x {r.dim}-d embeddings on {r.num_actors} actors ({r.images_per_second:.1f} images/s)",
            work={"images": r.images, "actors": r.num_actors},
        )

    def preview(c) -> StageOutcome:
        return StageOutcome(f"would embed {c.input} with {c.encoder.kind} on {c.num_actors} actors -> {c.output}")

    produces = {"embedded": out, "embed_stamp": stamp(stage_cfg)}
    return StagePlan(stage_cfg, run, complete_marker=out, produces=produces, preview=preview)


def train_config_base(cfg: PipelineConfig) -> dict:
    """The YAML tree of ``cfg.train_config``, read by the bounded loader of every ``--config`` file
    (a missing file, a folder, a FIFO, a device or a file over 1 MiB is one error naming the field)."""
    if not cfg.train_config:
        return {}
    if "://" in cfg.train_config:
        raise ConfigError(f"train_config {cfg.train_config}: give a local YAML file (it is read before any stage)")
    try:
        return read_config_file(cfg.train_config)
    except ConfigError as exc:
        raise ConfigError(f"train_config: {exc}") from None


def _reuse_generator(c) -> StageOutcome:
    return StageOutcome(f"reusing the generator {c.output} (--generator)")


def plan_train_diffusion(cfg: PipelineConfig, up: Upstream) -> StagePlan:
    from uiface_ray.train.config import TrainConfig

    start = train_config_base(cfg)
    base = {"data": {"table": up.embedded}, "output": "-", **_common(cfg)}
    draft = stage_config(TrainConfig, "train_diffusion", merge(start or {}, base), cfg.stages.train_diffusion)
    if cfg.generator:  # the user's own generator: nothing to train
        return StagePlan(
            draft.model_copy(update={"output": cfg.generator}),
            _reuse_generator,
            produces={"generator": cfg.generator},
            preview=lambda c: StageOutcome(f"would reuse the generator {c.output} (--generator)"),
        )
    stage_cfg = draft.model_copy(update={"output": generator_cache_url(cfg, draft, up.embed_stamp)})

    def run(c) -> StageOutcome:
        from uiface_ray.runtime.train_diffusion import train_diffusion

        r = train_diffusion(c)
        if not r.model:
            raise RuntimeError(f"training finished without a saved model in {r.output} (step {r.step})")
        loss = (r.metrics or {}).get("loss")
        rate = (r.metrics or {}).get("images_per_s") if r.step > r.start_step else None  # the last log window
        work = {"steps": r.step - r.start_step, "reused": r.step == r.start_step}
        if rate:
            work["step_s"] = c.batch_size / rate  # images_per_s counts batch_size images a step
        return StageOutcome(
            f"step {r.start_step} -> {r.step} in {r.wall_s:.0f} s, loss "
            f"{loss if loss is None else round(loss, 4)} -> {r.model}",
            {"generator": r.model},
            work,
        )

    def preview(c) -> StageOutcome:
        from uiface_ray.train.checkpoint import checkpoint_url, read_latest

        latest = read_latest(c.output, c.storage) or {}
        step = int(latest.get("step", 0))
        if latest.get("model") and step >= c.max_steps:
            return StageOutcome(
                f"trained already (step {step}), would reuse {latest['model']}", {"generator": latest["model"]}
            )
        model = join(checkpoint_url(c.output, c.max_steps), "model")  # where the last checkpoint will be
        return StageOutcome(
            f"would train steps {step} -> {c.max_steps} (batch {c.batch_size}) on {c.data.table} -> {model}",
            {"generator": model},
        )

    # always run: training resumes (or returns) from the run folder
    return StagePlan(stage_cfg, run, preview=preview)


def plan_identities(cfg: PipelineConfig, up: Upstream) -> StagePlan:
    from uiface_ray.identities.config import MakeIdentitiesConfig

    out = join(cfg.workdir, "identities.parquet")
    base = {
        "model": up.generator,
        "output": out,
        "num_identities": cfg.num_identities,
        "training_embeddings": up.embedded,
        "seed": cfg.seed,
        "encoder": _encoder(cfg),
        "num_inference_steps": cfg.num_inference_steps,
        "candidates_per_task": cfg.candidates_per_task,
        "similarity_threshold": cfg.identity_similarity_threshold,
        "leakage_threshold": cfg.identity_leakage_threshold,
        "max_candidates": cfg.max_candidates_per_identity * cfg.num_identities,
        "actors": {"num_actors": cfg.num_actors},
        **_common(cfg),
    }
    stage_cfg = stage_config(MakeIdentitiesConfig, "make_identities", base, cfg.stages.make_identities)

    def run(c) -> StageOutcome:
        from uiface_ray.runtime.identities import make_identities

        s = make_identities(c)
        return StageOutcome(
            f"kept {s.kept} of {s.candidates_drawn} candidates ({s.rejected_similar} too similar, "
            f"{s.rejected_leakage} too close to training identities)",
            work={"candidates": s.candidates_drawn, "identities": s.kept},
        )

    def preview(c) -> StageOutcome:
        model = c.model or "the generator of stage 3"
        return StageOutcome(
            f"would draw up to {c.max_candidates} candidates from {model} and keep {c.num_identities} identities -> {c.output}"
        )

    return StagePlan(stage_cfg, run, complete_marker=out, produces={"identities": out}, preview=preview)


def plan_synthesize(cfg: PipelineConfig, up: Upstream) -> StagePlan:
    from uiface_ray.synth.config import SynthesisConfig

    out = join(cfg.workdir, "synthetic")
    base = {
        "model": up.generator,
        "identities": up.identities,
        "output": out,
        "images_per_identity": cfg.images_per_identity,
        "identities_per_shard": cfg.identities_per_shard,
        "seed": cfg.seed,
        "batch_size": cfg.synthesis_batch_size,
        "image_format": cfg.image_format,
        "sampler": {"mode": cfg.sampler_mode, "num_inference_steps": cfg.num_inference_steps},
        "actors": {"num_actors": cfg.num_actors},
        **_common(cfg),
    }
    stage_cfg = stage_config(SynthesisConfig, "synthesize", base, cfg.stages.synthesize)

    def run(c) -> StageOutcome:
        from uiface_ray.runtime.synthesis import run_synthesis

        r = run_synthesis(c)
        if not r.shards_run:
            return StageOutcome(
                f"{r.num_rows} images in {r.num_shards} shards, all already complete: nothing to run",
                work={"images": 0, "reused": True},
            )
        images = r.num_rows * r.shards_run // max(1, r.num_shards)  # shards hold equal numbers of identities
        return StageOutcome(
            f"{r.num_rows} images in {r.num_shards} shards ({r.shards_run} run now, "
            f"{r.num_shards - r.shards_run} already complete); {r.images_per_second:.2f} images/s "
            f"on {r.actors} actors",
            work={"images": images, "shards": r.shards_run, "actors": r.actors},
        )

    # always run: synthesis resumes itself
    return StagePlan(stage_cfg, run, produces={"dataset": out}, preview=_preview_synthesis)


def _preview_synthesis(c) -> StageOutcome:
    """The synthesis estimate when the generator and the identities exist (a resume), else the plan
    from the counts alone."""
    from uiface_ray.storage import exists

    if c.model and exists(c.model, c.storage) and exists(c.identities, c.storage):
        from uiface_ray.runtime.synthesis_estimate import estimate_synthesis

        return StageOutcome("\n".join(["would synthesize:", *estimate_synthesis(c).lines(c)[:-1]]))
    return StageOutcome(
        f"would synthesize the identities of stage 4 x {c.images_per_identity} images ({c.identities_per_shard} "
        f"identities per shard, mode {c.sampler.mode}, {c.sampler.num_inference_steps} steps) -> {c.output}\n"
        "its estimate below samples with the probe's generator; for UNet evaluations measured on your own "
        "generator and identities, rerun with --dry_run=true once stages 3 and 4 are complete"
    )


def plan_metrics(cfg: PipelineConfig, up: Upstream) -> StagePlan:
    from uiface_ray.evaluate.config import MetricsConfig

    out = join(cfg.workdir, "metrics")
    base = {
        "data": up.dataset,
        "real": up.embedded,
        "out": out,
        "encoder": _encoder(cfg),
        "real_max_images": cfg.metrics_real_max_images,
        "k": cfg.metrics_k,
        "storage": cfg.storage.model_dump(),
    }
    stage_cfg = stage_config(MetricsConfig, "metrics", base, cfg.stages.metrics)

    def run(c) -> StageOutcome:
        from uiface_ray.evaluate.metrics import run_metrics

        m = run_metrics(c)
        rec = "-" if m.fr_recall is None else f"{m.fr_precision:.3f}/{m.fr_recall:.3f}"
        return StageOutcome(
            f"genuine {m.genuine_mean:.3f}, impostor {m.impostor_mean:.3f} ({m.encoder}); "
            f"1-MS-SSIM {m.diversity_1_minus_msssim:.3f}; FR-embedding precision/recall {rec}",
            work={"images": m.num_images, "identities": m.num_identities},
        )

    metrics_url = join(out, "metrics.json")

    def preview(c) -> StageOutcome:
        return StageOutcome(f"would measure {c.data} ({c.encoder.kind}) against {c.real} -> {c.out}")

    return StagePlan(stage_cfg, run, complete_marker=metrics_url, produces={"metrics": metrics_url}, preview=preview)


def plan_export(cfg: PipelineConfig, up: Upstream) -> StagePlan:
    from uiface_ray.export.config import ExportConfig

    out = join(cfg.workdir, "export")
    base = {"dataset": up.dataset, "output": out, "metrics": up.metrics, **_common(cfg)}
    stage_cfg = stage_config(ExportConfig, "export", base, cfg.stages.export)

    def run(c) -> StageOutcome:
        from uiface_ray.runtime.export import run_export_on_ray

        r = run_export_on_ray(c)  # the shards on the pipeline's Ray session, as jobs/export.py does
        return StageOutcome(f"{r.images} images of {r.identities} identities -> {r.output}", work={"images": r.images})

    return StagePlan(stage_cfg, run, preview=lambda c: StageOutcome(f"would export {c.dataset} -> {c.output}"))


STAGES: list[Stage] = [
    Stage("prepare_faces", plan_prepare_faces),
    Stage("embed", plan_embed),
    Stage("train_diffusion", plan_train_diffusion),
    Stage("make_identities", plan_identities),
    Stage("synthesize", plan_synthesize),
    Stage("metrics", plan_metrics),  # before export: the dataset card carries the metrics
    Stage("export", plan_export),
]


def dry_run_pipeline(cfg: PipelineConfig, log: Callable[[str], None] = print) -> None:
    """``--dry_run``: what each stage would do, and each stage's estimate from a probe of its real
    work (:mod:`uiface_ray.runtime.estimate_probe`); nothing is written."""
    from uiface_ray.runtime.estimate_probe import dry_run_stages

    cfg = resolve_pipeline(cfg)
    train_config_base(cfg)  # a bad train_config ends here, before Ray starts
    check_faces_source(cfg)
    dry_run_stages(cfg, STAGES, log)


def run_pipeline(cfg: PipelineConfig, log: Callable[[str], None] = print) -> PipelineResult:
    """Every stage, on one Ray session (embedded unless an address is given), then the report."""
    cfg = resolve_pipeline(cfg)
    train_config_base(cfg)  # a bad train_config ends here, before Ray starts
    check_faces_source(cfg)
    result = PipelineResult(workdir=cfg.workdir)
    try:
        with ray_session(cfg.ray):
            run_stages(cfg, STAGES, log, result=result)
    except BaseException as exc:  # failed or stopped: the stages that finished keep their record
        if result.stages:
            _record_stopped(cfg, result, exc, log)
        raise
    result.report = write_report(cfg, result)
    return result


def _record_stopped(cfg: PipelineConfig, result: PipelineResult, exc: BaseException, log) -> None:
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300] if str(exc) else type(exc).__name__
    try:
        write_report(cfg, result, stopped=reason)
    except Exception as err:  # noqa: BLE001 - the run's own error is the one to report
        log(f"[pipeline] could not record the stopped run in {cfg.workdir}/runs: {err}")
