"""Config loading: YAML + overrides, errors naming the key and the file, --help."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field, ValidationError

from uiface_ray.cli import load_config, parse_args
from uiface_ray.config import Config, ConfigError, RayConfig, StorageConfig
from uiface_ray.runtime.job import run_job


class Inner(Config):
    """An inner section."""

    steps: int = Field(10, ge=1, description="How many steps.")
    lr: float = Field(1e-4, description="Learning rate.")


class Stage(Config):
    """A stage for tests."""

    name: str = Field(..., description="A required name.")
    mode: Literal["a", "b"] = Field("a", description="The mode.")
    inner: Inner = Field(default_factory=Inner, description="Inner section.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Storage.")


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "stage.yaml"
    path.write_text("name: x\ninner:\n  steps: 5\n")
    cfg = load_config(Stage, path, ["--inner.lr=1e-3", "--mode=b", "--ray.num_cpus=2"])
    assert cfg.name == "x" and cfg.inner.steps == 5 and cfg.inner.lr == pytest.approx(1e-3)
    assert cfg.mode == "b" and cfg.ray.num_cpus == 2


def test_frozen():
    cfg = load_config(Stage, None, ["name=y"])
    with pytest.raises(ValidationError):
        cfg.name = "z"  # type: ignore[misc]


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ninner:\n  stepz: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(Stage, path)
    msg = str(err.value)
    assert "inner.stepz" in msg and "unknown key" in msg and str(path) in msg


def test_ill_typed_override_names_key_and_source(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(Stage, path, ["--inner.steps=many"])
    msg = str(err.value)
    assert "inner.steps" in msg and "command line" in msg and "'many'" in msg


def test_ill_typed_yaml_value_names_file(tmp_path):
    path = tmp_path / "typed.yaml"
    path.write_text("name: x\nmode: c\n")
    with pytest.raises(ConfigError) as err:
        load_config(Stage, path)
    assert "mode" in str(err.value) and str(path) in str(err.value)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Stage, tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Stage, bad)
    with pytest.raises(ConfigError, match="required|Field required"):
        load_config(Stage, None)


def test_help_lists_fields(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(Stage, ["--help"], prog="jobs/stage.py")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for needle in ("--name", "A required name.", "--inner.steps", "How many steps.", "--ray.address", "usage:"):
        assert needle in out


def test_parse_args_forms_and_run_job(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\n")
    cfg = parse_args(Stage, ["--config", str(path), "--inner.steps", "3", "--mode=b"])
    assert cfg.inner.steps == 3 and cfg.mode == "b"
    seen = []
    assert run_job(Stage, seen.append, ["--config", str(path)]) == 0 and seen[0].name == "x"
    assert run_job(Stage, seen.append, ["--config", str(path), "--bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# bounded loading (issue 27 items 6 and 8)


@pytest.mark.parametrize("levels", [6, 9])
def test_yaml_alias_bomb_is_refused_small_and_fast(tmp_path, levels):
    import resource
    import time

    path = tmp_path / "bomb.yaml"
    from bad_inputs import _alias_bomb

    path.write_text(_alias_bomb(levels, key="name"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"expands to more than 100000 values") as err:
        load_config(Stage, path)
    assert time.perf_counter() - start < 5
    assert len(str(err.value)) < 300 and str(path) in str(err.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: no expansion happened


def test_small_alias_use_still_loads(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("name: &n x\ninner: &i {steps: 3}\n")
    assert load_config(Stage, path).inner.steps == 3


def test_config_file_size_and_depth_are_bounded(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# padding\n" * 120_000)
    with pytest.raises(ConfigError, match=r"big\.yaml is \d+ bytes: refusing more than 1048576"):
        load_config(Stage, big)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.yaml nests deeper"):
        load_config(Stage, deep)
    with pytest.raises(ConfigError, match=r"override --name nests deeper than 50"):
        load_config(Stage, None, ["--name=" + "[" * 60 + "]" * 60])


def test_echoed_values_are_cut(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(Stage, None, ["--name=x", "--inner.steps=" + "9" * 10 + "x" * 5000])
    msg = str(err.value)
    assert len(msg) < 400 and "\u2026" in msg and "inner.steps" in msg
    with pytest.raises(ConfigError) as err:
        parse_args(Stage, ["y" * 5000])
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", ".inf"])
def test_non_finite_floats_are_refused_in_every_config(value):
    with pytest.raises(ConfigError, match=r"inner\.lr: Input should be a finite number"):
        load_config(Stage, None, ["--name=x", f"--inner.lr={value}"])


def test_no_stays_a_word_and_bools_still_take_yes_no(tmp_path):
    """YAML 1.1 reads no/yes/on/off as booleans, so `--mixed_precision=no` (a tired user's spelling of
    the documented value 'no') was refused as `false`; only true/false are booleans now."""
    from uiface_ray.train.config import TrainConfig

    base = "configs/train_diffusion_tiny.yaml"
    assert load_config(TrainConfig, base, ["--mixed_precision=no"]).mixed_precision == "no"
    path = tmp_path / "c.yaml"
    path.write_text(open(base).read() + "\nmixed_precision: no\n")
    assert load_config(TrainConfig, path).mixed_precision == "no"
    for word, value in (("yes", True), ("no", False), ("on", True), ("off", False), ("false", False)):
        assert load_config(TrainConfig, base, [f"--data.hflip={word}"]).data.hflip is value
