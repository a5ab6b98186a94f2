"""``jobs/synthesize.py --dry_run``: the plan and an estimate before a run; nothing is written.

1. Read the model's hash and the identity table (as the run does) and plan the shards; a manifest
   already in the output counts its finished images as done (a resume).
2. Size the actor pool as the run would on this cluster (:func:`~uiface_ray.runtime.pool.plan_pool`).
3. Sample one small batch (``probe_images`` images of the first identity) twice in one Ray task
   with an actor's resources (a GPU when the actors take GPUs), timing the second (the first loads
   what a batch of that shape needs, as an actor's first batch does).  At most
   :data:`PROBE_STEPS` DDIM steps: the UNet evaluations per image of this mode, scaled to the
   request's steps, and, unless ``seconds_per_evaluation`` is given, the seconds per evaluation on
   that device; also the seconds to load the model (each actor pays them once, all at once).  The
   probe costs the same for 10 images or 10^12, for 25 steps or 1000.  A small batch is slower per
   image than the run's ``batch_size``: on a GPU the estimate errs long.
4. ETA = startup + evaluations to do x seconds per evaluation / actors; device-hours and, with
   ``price_per_device_hour``, the cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import ray

from uiface_ray.identities.table import read_identity_table
from uiface_ray import storage
from uiface_ray.model import ModelLoadError, load_model
from uiface_ray.runtime.device_probe import actor_precision
from uiface_ray.runtime.pool import plan_pool, wants_gpu
from uiface_ray.runtime.session import ray_session
from uiface_ray.synth.config import SynthesisConfig
from uiface_ray.synth.errors import SynthesisInputError
from uiface_ray.synth.manifest import read_manifest
from uiface_ray.synth.plan import plan_shards

__all__ = ["PROBE_STEPS", "SynthesisEstimate", "estimate_synthesis", "images_done"]

PROBE_STEPS = 25  # DDIM steps the probe samples at most; evaluations per image scale with the steps


@dataclass
class SynthesisEstimate:
    identities: int
    images_per_identity: int
    shards: int
    images_done: int
    actors: int
    device: str  # 'cuda' or 'cpu'
    evaluations_per_image: float  # mean over the probe batch
    probe_images: int
    seconds_per_evaluation: float
    measured: bool  # seconds_per_evaluation measured here (not given)
    price_per_device_hour: float | None
    probe_steps: int = 0  # DDIM steps the probe sampled with (the request's, or PROBE_STEPS when fewer)
    startup_s: float = 0.0  # an actor's model load, measured in the probe (actors load at once)

    @property
    def images_todo(self) -> int:
        return self.identities * self.images_per_identity - self.images_done

    @property
    def evaluations(self) -> float:
        return self.images_todo * self.evaluations_per_image

    @property
    def device_hours(self) -> float:
        return self.evaluations * self.seconds_per_evaluation / 3600

    @property
    def eta_s(self) -> float:
        """The sampling time on ``actors`` actors, after they started."""
        return self.device_hours * 3600 / self.actors

    def lines(self, cfg: SynthesisConfig) -> list[str]:
        s = cfg.sampler
        how = "measured on" if self.measured else "given; evaluations counted on"
        eta = (
            time.strftime("%H:%M:%S", time.gmtime(self.eta_s))
            if self.eta_s < 86400
            else f"{self.eta_s / 86400:.1f} days"
        )
        cost = (
            f", {self.device_hours * self.price_per_device_hour:,.2f} at {self.price_per_device_hour:g} per device-hour"
            if self.price_per_device_hour is not None
            else ""
        )
        return [
            f"plan: {self.identities} identities x {self.images_per_identity} images = "
            f"{self.identities * self.images_per_identity} images in {self.shards} shards "
            f"({self.images_done} images already done), {self.actors} {self.device} actor(s)",
            f"UNet evaluations: {self.evaluations_per_image:.1f} per image (mode {s.mode}, {s.num_inference_steps} "
            f"steps; mean of {self.probe_images} probe images{self._scaled(s.num_inference_steps)}), "
            f"{self.evaluations:,.0f} to do",
            f"{self.seconds_per_evaluation:.4g} s per evaluation ({how} {self.probe_images} images, {self.device})",
            f"estimate: {eta} with {self.actors} actor(s), {self.device_hours:,.2f} device-hours{cost}; "
            f"plus {self.startup_s:.0f} s to start the actors (the model's load, measured)",
            "dry run: nothing written",
        ]

    def _scaled(self, steps: int) -> str:
        if not self.probe_steps or self.probe_steps == steps:
            return ""
        return f", sampled at {self.probe_steps} steps and scaled"


def _probe(cfg_dict: dict, device: str, n: int) -> tuple[float, list[int], float]:
    """Sample ``n`` images of the first identity twice (the first warms up: the same shapes); the
    second's (seconds, evaluations) and the seconds to load the model."""
    import torch

    from uiface_ray.sample import UIFaceSampler, image_seed

    start = time.perf_counter()
    cfg = SynthesisConfig.model_validate(cfg_dict)
    if device == "cpu":
        torch.set_num_threads(cfg.actors.cpus_per_actor)
    sampler = UIFaceSampler.from_pretrained(
        cfg.model, device=device, dtype=getattr(torch, cfg.actors.dtype), config=cfg.sampler, storage=cfg.storage
    )
    table = read_identity_table(cfg.identities, storage_cfg=cfg.storage)
    load_s = time.perf_counter() - start
    contexts = np.repeat(table.embeddings[:1], n, axis=0)  # (n, E)
    seeds = [image_seed(cfg.seed, int(table.identity_ids[0]), k) for k in range(n)]
    sampler.sample(contexts, seeds=seeds)
    start = time.perf_counter()
    batch = sampler.sample(contexts, seeds=seeds)
    return time.perf_counter() - start, [int(e) for e in batch.unet_evaluations], load_s


