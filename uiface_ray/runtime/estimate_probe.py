"""``jobs/pipeline.py --dry_run``: the plan of every stage, and an estimate of each from a probe.

1. Walk the stage plans as a run would: stages complete for their config would be skipped; each
   other stage says what it would do (its ``preview``).  The request's sizes are counted without
   doing the work (the face source is listed; the rest is arithmetic on the configs).
2. Probe: the same stages, through the same runner, at a fixed small size in a temporary folder
   (:func:`probe_config`: a few identities of the real faces, two real training steps of the
   configured model, two synthetic identities of two images, the same encoder, sampler, actors and
   Ray), each timed; their output goes to a buffer, the folder is removed after.
3. Unit costs, each measured with the resources a stage's actor has: one image through the identity
   encoder (a 1-CPU Ray task), one UNet evaluation (the synthesis estimate's probe task on the
   probe's generator), one MS-SSIM pair (here, where the metrics run).
4. :mod:`uiface_ray.runtime.estimate`: each stage's estimate and its basis, and the total.

Nothing grows with the request's size: a plan of 10^6 identities probes as 2 do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import shutil
import sys
import tempfile
import time
import uuid
from typing import Callable

from uiface_ray.runtime.config import PipelineConfig, StageOverrides
from uiface_ray.runtime.estimate import (
    ProbeStage,
    Sizes,
    StageEstimate,
    UnitCosts,
    duration,
    estimate_embed,
    estimate_export,
    estimate_identities,
    estimate_metrics,
    estimate_prepare,
    estimate_synthesis_stage,
    estimate_train,
)
from uiface_ray.runtime.pipeline import (
    RUNS_DIR,
    PipelineStageError,
    Stage,
    StageOutcome,
    Upstream,
    is_complete,
    merge,
    read_runs,
    run_stages,
)
from uiface_ray.runtime.synthesis_estimate import PROBE_STEPS, estimate_synthesis, images_done
from uiface_ray.storage import exists, join, remove

__all__ = ["count_faces", "dry_run_stages", "last_run_line", "probe_config"]

PROBE_TRAIN_STEPS = 2
PROBE_IDENTITIES = 2
PROBE_IMAGES = 2


@dataclasses.dataclass
class _Walk:
    """What step 1 found: each stage's plan config, and whether the run would skip it."""

    configs: dict = dataclasses.field(default_factory=dict)
    skipped: set = dataclasses.field(default_factory=set)


def _walk(cfg: PipelineConfig, stages: list[Stage], log: Callable[[str], None]) -> _Walk:
    walk, upstream = _Walk(), Upstream(generator=cfg.generator)
    for i, stage in enumerate(stages, start=1):
        plan = stage.plan(cfg, upstream)
        walk.configs[stage.name] = plan.config
        head = f"[pipeline] {i}/{len(stages)} {stage.name}:"
        if plan.complete_marker is not None and is_complete(plan.complete_marker, plan.config, cfg.storage):
            log(f"{head} already complete, would skip")
            walk.skipped.add(stage.name)
            outcome = StageOutcome("")
        else:
            outcome = plan.preview(plan.config) if plan.preview else StageOutcome("would run")
            first, *rest = outcome.summary.splitlines() or [""]
            log(f"{head} {first}")
            for line in rest:
                log(f"[pipeline]     {line}")
        upstream = dataclasses.replace(upstream, **plan.produces, **outcome.produces)
    return walk


