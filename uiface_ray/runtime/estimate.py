"""The pipeline's plan: each stage's time as arithmetic on a probe of its real work (no Ray, no I/O).

:mod:`uiface_ray.runtime.estimate_probe` runs the pipeline's own stages once at a fixed probe size in
a temporary folder and times each (:class:`ProbeStage`), and measures a few unit costs with an
actor's resources (:class:`UnitCosts`).  Each stage's estimate is then

    fixed = probe seconds - the probe's units x unit cost / the actors busy in the probe
    estimate = fixed + the request's units x unit cost / the actors busy in the run

where ``fixed`` is what the stage pays whatever its size (Ray Train or actors starting, models
loading, the source listed, files written) and the unit cost is one image embedded, one training
step, one UNet evaluation, one MS-SSIM pair.  Nothing here grows with the request: 10^6 identities
plan as fast as 2.  Each :class:`StageEstimate` says in one line what it is based on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ProbeStage",
    "Sizes",
    "StageEstimate",
    "UnitCosts",
    "duration",
    "estimate_embed",
    "estimate_export",
    "estimate_identities",
    "estimate_metrics",
    "estimate_prepare",
    "estimate_synthesis_stage",
    "estimate_train",
    "msssim_pairs",
]


@dataclass(frozen=True)
class ProbeStage:
    """One stage of the probe run: its wall time and its ``StageOutcome.work`` numbers."""

    seconds: float
    work: dict[str, Any]

    def count(self, key: str) -> float:
        return float(self.work.get(key) or 0)


@dataclass(frozen=True)
class UnitCosts:
    encoder_s: float  # identity encoder: seconds per image on one CPU (decode included)
    evaluation_s: float  # UNet: seconds per image and evaluation (the synthesis probe's batch)
    evaluations_per_step: float  # synthesis sampler: UNet evaluations per image and DDIM step (1 to 2)
    msssim_pair_s: float  # MS-SSIM: seconds per image pair at the metrics' size
    face_s: float  # prepare_faces: seconds to read and resize one real face (0: not measured)


@dataclass(frozen=True)
class Sizes:
    """The request's sizes that its stage configs do not hold (counted or known at plan time)."""

    faces: int  # images prepare_faces writes (and embed embeds)
    identities: int  # synthetic identities
    images: int  # synthetic images to make now (a resume counts what is done)
    train_steps: int  # training steps left (a resume counts what is done)
    cpus: int  # the cluster's CPUs


@dataclass(frozen=True)
class StageEstimate:
    seconds: float
    basis: str  # one line: what the estimate is based on


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``, ``3.4 days``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    if seconds < 86400 * 3:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{seconds / 86400:,.1f} days"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _fixed(probe: ProbeStage, variable_s: float) -> float:
    """The probe's seconds that do not scale with the work (never below zero)."""
    return max(0.0, probe.seconds - variable_s)


def estimate_prepare(probe: ProbeStage, units: UnitCosts, sizes: Sizes) -> StageEstimate:
    m = max(1.0, probe.count("images"))
    face_s = units.face_s or probe.seconds / m  # a train.rec: all of the probe's time per face
    fixed = _fixed(probe, m * face_s)  # listing the source, writing the table
    return StageEstimate(
        fixed + sizes.faces * face_s,
        f"probe: {m:.0f} faces read in {probe.seconds:.1f} s, {fixed:.1f} s of it listing the source and writing; "
        f"{_ms(face_s)} per face; {sizes.faces:,} faces",
    )


def estimate_embed(cfg, probe: ProbeStage, units: UnitCosts, sizes: Sizes) -> StageEstimate:
    m, busy_p = probe.count("images"), max(1.0, probe.count("actors"))
    fixed = _fixed(probe, m * units.encoder_s / busy_p)
    blocks = max(1, math.ceil(sizes.faces / cfg.block_size))
    actors = max(1, min(cfg.num_actors or sizes.cpus, blocks, max(1, sizes.cpus)))
    seconds = fixed + sizes.faces * units.encoder_s / actors
    return StageEstimate(
        seconds,
        f"probe: {m:.0f} faces embedded in {probe.seconds:.1f} s, {fixed:.1f} s of it starting the actors; "
        f"{cfg.encoder.kind} {_ms(units.encoder_s)} per face on one CPU; {sizes.faces:,} faces on {actors} actor(s)",
    )


def _grid_s(cfg, units: UnitCosts) -> float:
    """One checkpoint's sample grid: (identities + the c_e row) x seeds images, one evaluation per step."""
    g = cfg.grid
    return (g.num_identities + 1) * g.num_seeds * g.num_inference_steps * units.evaluation_s if g.num_identities else 0


def estimate_train(cfg, probe: ProbeStage, units: UnitCosts, sizes: Sizes) -> StageEstimate:
    if sizes.train_steps <= 0:
        return StageEstimate(0.0, "trained already: nothing to run")
    p = max(1.0, probe.count("steps"))
    measured = probe.count("step_s") > 0
    step_s = probe.count("step_s") if measured else probe.seconds / p  # no rate reported: all of it per step
    fixed = _fixed(probe, p * step_s)
    checkpoints = math.ceil(sizes.train_steps / cfg.checkpoint_every)
    seconds = fixed + sizes.train_steps * step_s + max(0, checkpoints - 1) * _grid_s(cfg, units)
    how = f"{step_s:.3g} s per step (batch {cfg.batch_size}, {cfg.num_workers} worker(s))"
    return StageEstimate(
        seconds,
        f"probe: {p:.0f} real step(s) of this model in {probe.seconds:.1f} s, {fixed:.1f} s of it starting "
        f"Ray Train, loading data and one checkpoint; {how if measured else how + ', no rate reported'}; "
        f"{sizes.train_steps:,} steps, {checkpoints} checkpoint(s)",
    )


