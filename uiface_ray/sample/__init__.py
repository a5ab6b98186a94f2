"""UIFace sampler: two-stage DDIM (eq. 4), adaptive t0 (eq. 5), attention injection (eq. 6-7).

The core (``config``, ``two_stage``, ``adaptive_t0``, ``attention``, ``loop``, ``seeds``) imports
torch and diffusers only; ``api`` adds model loading and is imported lazily, on first use of
``UIFaceSampler`` or ``GeneratedBatch``.
"""

from uiface_ray.sample.config import MODES, SamplerConfig
from uiface_ray.sample.loop import SamplerOutput, run_sampler
from uiface_ray.sample.seeds import image_seed

__all__ = ["MODES", "GeneratedBatch", "SamplerConfig", "SamplerOutput", "UIFaceSampler", "image_seed", "run_sampler"]


def __getattr__(name: str):
    if name in ("UIFaceSampler", "GeneratedBatch"):
        from uiface_ray.sample import api

        return getattr(api, name)
    raise AttributeError(f"module 'uiface_ray.sample' has no attribute {name!r}")
