"""The paper's own studies at our scale, beside the service: the ablation of Table 2 (``ablation``: every
sampler mode on the same identities and seeds, dataset metrics, an FR model per row, a real-data row from
``real_faces``), Figure 2 (``interval_sampling``: the identity used only inside a timestep interval) and
their report (``ablation_report``).  Names are imported on first use (``uiface_ray._lazy``)."""

from uiface_ray._lazy import lazy_exports

_EXPORTS = {
    "AblationConfig": "config",
    "interval_similarity": "interval_sampling",
    "run_ablation": "ablation",
    "write_report": "ablation_report",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
