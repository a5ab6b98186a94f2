"""Test-only launcher: ``jobs/synthesize.py`` with a fault plan (:mod:`uiface_ray.synth.faults`).

The production job reads no fault setting of any kind; a test that needs one runs this file instead,
with the plan as its first argument and the job's own arguments after it::

    python tests/fault_seam/synthesize_with_faults.py --faults='{"hold_shard": 1}' --config synth.yaml ...

It runs the job's own ``body`` through ``run_job`` (so its lines, exit codes and signal handling are
the job's) with the plan as ``run_synthesis``'s ``faults`` argument, which reaches the actors inside
their constructor arguments.  Under ``ray job submit`` (which uploads no ``tests/``) its package
travels as a ``py_modules`` entry (:func:`submit_runtime_env`) and it runs as
``python -m fault_seam.synthesize_with_faults`` (:data:`MODULE`).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if (ROOT / "jobs" / "synthesize.py").is_file():  # run from a checkout (else the job's working dir is on sys.path)
    sys.path.insert(0, str(ROOT))

FLAG = "--faults="
MODULE = "fault_seam.synthesize_with_faults"


def args(plan: dict, job_args: list[str]) -> list[str]:
    """The command line (after the interpreter) that runs the job's arguments ``job_args`` with ``plan``."""
    return [str(Path(__file__).resolve().relative_to(ROOT)), FLAG + json.dumps(plan), *job_args]


def submit_runtime_env() -> str:
    """The ``--runtime-env-json`` of ``ray job submit``: ``deploy/runtime_env.yaml`` plus this package as
    a ``py_modules`` entry (the deploy's runtime env leaves ``tests/`` out of the working dir)."""
    import yaml

    env = yaml.safe_load((ROOT / "deploy" / "runtime_env.yaml").read_text())
    env["py_modules"] = [str(Path(__file__).resolve().parent)]
    return json.dumps(env)


def main(argv: list[str] | None = None) -> int:
    import uiface_ray
    from uiface_ray.runtime.job import run_job
    from uiface_ray.synth.config import SynthesisConfig
    from uiface_ray.synth.faults import FaultInjectionConfig

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or not argv[0].startswith(FLAG):
        raise SystemExit(f"usage: {Path(__file__).name} {FLAG}JSON <jobs/synthesize.py arguments>")
    faults = FaultInjectionConfig.model_validate(json.loads(argv[0][len(FLAG) :]))
    path = Path(uiface_ray.__file__).resolve().parents[1] / "jobs" / "synthesize.py"
    spec = importlib.util.spec_from_file_location("_uiface_job_synthesize", path)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)  # jobs do no work at import
    return run_job(SynthesisConfig, functools.partial(job.body, faults=faults), argv[1:], job.__doc__)


if __name__ == "__main__":
    sys.exit(main())
