"""docs/CONFIG.md is current, and every job answers --help without doing any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from uiface_ray.config_reference import job_configs, render

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current():
    expected = render()
    current = (ROOT / "docs" / "CONFIG.md").read_text()
    assert current == expected, "docs/CONFIG.md is stale: run python -m uiface_ray.config_reference > docs/CONFIG.md"


def test_every_config_is_frozen_and_strict_with_descriptions():
    jobs = job_configs()
    assert len(jobs) >= 10
    seen = set()

    def walk(cls):
        if cls in seen:
            return
        seen.add(cls)
        assert cls.model_config.get("frozen") and cls.model_config.get("extra") == "forbid", cls
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"
            ann = field.annotation
            for sub in (ann, *getattr(ann, "__args__", ())):
                if isinstance(sub, type) and hasattr(sub, "model_fields"):
                    walk(sub)

    for _job, _doc, cls in jobs:
        walk(cls)


def test_job_help_runs_from_a_checkout():
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "synthesize.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    assert "--sampler.mode" in out.stdout and "--output" in out.stdout


def test_every_example_config_loads_into_its_job():
    """configs/<job>[_variant].yaml validates against jobs/<job>.py's config model."""
    from uiface_ray.cli import load_config

    by_job = {Path(job).stem: cls for job, _doc, cls in job_configs()}
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert files
    for path in files:
        job = max(
            (name for name in by_job if path.stem == name or path.stem.startswith(name + "_")), key=len, default=None
        )
        assert job, f"{path.name} matches no job in jobs/"
        load_config(by_job[job], path)


def test_every_config_has_one_home_in_a_config_module():
    """Job configs and the configs inside them live in modules named config.py (shared settings in
    uiface_ray/config.py), so a newcomer finds each in one place; no test hook is a config field."""
    import ast

    seen: set = set()

    def walk(cls):
        if cls in seen:
            return
        seen.add(cls)
        assert cls.__module__ == "uiface_ray.config" or cls.__module__.endswith(".config"), (
            f"{cls.__name__} is defined in {cls.__module__}, not in a config module"
        )
        for field in cls.model_fields.values():
            for sub in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(sub, type) and hasattr(sub, "model_fields"):
                    walk(sub)

    for _job, _doc, cls in job_configs():
        walk(cls)
    names = {c.__name__ for c in seen}
    assert "ActorPoolConfig" in names and "FaultInjectionConfig" not in names
    # no Config subclass is defined outside the config modules, except the synthesis test hook
    for path in (ROOT / "uiface_ray").rglob("*.py"):
        if path.name == "config.py" or path.name == "faults.py":
            continue
        tree = ast.parse(path.read_text())
        bases = [(n.name, ast.unparse(b)) for n in ast.walk(tree) if isinstance(n, ast.ClassDef) for b in n.bases]
        assert not [n for n, b in bases if b in ("Config", "BaseModel")], f"{path} defines a config class: {bases}"