def images_done(cfg: SynthesisConfig) -> int:
    """Images a manifest already in the output counts as done (0 for a fresh output)."""
    manifest = read_manifest(cfg.output, cfg.storage)
    return manifest.num_rows if manifest is not None else 0


def estimate_synthesis(cfg: SynthesisConfig, probe_images: int = 4) -> SynthesisEstimate:
    """Steps 1-4 of the module docstring, in the open Ray session or one started from ``cfg.ray``."""
    cfg = storage.resolve_urls(cfg)
    try:
        model = load_model(cfg.model, "cpu", storage=cfg.storage)
    except ModelLoadError as exc:
        raise SynthesisInputError(f"model: {exc}") from exc
    table = read_identity_table(cfg.identities, expected_dim=model.embedding_dim, storage_cfg=cfg.storage)
    del model
    plan = plan_shards(len(table), cfg.identities_per_shard, cfg.images_per_identity)
    with ray_session(cfg.ray):
        resources = ray.cluster_resources()
        use_gpu = wants_gpu(cfg.actors, resources)
        pool = plan_pool(cfg.actors, use_gpu, len(plan), resources)
        precision = actor_precision(cfg.actors.dtype, use_gpu)  # "auto" -> what the actors will run
        device = precision.device
        cfg = cfg.model_copy(update={"actors": cfg.actors.model_copy(update={"dtype": precision.dtype_name})})
        steps = cfg.sampler.num_inference_steps
        probe_steps = min(steps, PROBE_STEPS)
        probe_cfg = cfg.model_copy(
            update={"sampler": cfg.sampler.model_copy(update={"num_inference_steps": probe_steps})}
        )
        task = ray.remote(num_gpus=pool.num_gpus, num_cpus=pool.num_cpus)(_probe)
        seconds, evaluations, load_s = ray.get(task.remote(probe_cfg.model_dump(mode="json"), device, probe_images))
    given = cfg.seconds_per_evaluation
    return SynthesisEstimate(
        identities=len(table),
        images_per_identity=cfg.images_per_identity,
        shards=len(plan),
        images_done=images_done(cfg),
        actors=pool.num_actors,
        device=device,
        evaluations_per_image=float(np.mean(evaluations)) * steps / probe_steps,
        probe_images=probe_images,
        seconds_per_evaluation=given if given is not None else seconds / max(1, sum(evaluations)),
        measured=given is None,
        price_per_device_hour=cfg.price_per_device_hour,
        probe_steps=probe_steps,
        startup_s=load_s,
    )