def count_faces(c) -> tuple[int, float]:
    """(images prepare_faces would write, its seconds per image): an image folder is listed as
    prepare_faces lists it and a few of its images are read and resized as prepare_faces does; a
    train.rec counts the lines of its index (an upper bound) and its time per image is not measured."""
    from uiface_ray.data.image_folder import read_people_list, scan_image_folder
    from uiface_ray.data.images import prepare_image
    from uiface_ray.storage import read_bytes

    if c.format == "rec" or (c.format == "auto" and c.input.endswith(".rec")):
        idx = c.idx or c.input[: -len(".rec")] + ".idx"
        return sum(1 for line in read_bytes(idx, c.storage).splitlines() if line.strip()), 0.0
    people = [name for name, _ in read_people_list(c.people_file, c.storage)] if c.people_file else None
    scan = scan_image_folder(c.input, people, c.min_images, c.max_identities, c.max_images_per_identity, c.storage)
    files = [url for ident in scan.identities for url in ident.files]
    sample = files[:: max(1, len(files) // 8)][:8]
    start = time.perf_counter()
    for url in sample:
        prepare_image(read_bytes(url, c.storage), url, c.resolution, c.image_format, c.jpeg_quality)
    return len(files), (time.perf_counter() - start) / max(1, len(sample))


def probe_config(cfg: PipelineConfig, folder: str, train_cfg) -> PipelineConfig:
    """``cfg`` at probe size, writing under ``folder``: the same faces, encoder, model, sampler,
    actors and Ray; enough identities for two training batches and the checkpoint's sample grid;
    every candidate identity kept."""
    per_identity = max(1, cfg.min_images)
    need = train_cfg.batch_size * train_cfg.num_workers * 2  # two batches' worth of rows
    probe_faces = max(math.ceil(need / per_identity), train_cfg.grid.num_identities)  # the grid's rows too
    user = cfg.stages.model_dump(exclude_unset=True)
    most = (user.get("prepare_faces") or {}).get("max_identities")
    overrides = {
        "prepare_faces": {"max_identities": min(probe_faces, most or probe_faces)},
        "train_diffusion": {"max_steps": PROBE_TRAIN_STEPS, "checkpoint_every": PROBE_TRAIN_STEPS, "log_every": 1},
        "make_identities": {"similarity_threshold": 1.0, "leakage_threshold": 1.0},
    }
    return cfg.model_copy(
        update={
            "workdir": join(folder, "work"),
            "generator_cache": join(folder, "generators"),
            "num_identities": min(cfg.num_identities, PROBE_IDENTITIES),
            "images_per_identity": min(cfg.images_per_identity, PROBE_IMAGES),
            "num_inference_steps": min(cfg.num_inference_steps, PROBE_STEPS),
            "max_candidates_per_identity": max(1, math.ceil(cfg.candidates_per_task / PROBE_IDENTITIES)),
            "stages": StageOverrides.model_validate(merge(user, overrides)),
        }
    )


def _encoder_cost(encoder: dict, storage: dict, table: str, n: int) -> float:
    """Seconds per image of the identity encoder on one CPU thread (decode included), warm."""
    import torch

    from uiface_ray.config import StorageConfig
    from uiface_ray.data.images import decode_batch
    from uiface_ray.encoders import load_encoder
    from uiface_ray.storage.batches import open_typed
    from uiface_ray.storage.tables import FACE_TABLE

    torch.set_num_threads(1)
    st = StorageConfig.model_validate(storage)
    model = load_encoder(encoder, st)
    with open_typed(FACE_TABLE, table, st, required=["image", "source"]) as reader:
        block = next(iter(reader.blocks(n)))
    images, sources = list(block.column("image")), list(block.column("source"))
    model.embed(decode_batch(images[:1], sources[:1]))  # warm-up
    start = time.perf_counter()
    model.embed(decode_batch(images, sources))
    return (time.perf_counter() - start) / len(images)


def _msssim_pair_s(size: int) -> float:
    import numpy as np

    from uiface_ray.evaluate.msssim import ms_ssim

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8) for _ in range(2))
    ms_ssim(a[:1], b[:1])  # warm-up
    start = time.perf_counter()
    ms_ssim(a, b)
    return (time.perf_counter() - start) / 4


def _unit_costs(probe_cfgs: dict, embedded: str, face_s: float) -> UnitCosts:
    import ray

    embed = probe_cfgs["embed"]
    task = ray.remote(num_cpus=1)(_encoder_cost)
    encoder_s = ray.get(task.remote(embed.encoder.model_dump(), embed.storage.model_dump(), embedded, 8))
    synth = estimate_synthesis(probe_cfgs["synthesize"])
    return UnitCosts(
        encoder_s=encoder_s,
        evaluation_s=synth.seconds_per_evaluation,
        evaluations_per_step=synth.evaluations_per_image / probe_cfgs["synthesize"].sampler.num_inference_steps,
        msssim_pair_s=_msssim_pair_s(probe_cfgs["metrics"].msssim_size),
        face_s=face_s,
    )