def _candidate_s(steps: int, units: UnitCosts) -> float:
    """One candidate identity: c_e-only sampling (one evaluation per step), then one embedding."""
    return steps * units.evaluation_s + units.encoder_s


def estimate_identities(cfg, probe_cfg, probe: ProbeStage, units: UnitCosts, sizes: Sizes) -> StageEstimate:
    per_task = cfg.candidates_per_task
    actors_p = max(1, probe_cfg.actors.num_actors or 1)
    rounds_p = math.ceil(max(1, math.ceil(probe.count("candidates") / per_task)) / actors_p)
    fixed = _fixed(probe, rounds_p * per_task * _candidate_s(probe_cfg.num_inference_steps, units))
    tasks, most = math.ceil(cfg.num_identities / per_task), math.ceil(cfg.max_candidates / per_task)
    actors = max(1, min(cfg.actors.num_actors or sizes.cpus, tasks))
    task_s = per_task * _candidate_s(cfg.num_inference_steps, units)
    seconds = fixed + math.ceil(tasks / actors) * task_s
    worst = fixed + math.ceil(most / actors) * task_s
    return StageEstimate(
        seconds,
        f"probe: {probe.count('candidates'):.0f} candidates in {probe.seconds:.1f} s, {fixed:.1f} s of it "
        f"starting the actors; {_ms(task_s / per_task)} per candidate ({cfg.num_inference_steps} steps + one "
        f"embedding); {tasks:,} task(s) of {per_task} on {actors} actor(s) if few are rejected, "
        f"{duration(worst)} at max_candidates",
    )


def estimate_synthesis_stage(cfg, probe_cfg, probe: ProbeStage, units: UnitCosts, sizes: Sizes) -> StageEstimate:
    per_image_p = units.evaluations_per_step * probe_cfg.sampler.num_inference_steps * units.evaluation_s
    busy_p = max(1.0, min(probe.count("actors") or 1, probe.count("shards") or 1))
    fixed = _fixed(probe, probe.count("images") * per_image_p / busy_p)
    evaluations = units.evaluations_per_step * cfg.sampler.num_inference_steps
    shards = max(1, math.ceil(sizes.identities / cfg.identities_per_shard))
    per_actor = max(1, cfg.actors.cpus_per_actor)
    actors = max(1, min(cfg.actors.num_actors or sizes.cpus // per_actor, shards))
    seconds = fixed + sizes.images * evaluations * units.evaluation_s / actors
    return StageEstimate(
        seconds,
        f"probe: {probe.count('images'):.0f} images in {probe.seconds:.1f} s, {fixed:.1f} s of it starting the "
        f"actors; {evaluations:.1f} UNet evaluations per image (mode {cfg.sampler.mode}) at "
        f"{_ms(units.evaluation_s)} each; {sizes.images:,} images on {actors} actor(s)",
    )


def msssim_pairs(identities: int, images_per_identity: int, max_identities: int, max_pairs: int) -> int:
    """MS-SSIM pairs of the intra-class diversity: per identity sampled, its pairs up to ``max_pairs``."""
    return min(identities, max_identities) * min(max_pairs, images_per_identity * (images_per_identity - 1) // 2)


def estimate_metrics(cfg, probe_cfg, probe: ProbeStage, units: UnitCosts, sizes: Sizes, probe_sizes: Sizes):
    ipi_p = probe_sizes.images // max(1, probe_sizes.identities)
    ipi = sizes.images // max(1, sizes.identities) if sizes.identities else 0
    pairs_p = msssim_pairs(probe_sizes.identities, ipi_p, probe_cfg.diversity_identities, probe_cfg.diversity_pairs)
    pairs = msssim_pairs(sizes.identities, ipi, cfg.diversity_identities, cfg.diversity_pairs)
    real_p, real = min(probe_cfg.real_max_images, probe_sizes.faces), min(cfg.real_max_images, sizes.faces)
    embedded_p, embedded = probe_sizes.images + real_p, sizes.images + real
    fixed = _fixed(probe, embedded_p * units.encoder_s + pairs_p * units.msssim_pair_s)
    seconds = fixed + embedded * units.encoder_s + pairs * units.msssim_pair_s
    return StageEstimate(
        seconds,
        f"probe: {probe_sizes.images} images measured in {probe.seconds:.1f} s; {embedded:,} faces to embed "
        f"({sizes.images:,} synthetic, {real:,} real) at {_ms(units.encoder_s)} and {pairs:,} MS-SSIM pairs "
        f"at {_ms(units.msssim_pair_s)}",
    )


def estimate_export(probe: ProbeStage, units: UnitCosts, sizes: Sizes) -> StageEstimate:
    m = probe.count("images")
    per_image = units.face_s or probe.seconds / max(1.0, m)
    seconds = probe.seconds + max(0, sizes.images - m) * per_image
    return StageEstimate(
        seconds,
        f"probe: {m:.0f} images exported in {probe.seconds:.1f} s; {sizes.images:,} images at "
        f"{_ms(per_image)} each (as prepare_faces reads a face)",
    )
