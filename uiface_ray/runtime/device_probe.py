"""Where a pool's actors will run, and in which precision: one Ray task with an actor's resources.

The driver may sit on another machine than the actors (a CPU head node, a laptop submitting to a
GPU cluster), so ``dtype: auto`` is decided from the capability of a machine that holds an actor's
resources (``num_gpus=1`` for GPU actors; for CPU actors a zero-CPU task, which lands on a node of
the cluster, usually like the actors' nodes), probed by one short task.  An
explicit dtype on CPU actors needs no probe.  The result (device and concrete dtype) is what a
job records and what its actors are handed, so every actor samples in the same dtype.
"""

from __future__ import annotations

import logging

import ray

from uiface_ray.precision import Capability, Precision, decide, detect

__all__ = ["actor_precision"]

log = logging.getLogger(__name__)


def _capability() -> dict:
    from uiface_ray.precision import detect

    return detect().to_dict()


def actor_precision(requested: str, use_gpu: bool, timeout_s: float = 300.0) -> Precision:
    """The precision of actors with one GPU each (``use_gpu``) or CPU actors, for ``requested``
    ("auto" or a dtype name).  A GPU slot without a CUDA device (a fake ``GPU`` resource) gives
    the CPU's decision, with device "cpu"."""
    device = "cuda" if use_gpu else "cpu"
    if not use_gpu and requested != "auto":
        return decide(Capability(), device, requested)
    # num_cpus=0: the probe holds no CPU slot (a CPU job's actors may need every one right after it)
    probe = ray.remote(_capability).options(num_cpus=0, num_gpus=1 if use_gpu else 0)
    ref = probe.remote()
    try:
        cap = Capability.from_dict(ray.get(ref, timeout=timeout_s))
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        log.warning("no %s slot answered the precision probe in %.0f s: deciding from this machine", device, timeout_s)
        cap = detect()
    return decide(cap, device, requested)