class _Tee(io.TextIOBase):
    """The probe's own output: kept (shown if the probe fails), not printed."""

    def __init__(self):
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.extend(line for line in text.splitlines() if line.strip())
        del self.lines[:-200]
        return len(text)


def _probe_configs(cfg: PipelineConfig, stages: list[Stage], upstream: Upstream) -> dict:
    """Each stage's config in the probe run (every plan given the probe's final outputs)."""
    return {stage.name: stage.plan(cfg, upstream).config for stage in stages}


def _probe_folder(cfg: PipelineConfig) -> str:
    """Where the probe writes: a local temporary folder, or, when the workdir is object storage (the
    stages may run on other nodes), a folder beside the workdir's outputs; removed after."""
    if "://" not in cfg.workdir:
        return tempfile.mkdtemp(prefix="uiface-plan-")
    return join(cfg.workdir, f".dry-run-probe-{uuid.uuid4().hex[:12]}")


def _remove(folder: str, cfg: PipelineConfig) -> None:
    if "://" not in folder:
        shutil.rmtree(folder, ignore_errors=True)
    elif exists(folder, cfg.storage):
        remove(folder, cfg.storage, recursive=True)


def _probe(cfg, stages, train_cfg, face_s: float, log) -> tuple[dict, dict, UnitCosts]:
    """Steps 2 and 3: (probe records by stage, the probe's stage configs, unit costs)."""
    folder = _probe_folder(cfg)
    out = _Tee()
    say = sys.stdout.write
    try:
        pcfg = probe_config(cfg, folder, train_cfg)
        log(f"[pipeline] probing each stage at a small size in {folder} (removed after) ...")
        try:
            logging.disable(logging.INFO)  # the stages' INFO lines (their handlers hold the real stderr)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                result = run_stages(pcfg, stages, lambda line: say("[pipeline] probe " + line[11:] + "\n"))
                configs = _probe_configs(pcfg, stages, result.upstream)
                units = _unit_costs(configs, result.upstream.embedded, face_s)
        except Exception as exc:
            log("[pipeline] the probe's last lines:\n" + "\n".join(out.lines[-30:]))
            if isinstance(exc, PipelineStageError):
                raise PipelineStageError(f"dry run probe: {exc}") from exc
            raise
        finally:
            logging.disable(logging.NOTSET)
        return {r.name: ProbeStage(r.seconds, r.work) for r in result.stages}, configs, units
    finally:
        _remove(folder, cfg)


def _sizes(cfg: PipelineConfig, walk: _Walk, cpus: int, faces: int) -> Sizes:
    from uiface_ray.train.checkpoint import read_latest

    train, synth = walk.configs["train_diffusion"], walk.configs["synthesize"]
    steps = 0
    if not cfg.generator:
        steps = train.max_steps - int((read_latest(train.output, train.storage) or {}).get("step", 0))
    todo = cfg.num_identities * cfg.images_per_identity - images_done(synth)
    return Sizes(faces=faces, identities=cfg.num_identities, images=max(0, todo), train_steps=steps, cpus=cpus)


def _estimates(walk: _Walk, probe: dict, pcfgs: dict, units: UnitCosts, sizes: Sizes, psizes: Sizes) -> dict:
    c = walk.configs
    out = {
        "prepare_faces": estimate_prepare(probe["prepare_faces"], units, sizes),
        "embed": estimate_embed(c["embed"], probe["embed"], units, sizes),
        "train_diffusion": estimate_train(c["train_diffusion"], probe["train_diffusion"], units, sizes),
        "make_identities": estimate_identities(
            c["make_identities"], pcfgs["make_identities"], probe["make_identities"], units, sizes
        ),
        "synthesize": estimate_synthesis_stage(c["synthesize"], pcfgs["synthesize"], probe["synthesize"], units, sizes),
        "metrics": estimate_metrics(c["metrics"], pcfgs["metrics"], probe["metrics"], units, sizes, psizes),
        "export": estimate_export(probe["export"], units, sizes),
    }
    if sizes.images == 0:
        out["synthesize"] = StageEstimate(0.0, "every image is done already")
    for name in walk.skipped:
        out[name] = StageEstimate(0.0, "complete for this config: skipped")
    return out


