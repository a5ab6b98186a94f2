"""Diffusion training on Ray Train: real LFW faces, 2 CPU workers, checkpoints on loopback S3."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from train_tables import write_face_table
from uiface_ray.model.bundle import load_model
from uiface_ray.model.unet import ModelConfig
from uiface_ray.runtime.train_diffusion import train_diffusion
from uiface_ray.storage.fs import list_files, read_bytes
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.loop import load_training_data, run_training
from uiface_ray.train.validate import TrainInputError


def tiny_train_config(table: str, output: str, **overrides) -> TrainConfig:
    values = dict(
        model=ModelConfig.tiny().model_dump(),
        data={"table": table},
        output=output,
        optim={"lr": 1e-3, "warmup_steps": 5},
        grid={"num_identities": 4, "num_seeds": 2, "num_inference_steps": 4},
        max_steps=40,
        batch_size=16,
        checkpoint_every=20,
        log_every=5,
        num_workers=2,
        seed=7,
    )
    values.update(overrides)
    return TrainConfig.model_validate(values)


@pytest.fixture(scope="module")
def table(lfw_dir, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("faces") / "faces.parquet"
    return write_face_table(str(path), lfw_dir, num_people=8, per_person=4)


def metrics_of(checkpoint: str) -> list[dict]:
    lines = read_bytes(checkpoint + "/metrics.jsonl").decode().splitlines()
    return [json.loads(line) for line in lines]


def check_finished_run(output: str, checkpoint: str, steps: list[int]) -> None:
    history = metrics_of(checkpoint)
    assert [m["step"] for m in history] == steps
    losses = [m["loss"] for m in history]
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses
    assert all(np.isfinite(m["images_per_s"]) and m["images_per_s"] > 0 for m in history)
    assert read_bytes(checkpoint + "/samples.png")[:8] == b"\x89PNG\r\n\x1a\n"
    model = load_model(checkpoint + "/model")
    assert model.info["encoder"]["kind"] == "random-test"


def test_ray_train_on_s3_crash_then_resume(ray_local, s3_bucket, table):
    """2 Ray Train workers (DDP) checkpoint to S3 and crash; the run resumes from the checkpoint."""
    output = f"{s3_bucket}/runs/tiny"
    small = dict(max_steps=16, checkpoint_every=8, log_every=4)
    with pytest.raises(Exception, match="simulated crash"):
        train_diffusion(tiny_train_config(table, output, fail_at_step=12, **small))
    latest = json.loads(read_bytes(output + "/latest.json"))
    assert latest["step"] == 8
    assert [m["step"] for m in metrics_of(latest["checkpoint"])] == [4, 8]
    # resume in-process (the same global batches; Ray start-up twice is too slow for the default suite)
    state = run_training(tiny_train_config(table, output, num_workers=1, **small))
    assert state.step == 16
    latest = json.loads(read_bytes(output + "/latest.json"))
    check_finished_run(output, latest["checkpoint"], [4, 8, 12, 16])
    names = [u.rsplit("/", 1)[-1] for u in list_files(output + "/checkpoints")]
    assert names == ["step-00000008", "step-00000016"]


@pytest.mark.slow
def test_ray_train_loss_falls_crash_and_resume(ray_local, s3_bucket, table):
    """Both pieces under Ray Train with 2 workers: 40 steps with a crash after step 30."""
    output = f"{s3_bucket}/runs/tiny40"
    with pytest.raises(Exception, match="simulated crash"):
        train_diffusion(tiny_train_config(table, output, fail_at_step=30))
    assert json.loads(read_bytes(output + "/latest.json"))["step"] == 20
    result = train_diffusion(tiny_train_config(table, output))
    assert (result.start_step, result.step) == (20, 40)
    check_finished_run(output, result.checkpoint, list(range(5, 45, 5)))


@pytest.mark.slow
def test_ray_train_two_workers_stop_and_resume_exactly(ray_local, table, tmp_path):
    """2 Ray Train workers, each fed its own Ray Data stream: 8 straight steps == 4 steps, crash after 6,
    resume from the step-4 checkpoint to 8: the same weights, EMA and losses, bit for bit."""
    from uiface_ray.train.checkpoint import load_train_state

    common = dict(max_steps=8, checkpoint_every=4, log_every=2, grid={"num_identities": 0})
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train_diffusion(tiny_train_config(table, a, **common))
    with pytest.raises(Exception, match="simulated crash"):
        train_diffusion(tiny_train_config(table, b, fail_at_step=6, **common))
    assert json.loads(read_bytes(b + "/latest.json"))["step"] == 4
    result = train_diffusion(tiny_train_config(table, b, **common))
    assert (result.start_step, result.step) == (4, 8)
    state_a, state_b = (load_train_state(json.loads(read_bytes(o + "/latest.json"))["checkpoint"]) for o in (a, b))
    for name, value in state_a["module"].items():
        torch.testing.assert_close(value, state_b["module"][name], rtol=0, atol=0, msg=name)
    torch.testing.assert_close(state_a["ema"], state_b["ema"], rtol=0, atol=0)
    assert [m["loss"] for m in state_a["metrics"]] == [m["loss"] for m in state_b["metrics"]]


FAMILIES = {
    "diffusers": {},
    # the release's UNet with its context dropout: the dropout masks come from the step's generator too
    "release": {"model": ModelConfig.tiny(unet="release").model_dump(), "diffusion": {"context_dropout": 0.25}},
}


@pytest.mark.parametrize("family", FAMILIES)
def test_resume_is_exact(family, table, tmp_path):
    """12 straight steps == 6 steps, crash, resume to 12: same weights (single process, no Ray)."""
    common = dict(num_workers=1, max_steps=12, checkpoint_every=6, log_every=3, grid={"num_identities": 0})
    common.update(FAMILIES[family])
    straight = tiny_train_config(table, str(tmp_path / "a"), **common)
    state_a = run_training(straight)
    pieces = tiny_train_config(table, str(tmp_path / "b"), fail_at_step=6, **common)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(pieces)
    state_b = run_training(pieces.model_copy(update={"fail_at_step": None}))
    for (name, a), b in zip(state_a.module.state_dict().items(), state_b.module.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(state_a.ema.shadow, state_b.ema.shadow, rtol=0, atol=0)
    assert state_a.lr_scheduler.state_dict() == state_b.lr_scheduler.state_dict()
    assert [m["loss"] for m in state_a.metrics] == [m["loss"] for m in state_b.metrics]


def test_stop_after_minutes_checkpoints_and_resumes(table, tmp_path):
    cfg = tiny_train_config(
        table,
        str(tmp_path / "p"),
        num_workers=1,
        max_steps=6,
        checkpoint_every=100,
        log_every=2,
        grid={"num_identities": 0},
        stop_after_minutes=1e-6,
    )
    assert run_training(cfg).step == 2
    assert json.loads((tmp_path / "p" / "latest.json").read_text())["step"] == 2
    assert run_training(cfg.model_copy(update={"stop_after_minutes": None})).step == 6
    assert json.loads((tmp_path / "p" / "latest.json").read_text())["step"] == 6


def test_reloaded_checkpoint_predicts_the_same(table, tmp_path):
    cfg = tiny_train_config(
        table, str(tmp_path / "r"), num_workers=1, max_steps=4, checkpoint_every=4, grid={"num_identities": 0}
    )
    state = run_training(cfg)
    from uiface_ray.train.loop import ema_model

    expected_model = ema_model(state)
    loaded = load_model(json.loads((tmp_path / "r" / "latest.json").read_text())["model"])
    data, _ = load_training_data(cfg)
    emb = torch.from_numpy(data.embeddings[:3])
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([5, 300, 900])
    with torch.no_grad():
        a = expected_model.unet(x, t, encoder_hidden_states=expected_model.context_encoder(emb)).sample
        b = loaded.unet(x, t, encoder_hidden_states=loaded.context_encoder(emb)).sample
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "no 'embedding' column"),
        ("nan", "NaN"),
        ("dim", "dimension 64, but model.embedding_dim is 128"),
    ],
)
def test_bad_tables_fail_before_training(case, match, lfw_dir, tmp_path):
    path = str(tmp_path / f"{case}.parquet")
    if case == "dim":
        write_face_table(path, lfw_dir, num_people=3, per_person=2, dim=64)
    else:
        write_face_table(path, lfw_dir, num_people=3, per_person=2, embedding=case)
    output = tmp_path / "out"
    with pytest.raises(TrainInputError, match=match):
        train_diffusion(tiny_train_config(path, str(output)))
    assert not output.exists() or not any(output.rglob("*.pt"))


def test_unreachable_output_and_foreign_run_keep_checkpoints(table, tmp_path, s3_server):
    with pytest.raises(TrainInputError, match="s3://no-such-bucket-h2/run"):
        train_diffusion(tiny_train_config(table, "s3://no-such-bucket-h2/run"))
    # an existing run of another model is not overwritten
    out = tmp_path / "run"
    cfg = tiny_train_config(table, str(out), num_workers=1, max_steps=2, checkpoint_every=2, grid={"num_identities": 0})
    run_training(cfg)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = tiny_train_config(table, str(out), model=ModelConfig.tiny(cross_attention_dim=64).model_dump())
    with pytest.raises(TrainInputError, match="cross_attention_dim"):
        train_diffusion(other)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_train_job_with_s3_only_in_the_config_leaks_no_secret(s3_server, s3_bucket, table, tmp_path):
    """The storage settings reach the Ray Train workers from the job's storage.* section alone (no AWS_*
    variable anywhere), and the secret appears in no file under Ray's temp folder nor in the run folder."""
    import os
    import subprocess
    import sys
    import tempfile
    import uuid
    from pathlib import Path

    import boto3
    import yaml

    root = Path(__file__).resolve().parents[1]
    secret = f"sk-{uuid.uuid4().hex}"
    output = f"{s3_bucket}/runs/cfg-only"
    cfg = tiny_train_config(table, output, max_steps=4, checkpoint_every=4, log_every=2, num_workers=1)
    config = cfg.model_dump(mode="json", exclude={"storage", "ray"})
    config["storage"] = {
        "endpoint_url": s3_server,
        "region": "us-east-1",
        "access_key_id": "cfg-key",
        "secret_access_key": secret,
    }
    config["ray"] = {"num_cpus": 2}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    tmp = tempfile.mkdtemp(prefix="uq", dir="/tmp")  # Ray's temp folder, short for its socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # RAY_TMPDIR: the embedded Ray keeps its session folder (logs) there for the search below
    env.update(TMPDIR=tmp, RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    try:
        run = subprocess.run(
            [sys.executable, "jobs/train_diffusion.py", "--config", str(tmp_path / "train.yaml")],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        assert json.loads(read_bytes(output + "/latest.json"))["step"] == 4
        assert secret not in run.stdout + run.stderr
        leaks = []
        for path in Path(tmp).rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    if secret.encode() in path.read_bytes():
                        leaks.append(str(path))
                except OSError:
                    pass
        assert leaks == [], leaks
        assert list(Path(tmp).rglob("session_*")), "the job's Ray did not keep its logs under RAY_TMPDIR"
        s3 = boto3.client("s3", endpoint_url=s3_server)
        bucket = s3_bucket.split("://", 1)[1]
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            assert secret.encode() not in s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read(), obj["Key"]
        assert not [p for p in Path(tmp).iterdir() if p.name.startswith("uiface-")]
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
