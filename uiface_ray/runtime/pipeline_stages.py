"""The stages of ``run_pipeline``, in order; each builds its job's config and calls the package."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from uiface_ray.runtime.pipeline import (
    PipelineConfig,
    PipelineResult,
    _done,
    _merge,
    _mark,
    _stamp,
    generator_cache_url,
    stage_config,
)
from uiface_ray.storage import join, read_bytes, write_bytes_atomic


def _faces(cfg: PipelineConfig) -> str:
    return join(cfg.workdir, "faces.parquet")


def _embedded(cfg: PipelineConfig) -> str:
    return join(cfg.workdir, "faces_dlib.parquet")


def _common(cfg: PipelineConfig, ray: bool = True) -> dict:
    out = {"storage": cfg.storage.model_dump()}
    if ray:
        out["ray"] = cfg.ray.model_dump()
    return out


def prepare(cfg: PipelineConfig, runner) -> None:
    from uiface_ray.data.prepare import PrepareFacesConfig, prepare_faces

    base = {"input": cfg.faces_source, "people_file": cfg.people_file, "min_images": cfg.min_images,
            "max_images_per_identity": cfg.max_images_per_identity,
            "resolution": 112, "output": _faces(cfg), **_common(cfg, ray=False)}
    stage_cfg = stage_config(PrepareFacesConfig, "prepare_faces", base, cfg.stages.prepare_faces)

    def run() -> str:
        res = prepare_faces(stage_cfg)
        _mark(stage_cfg.output, stage_cfg, cfg.storage)
        return f"{res.table.images} images of {res.table.identities} identities -> {res.table.output}"

    runner.stage("prepare_faces", run, skip=_done(stage_cfg.output, stage_cfg, cfg.storage))


def embed(cfg: PipelineConfig, runner) -> None:
    from uiface_ray.runtime.embed import EmbedConfig, run_embed

    base = {"input": _faces(cfg), "output": _embedded(cfg), "encoder": {"kind": "dlib"},
            "num_actors": cfg.num_actors, **_common(cfg)}
    stage_cfg = stage_config(EmbedConfig, "embed", base, cfg.stages.embed)

    def run() -> str:
        res = run_embed(stage_cfg)
        _mark(_embedded(cfg), stage_cfg, cfg.storage)
        return f"{res.images} x {res.dim}-d embeddings on {res.num_actors} actors ({res.images_per_second:.1f} images/s)"

    runner.stage("embed", run, skip=_done(_embedded(cfg), stage_cfg, cfg.storage))
    runner.embed_stamp = _stamp(stage_cfg)


def train(cfg: PipelineConfig, runner) -> None:
    from uiface_ray.runtime.train_diffusion import train_diffusion
    from uiface_ray.train.config import TrainConfig

    if cfg.generator:
        runner.generator = cfg.generator
        runner.stage("train_diffusion", lambda: "", skip=True)
        return
    start = yaml.safe_load(Path(cfg.train_config).read_text()) if cfg.train_config else {}
    base = {"data": {"table": _embedded(cfg)}, "output": "-", **_common(cfg)}
    draft = stage_config(TrainConfig, "train_diffusion", _merge(start, base), cfg.stages.train_diffusion)
    output = generator_cache_url(cfg, draft, runner.embed_stamp)
    stage_cfg = draft.model_copy(update={"output": output})

    def run() -> str:
        res = train_diffusion(stage_cfg)
        if not res.model:
            raise RuntimeError(f"training finished without a saved model in {res.output} (step {res.step})")
        runner.generator = res.model
        loss = (res.metrics or {}).get("loss")
        return (f"step {res.start_step} -> {res.step} in {res.wall_s:.0f} s, loss {loss if loss is None else round(loss, 4)}"
                f" -> {res.model}")

    runner.stage("train_diffusion", run)


def identities(cfg: PipelineConfig, runner) -> None:
    from uiface_ray.identities.config import MakeIdentitiesConfig
    from uiface_ray.runtime.identities import make_identities

    out = join(cfg.workdir, "identities.parquet")
    base = {"model": runner.generator, "output": out, "num_identities": cfg.num_identities,
            "training_embeddings": _embedded(cfg), "seed": cfg.seed, "encoder": {"kind": "dlib"},
            "num_inference_steps": cfg.num_inference_steps, "candidates_per_task": 16,
            "similarity_threshold": cfg.identity_similarity_threshold,
            "leakage_threshold": cfg.identity_leakage_threshold,
            "max_candidates": 16 * cfg.num_identities,
            "actors": {"num_actors": cfg.num_actors}, **_common(cfg)}
    stage_cfg = stage_config(MakeIdentitiesConfig, "make_identities", base, cfg.stages.make_identities)

    def run() -> str:
        s = make_identities(stage_cfg)
        _mark(out, stage_cfg, cfg.storage)
        return (f"kept {s.kept} of {s.candidates_drawn} candidates ({s.rejected_similar} too similar, "
                f"{s.rejected_leakage} too close to training identities)")

    runner.identities = out
    runner.stage("make_identities", run, skip=_done(out, stage_cfg, cfg.storage))


def synthesize(cfg: PipelineConfig, runner) -> None:
    from uiface_ray.runtime.synthesis import run_synthesis
    from uiface_ray.synth.config import SynthesisConfig

    out = join(cfg.workdir, "synthetic")
    base = {"model": runner.generator, "identities": runner.identities, "output": out,
            "images_per_identity": cfg.images_per_identity, "identities_per_shard": 2, "seed": cfg.seed,
            "batch_size": 8, "image_format": "png",
            "sampler": {"mode": "uiface", "num_inference_steps": cfg.num_inference_steps},
            "actors": {"num_actors": cfg.num_actors}, **_common(cfg)}
    stage_cfg = stage_config(SynthesisConfig, "synthesize", base, cfg.stages.synthesize)

    def run() -> str:
        r = run_synthesis(stage_cfg)
        if not r.shards_run:
            return f"{r.num_rows} images in {r.num_shards} shards, all already complete: nothing to run"
        return (f"{r.num_rows} images in {r.num_shards} shards ({r.shards_run} run now, "
                f"{r.num_shards - r.shards_run} already complete); {r.images_per_second:.2f} images/s on {r.actors} actors")

    runner.dataset = out
    runner.stage("synthesize", run)


def metrics(cfg: PipelineConfig, runner) -> None:
    from uiface_ray.evaluate.metrics import run_metrics
    from uiface_ray.evaluate.settings import MetricsConfig

    out = join(cfg.workdir, "metrics")
    base = {"data": runner.dataset, "real": _embedded(cfg), "out": out, "encoder": {"kind": "dlib"},
            "real_max_images": 500, "k": 3, "storage": cfg.storage.model_dump()}
    stage_cfg = stage_config(MetricsConfig, "metrics", base, cfg.stages.metrics)

    def run() -> str:
        m = run_metrics(stage_cfg)
        runner.metrics = m
        rec = "-" if m.fr_recall is None else f"{m.fr_precision:.3f}/{m.fr_recall:.3f}"
        return (f"genuine {m.genuine_mean:.3f}, impostor {m.impostor_mean:.3f} ({m.encoder}); "
                f"1-MS-SSIM {m.diversity_1_minus_msssim:.3f}; FR-embedding precision/recall {rec}")

    runner.metrics_url = join(out, "metrics.json")
    runner.stage("metrics", run)


def export(cfg: PipelineConfig, runner) -> None:
    from uiface_ray.export.config import ExportConfig
    from uiface_ray.export.run import run_export

    out = join(cfg.workdir, "export")
    base = {"dataset": runner.dataset, "output": out, "metrics": runner.metrics_url,
            "storage": cfg.storage.model_dump()}
    stage_cfg = stage_config(ExportConfig, "export", base, cfg.stages.export)

    def run() -> str:
        r = run_export(stage_cfg)
        return f"{r.images} images of {r.identities} identities -> {r.output}"

    runner.stage("export", run)


STAGES = (prepare, embed, train, identities, synthesize, metrics, export)


def write_report(cfg: PipelineConfig, result: PipelineResult) -> str:
    lines = ["# uiface-ray pipeline report", "", f"workdir: `{cfg.workdir}`", "",
             "| stage | seconds | result |", "| --- | ---: | --- |"]
    for rec in result.stages:
        lines.append(f"| {rec.name} | {rec.seconds:.1f} | {rec.summary} |")
    total = sum(r.seconds for r in result.stages)
    lines += ["", f"total: {total:.0f} s", ""]
    try:
        metrics_json = json.loads(read_bytes(join(cfg.workdir, "metrics", "metrics.json"), cfg.storage))
        lines += ["## metrics", "", "```json", json.dumps(metrics_json, indent=2, default=str), "```", ""]
    except Exception as exc:  # noqa: BLE001 - the report still lists the stages
        lines += [f"(metrics unavailable: {exc})", ""]
    url = join(cfg.workdir, "report.md")
    write_bytes_atomic(url, "\n".join(lines).encode(), cfg.storage)
    return url