def dry_run_stages(cfg: PipelineConfig, stages: list[Stage], log: Callable[[str], None] = print) -> dict:
    """Steps 1-4 of the module docstring, on the pipeline's Ray; returns each stage's
    :class:`StageEstimate` (none when every stage would be skipped).  Writes nothing but the probe's
    temporary folder, removed after."""
    import ray

    from uiface_ray.runtime.session import ray_session

    if not cfg.estimate:
        _walk(cfg, stages, log)
        log("[pipeline] no estimate (--estimate=false)")
        log("[pipeline] dry run: nothing written")
        return {}
    start = time.time()
    with ray_session(cfg.ray):
        ray_s = time.time() - start
        walk = _walk(cfg, stages, log)
        start = time.time()
        faces, face_s = count_faces(walk.configs["prepare_faces"])
        sizes = _sizes(cfg, walk, int(ray.cluster_resources().get("CPU", 1)), faces)
        if _nothing_to_do(walk, sizes):
            estimates = _done_estimates(cfg, walk)
        else:
            probe, pcfgs, units = _probe(cfg, stages, walk.configs["train_diffusion"], face_s, log)
            p_ids = min(cfg.num_identities, PROBE_IDENTITIES)
            p_images = p_ids * min(cfg.images_per_identity, PROBE_IMAGES)
            count = int(probe["prepare_faces"].count("images"))
            psizes = Sizes(count, p_ids, p_images, PROBE_TRAIN_STEPS, sizes.cpus)
            estimates = _estimates(walk, probe, pcfgs, units, sizes, psizes)
    started = StageEstimate(ray_s, "this dry run's start of Ray (the run starts it the same way)")
    estimates = {"ray": started, **estimates}
    _print(estimates, time.time() - start, last_run_line(cfg), log)
    return estimates


def _nothing_to_do(walk: _Walk, sizes: Sizes) -> bool:
    """Whether every stage would be skipped or find its work done (export aside: it rewrites a
    complete dataset's export, the same work as last time)."""
    done = {"train_diffusion": sizes.train_steps <= 0, "synthesize": sizes.images <= 0, "export": True}
    return all(name in walk.skipped or done.get(name, False) for name in walk.configs)


def _done_estimates(cfg: PipelineConfig, walk: _Walk) -> dict:
    """Nothing to probe: every stage is skipped or done, and the export takes what it took last time."""
    out = {name: StageEstimate(0.0, "complete for this config: skipped") for name in walk.configs}
    out["train_diffusion"] = StageEstimate(0.0, "trained already: nothing to run")
    out["synthesize"] = StageEstimate(0.0, "every image is done already")
    runs = [r for r in read_runs(cfg.workdir, cfg.storage) if not r.get("stopped")]
    last = [st for r in runs[-1:] for st in r["stages"] if isinstance(st, dict) and st.get("name") == "export"]
    if last:
        took = float(last[0].get("seconds", 0))
        out["export"] = StageEstimate(took, f"the last run's export of this dataset ({runs[-1].get('run')})")
    else:
        out["export"] = StageEstimate(0.0, "not measured: no earlier run of this workdir exported")
    return out


def last_run_line(cfg: PipelineConfig) -> str:
    """A line on the newest run of this workdir (its measured time beside the estimate), or ''."""
    runs = read_runs(cfg.workdir, cfg.storage)
    if not runs:
        return ""
    last = runs[-1]
    took = sum(float(st.get("seconds", 0)) for st in last["stages"] if isinstance(st, dict))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(last.get("started", 0))))
    return f"the last run of this workdir, {last.get('run')} at {when}, took {duration(took)} ({RUNS_DIR}/)"


def _print(estimates: dict, probe_s: float, last_run: str, log: Callable[[str], None]) -> None:
    width = max(len(name) for name in estimates)
    log("[pipeline] estimate of each stage on this machine (measured now: other work on it slows both):")
    for name, est in estimates.items():
        log(f"[pipeline]   {name:<{width}}  {duration(est.seconds):>14}  {est.basis}")
    total = sum(est.seconds for est in estimates.values())
    log(f"[pipeline] estimate total: {duration(total)} (the probe took {duration(probe_s)})")
    if last_run:
        log(f"[pipeline] {last_run}")
    log("[pipeline] dry run: nothing written")
