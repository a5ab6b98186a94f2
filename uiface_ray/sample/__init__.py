"""UIFace sampler: two-stage DDIM (eq. 4), adaptive t0 (eq. 5), attention injection (eq. 6-7).

The core (``config``, ``two_stage``, ``adaptive_t0``, ``attention``, ``loop``, ``seeds``) imports
torch and diffusers only; ``api`` adds model loading.  Names are imported on first use
(``uiface_ray._lazy``): ``SamplerConfig`` alone imports no torch.
"""

from uiface_ray._lazy import lazy_exports

_EXPORTS = {
    "GeneratedBatch": "api",
    "MODES": "config",
    "SamplerConfig": "config",
    "SamplerMode": "config",
    "SamplerOutput": "loop",
    "UIFaceSampler": "api",
    "image_seed": "seeds",
    "run_sampler": "loop",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
