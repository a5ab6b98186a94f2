"""The paper's training path (issue 24 item 2): the release's UNet family trainable through
``build_model``, its context behaviour in training (projected context, context dropout, the learnable
empty context for p_uncond), export to the release's own files, and the CLI chain autoencoder ->
latent diffusion (both UNet families) -> identities -> synthesis from a folder with relative paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from train_tables import write_face_table
from uiface_ray.model.bundle import load_model, save_model
from uiface_ray.model.config import ModelConfig
from uiface_ray.release.config import ReleaseExportConfig
from uiface_ray.model.context import IdentityContextEncoder, ProjectedContextEncoder
from uiface_ray.release.checkpoint import release_state_dict
from uiface_ray.release.unet import OfficialUNet
from uiface_ray.model.unet import build_model
from uiface_ray.train.config import DiffusionConfig, TrainConfig
from uiface_ray.train.objective import DiffusionModule, diffusion_loss, draw_step_noise

ROOT = Path(__file__).resolve().parents[1]


def release_tiny(**overrides) -> ModelConfig:
    return ModelConfig.tiny(unet="release", **overrides)


# ---------------------------------------------------------------------------------------------
# build_model and the training context


def test_release_family_builds_trainable_and_round_trips_the_bundle(tmp_path):
    assert ModelConfig().unet == "diffusers"  # today's default family stays
    model = build_model(release_tiny(), seed=3)
    assert isinstance(model.unet, OfficialUNet) and isinstance(model.context_encoder, ProjectedContextEncoder)
    assert model.latent_shape() == (3, 16, 16)
    assert model.unet.config.base_channels == 32 and model.context_encoder.cross_attention_dim == 32
    # the release's initialisation: every block starts as the identity, eps starts at 0
    assert model.unet.final.weight.abs().sum() == 0
    assert all(b.conv2.weight.abs().sum() == 0 for b in model.unet.modules() if hasattr(b, "conv2"))
    assert all(p.requires_grad for p in model.unet.parameters())
    again = build_model(release_tiny(), seed=3)
    for a, b in zip(model.unet.state_dict().values(), again.unet.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # weights depend only on the seed
    save_model(model, str(tmp_path / "m"))
    loaded = load_model(str(tmp_path / "m"))
    assert isinstance(loaded.unet, OfficialUNet) and isinstance(loaded.context_encoder, ProjectedContextEncoder)
    assert loaded.info["model_config"]["unet"] == "release"
    assert isinstance(build_model(ModelConfig.tiny()).context_encoder, IdentityContextEncoder)


def test_release_sizes_are_checked_with_the_field_named():
    with pytest.raises(ValueError, match="release.attention_levels needs 2"):
        release_tiny(release={"channel_multipliers": (1, 2), "attention_levels": (True,)})
    with pytest.raises(ValueError, match="head_channels"):
        release_tiny(release={"base_channels": 48, "channel_multipliers": (1, 2), "attention_levels": (False, True)})
    with pytest.raises(ValueError, match="cross_attention_dim 40"):
        release_tiny(cross_attention_dim=40)
    with pytest.raises(ValueError, match="context_dropout=0.25 needs model.unet=release"):
        TrainConfig(model=ModelConfig.tiny(), data={"table": "t"}, output="o", diffusion={"context_dropout": 0.25})


class _Capture(torch.nn.Module):
    """A stand-in UNet that records the context it is given and returns zeros."""

    def __init__(self):
        super().__init__()
        self.seen = None
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, noisy, timesteps, encoder_hidden_states):
        self.seen = encoder_hidden_states

        class Out:
            sample = noisy * self.scale + encoder_hidden_states.sum() * 0

        return Out()


def test_dropped_rows_get_the_learnable_empty_context_after_the_projection():
    """p_uncond replaces the projected identity by c_e (D-dimensional, as the release's
    empty_context_embedding); context dropout scales the other rows' elements and never touches c_e."""
    encoder = ProjectedContextEncoder(8, 32)
    unet = _Capture()
    module = DiffusionModule(unet, encoder)
    emb = torch.randn(3, 8)
    drop = torch.tensor([True, False, True])
    noisy = torch.randn(3, 3, 4, 4)
    module(noisy, torch.zeros(3, dtype=torch.long), emb, drop)
    projected = encoder(emb)  # (3, 1, 32)
    torch.testing.assert_close(unet.seen[0, 0], encoder.empty_context.detach(), rtol=0, atol=0)
    torch.testing.assert_close(unet.seen[2, 0], encoder.empty_context.detach(), rtol=0, atol=0)
    torch.testing.assert_close(unet.seen[1], projected[1].detach(), rtol=0, atol=0)
    keep = torch.tensor([[0.0, 2.0] * 16] * 3)
    module(noisy, torch.zeros(3, dtype=torch.long), emb, drop, keep)
    torch.testing.assert_close(unet.seen[1, 0], projected[1, 0].detach() * keep[1], rtol=0, atol=0)
    torch.testing.assert_close(unet.seen[0, 0], encoder.empty_context.detach(), rtol=0, atol=0)
    # c_e is learned: the loss of a dropped row reaches it
    unet.seen.sum().backward()
    assert encoder.empty_context.grad is not None and encoder.empty_context.grad.abs().sum() > 0


def test_context_dropout_draws_from_the_step_generator_only_when_asked():
    from diffusers import DDPMScheduler

    model = build_model(release_tiny(), seed=0)
    module = DiffusionModule(model.unet, model.context_encoder)
    scheduler = DDPMScheduler.from_config(model.scheduler_config)
    x0, emb = torch.randn(4, 3, 16, 16), torch.randn(4, 128)
    losses = []
    for p in (0.0, 0.5, 0.5):
        draws = draw_step_noise((4, 3, 16, 16), 1000, 0.2, torch.Generator().manual_seed(1))
        with torch.no_grad():
            loss = diffusion_loss(module, scheduler, x0, emb, draws, DiffusionConfig(context_dropout=p))
        losses.append(float(loss))
    assert losses[1] == losses[2]  # same step seed, same masks (a resumed run draws the same)
    a = draw_step_noise((4, 3, 8, 8), 1000, 0.2, torch.Generator().manual_seed(5))
    b = draw_step_noise((4, 3, 8, 8), 1000, 0.2, torch.Generator().manual_seed(5))
    torch.rand(3, generator=b.generator)  # a later draw leaves the step's own draws alone
    torch.testing.assert_close(a.noise, b.noise, rtol=0, atol=0)


@pytest.mark.parametrize("precision", ["bf16", "auto"])
def test_release_family_trains_on_cpu_in_bf16_and_auto(precision, lfw_dir, tmp_path):
    from uiface_ray.train.loop import run_training

    table = write_face_table(str(tmp_path / "faces.parquet"), lfw_dir, num_people=2, per_person=2)
    cfg = TrainConfig.model_validate(
        dict(
            model=release_tiny().model_dump(),
            data={"table": table},
            output=str(tmp_path / "run"),
            diffusion={"context_dropout": 0.25},
            grid={"num_identities": 1, "num_seeds": 1, "num_inference_steps": 2},
            max_steps=2,
            batch_size=4,
            checkpoint_every=2,
            log_every=1,
            mixed_precision=precision,
        )
    )
    state = run_training(cfg)
    if precision == "bf16":
        assert state.precision.autocast == torch.bfloat16
    assert state.step == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in state.metrics)
    assert all(p.dtype == torch.float32 for p in state.module.parameters())  # autocast only
    latest = json.loads((tmp_path / "run" / "latest.json").read_text())
    assert isinstance(load_model(latest["model"]).unet, OfficialUNet)


def test_an_unknown_unet_family_is_one_error_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("train_diffusion_job", ROOT / "jobs" / "train_diffusion.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    code = job.main(["--data.table=faces.parquet", "--output=run", "--model.unet=unet3"])
    err = capsys.readouterr().err.strip().splitlines()
    # one error: line; a config error lists its keys indented below it (as every job does)
    assert code == 2 and [ln for ln in err if ln.startswith("error: ")] == [err[0]], err
    assert all(ln.startswith("  ") for ln in err[1:]) and "Traceback" not in "".join(err), err
    assert any("model.unet" in ln and "'diffusers' or 'release'" in ln and "unet3" in ln for ln in err), err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# export to the release's files


def release_layout(base, mults, attention, blocks, context_dim, embedding_dim, head, in_channels=3) -> dict:
    """{key: shape} of the release's ConditionalUNet state dict (condition_type CA, learnable empty
    context), written out from its models/diffusion/unet.py and nn.py independently of our module."""
    out: dict[str, tuple] = {}
    temb = 4 * base

    def lin(key, o, i):
        out[f"{key}.weight"], out[f"{key}.bias"] = (o, i), (o,)

    def conv(key, o, i, k):
        out[f"{key}.weight"], out[f"{key}.bias"] = (o, i, k, k), (o,)

    def conv1d(key, o, i):
        out[f"{key}.weight"], out[f"{key}.bias"] = (o, i, 1), (o,)

    def norm(key, c):
        out[f"{key}.weight"], out[f"{key}.bias"] = (c,), (c,)

    def res(key, i, o):
        norm(f"{key}.norm1", i), conv(f"{key}.conv1", o, i, 3), lin(f"{key}.time_emb.1", o, temb)
        lin(f"{key}.scale_emb", o, o), lin(f"{key}.shift_emb", o, o), norm(f"{key}.norm2.norm", o)
        conv(f"{key}.conv2", o, o, 3)
        if i != o:
            conv(f"{key}.shortcut", o, i, 1)

    def attn(key, c):
        conv(f"{key}.x_proj_in", c, c, 1), conv(f"{key}.x_proj_out", c, c, 1)
        for part, kv in (("self_attention", c), ("cross_attention", context_dim)):
            conv1d(f"{key}.{part}.to_q", c, c), conv1d(f"{key}.{part}.to_k", c, kv)
            conv1d(f"{key}.{part}.to_v", c, kv), conv1d(f"{key}.{part}.proj_out", c, c)
        lin(f"{key}.c_proj_in", context_dim * head, context_dim)
        norm(f"{key}.x_norm", c), norm(f"{key}.c_norm", context_dim)
        lin(f"{key}.ff.0", 4 * c, c), lin(f"{key}.ff.2", c, 4 * c)

    conv("image_proj", base, in_channels, 3), lin("time_emb.lin1", temb, base), lin("time_emb.lin2", temb, temb)
    lin("context_emb", context_dim, embedding_dim)
    out["empty_context_embedding"] = (context_dim,)
    n, c = 0, base
    for level, mult in enumerate(mults):
        o = c * mult
        for _ in range(blocks):
            res(f"down.{n}.res", c, o)
            if attention[level]:
                attn(f"down.{n}.attn", o)
            n, c = n + 1, o
        if level < len(mults) - 1:
            conv(f"down.{n}.conv", c, c, 3)
            n += 1
    res("middle.res1", c, c), attn("middle.attn", c), res("middle.res2", c, c)
    n = 0
    for level in reversed(range(len(mults))):
        for o in [c] * blocks + [c // mults[level]]:
            res(f"up.{n}.res", c + o, o)
            if attention[level]:
                attn(f"up.{n}.attn", o)
            n += 1
        c = c // mults[level]
        if level > 0:
            out[f"up.{n}.conv.weight"], out[f"up.{n}.conv.bias"] = (c, c, 4, 4), (c,)
            n += 1
    norm("norm", base), conv("final", in_channels, base, 3)
    return out


SCHEDULE = (
    "betas alphas sigmas sqrt_alphas_inv alpha_bars sqrt_alpha_bars sqrt_one_minus_alpha_bars "
    "one_minus_alphas_over_sqrt_one_minus_alpha_bars"
).split()


def test_the_layout_above_is_the_published_216m_model():
    """The published config (unet_cond_ca_cpd25_uncond20.yaml) states 216341187 parameters, without
    the 256-d learnable empty context (tests/test_official_import.py measures 216341443 with it)."""
    keys = release_layout(96, (1, 2, 2, 2), (False, True, True, True), 2, 256, 512, 32)
    total = sum(int(torch.tensor(s).prod()) for s in keys.values())
    assert total - 256 == 216341187
    with torch.device("meta"):  # names and shapes only
        model = build_model(ModelConfig(unet="release", image_size=32, embedding_dim=512, cross_attention_dim=256))
    ours = release_state_dict(model.unet, model.context_encoder, prefix="", schedule=False)
    assert {k: tuple(v.shape) for k, v in ours.items()} == keys  # build_model's release family is that model


def _official_tiny_latent_model(tmp_path: Path):
    """A release-family model at the sizes of import_official's tiny architecture, VQ-f4 latents."""
    from uiface_ray.release.checkpoint import official_vq_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        official_vq_model(32, (32, 32, 64), 64).save_pretrained(tmp_path / "vq")
    cfg = ModelConfig.tiny(
        unet="release",
        space="latent",
        autoencoder=str(tmp_path / "vq"),
        image_size=32,
        embedding_dim=512,
        latent_scaling_factor=1.0,
    )
    model = build_model(cfg, {"kind": "iresnet", "dim": 512, "fingerprint": ""}, seed=1)
    with torch.no_grad():  # trained-looking weights: no zero blocks
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_export_writes_the_release_format_and_imports_back_to_the_same_eps(tmp_path):
    from uiface_ray.release.config import OfficialImportConfig
    from uiface_ray.release.importer import import_official
    from uiface_ray.release.exporter import export_release

    model = _official_tiny_latent_model(tmp_path)
    bundle = str(tmp_path / "run" / "checkpoints" / "step-00000004" / "model")
    save_model(model, bundle)
    result = export_release(ReleaseExportConfig(model=bundle, output=str(tmp_path / "release")))
    out = tmp_path / "release"
    assert sorted(p.name for p in out.iterdir()) == sorted(result.files)
    state = torch.load(out / "ema_averaged_model_4.ckpt", map_location="cpu", weights_only=True)
    unet_keys = {k[len("eps_model.") :]: tuple(v.shape) for k, v in state.items() if k.startswith("eps_model.")}
    assert unet_keys == release_layout(32, (1, 2), (False, True), 1, 32, 512, 16)
    assert sorted(k for k in state if not k.startswith("eps_model.")) == sorted(SCHEDULE)
    assert all(state[k].shape == (1000,) for k in SCHEDULE)
    config = yaml.safe_load((out / "unet_config.yaml").read_text())
    assert config["initial_channels"] == 32 and config["context_channels"] == 32 and config["learn_empty_context"]
    record = json.loads((out / "export.json").read_text())
    assert record["vq_release_compatible"] is False and record["vq_ddconfig"]["n_embed"] == 64  # release: 8192
    # the release's own VQ layout (LDM Encoder/Decoder, strict load there)
    enc = torch.load(out / "first_stage_encoder_state_dict.pt", weights_only=True)
    dec = torch.load(out / "first_stage_decoder_state_dict.pt", weights_only=True)
    assert enc["encoder.conv_in.weight"].shape == (32, 3, 3, 3) and enc["quant_conv.weight"].shape == (3, 3, 1, 1)
    assert dec["quantize.embedding.weight"].shape == (64, 3) and "decoder.up.0.block.2.conv1.weight" in dec
    imported = import_official(
        OfficialImportConfig(
            checkpoint=str(out / "ema_averaged_model_4.ckpt"),
            vq_encoder=str(out / "first_stage_encoder_state_dict.pt"),
            vq_decoder=str(out / "first_stage_decoder_state_dict.pt"),
            output=str(tmp_path / "imported"),
            architecture="tiny",
        )
    )
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    emb = torch.nn.functional.normalize(torch.randn(2, 512, generator=torch.Generator().manual_seed(1)), dim=1)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        ours = model.unet(x, t, encoder_hidden_states=model.context_encoder(emb)).sample
        back = imported.unet(x, t, encoder_hidden_states=imported.context_encoder(emb)).sample
        torch.testing.assert_close(back, ours, rtol=0, atol=0)
        torch.testing.assert_close(imported.context_encoder.empty_tokens(1), model.context_encoder.empty_tokens(1))
        torch.testing.assert_close(imported.decode_latents(x), model.decode_latents(x), rtol=0, atol=0)


def test_export_refuses_what_the_release_cannot_hold(tmp_path):
    from uiface_ray.release.exporter import ReleaseExportError, export_release

    save_model(build_model(ModelConfig.tiny()), str(tmp_path / "diffusers"))
    with pytest.raises(ReleaseExportError, match="only model.unet=release"):
        export_release(ReleaseExportConfig(model=str(tmp_path / "diffusers"), output=str(tmp_path / "o")))
    save_model(build_model(release_tiny(beta_schedule="scaled_linear")), str(tmp_path / "sched"))
    with pytest.raises(ReleaseExportError, match="beta_schedule"):  # nothing written either time
        export_release(ReleaseExportConfig(model=str(tmp_path / "sched"), output=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# the CLI chain, as a user runs it


def _tiny_yaml(name: str, **paths) -> dict:
    cfg = yaml.safe_load((ROOT / "configs" / name).read_text())
    for dotted, value in paths.items():
        *head, last = dotted.split("__")
        node = cfg
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return cfg


@pytest.mark.slow
def test_the_paper_chain_runs_from_the_cli_with_relative_paths(lfw_dir, tmp_path):
    """train_autoencoder (tiny VQ-f4) -> train_diffusion with each UNet family -> make_identities ->
    synthesize -> export_release, each ``python jobs/<stage>.py`` from a folder that is not the
    repository, every path relative to it, the configs the repository's tiny twins."""
    from test_boundary import _job
    from uiface_ray.synth.manifest import read_manifest

    work = tmp_path / "work"
    work.mkdir()
    write_face_table(str(work / "faces.parquet"), lfw_dir, num_people=4, per_person=2)
    ray_tmp = tempfile.mkdtemp(prefix="ub", dir="/tmp")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    try:
        ae = _tiny_yaml("train_autoencoder_paper_tiny.yaml", table="faces.parquet", output="vq")
        _job(work, "train_autoencoder", ae, env)
        assert json.loads((work / "vq" / "config.json").read_text())["_class_name"] == "VQModel"
        models = {}
        for family in ("release", "diffusers"):
            cfg = _tiny_yaml(
                "train_diffusion_paper_tiny.yaml",
                model__unet=family,
                model__autoencoder="vq",
                data__table="faces.parquet",
                output=f"run_{family}",
            )
            if family == "diffusers":
                cfg["diffusion"]["context_dropout"] = 0.0
            _job(work, "train_diffusion", cfg, env)
            latest = json.loads((work / f"run_{family}" / "latest.json").read_text())
            models[family] = os.path.relpath(latest["model"], work)
            assert latest["step"] == cfg["max_steps"]
        assert type(load_model(str(work / models["release"])).unet).__name__ == "OfficialUNet"
        assert type(load_model(str(work / models["diffusers"])).unet).__name__ == "UNet2DConditionModel"
        ids = {"model": models["release"], "output": "ids.parquet", "num_identities": 2, "similarity_threshold": 0.999}
        ids.update(candidates_per_task=2, max_candidates=8, num_inference_steps=2, actors={"num_actors": 1})
        _job(work, "make_identities", ids, env)
        synth = {"model": models["release"], "identities": "ids.parquet", "output": "synthetic"}
        synth.update(images_per_identity=2, identities_per_shard=1, batch_size=2, actors={"num_actors": 1})
        synth["sampler"] = {"num_inference_steps": 2}
        _job(work, "synthesize", synth, env)
        assert read_manifest(str(work / "synthetic")).num_rows == 4
        export = [sys.executable, str(ROOT / "jobs" / "export_release.py"), f"--model={models['release']}"]
        run = subprocess.run([*export, "--output=release"], cwd=work, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        assert (work / "release" / "unet_config.yaml").is_file()  # no Ray: the export reads and writes files
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_the_paper_config_is_the_papers_settings():
    """configs/train_diffusion_paper.yaml: VQ-f4 3x32x32 latents of 128x128 images, the release UNet
    at its published size, Adam 1e-4, EMA, p_uncond 0.2, batch 64; relative paths only."""
    raw = (ROOT / "configs" / "train_diffusion_paper.yaml").read_text()
    cfg = TrainConfig.model_validate(yaml.safe_load(raw))
    assert cfg.model.unet == "release" and cfg.model.release == ModelConfig().release
    assert (cfg.model.image_size, cfg.model.space, cfg.model.latent_scaling_factor) == (128, "latent", 1.0)
    assert (cfg.model.embedding_dim, cfg.model.cross_attention_dim) == (512, 256)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.batch_size) == (1e-4, 0.0, 64)
    assert (cfg.diffusion.p_uncond, cfg.diffusion.context_dropout, cfg.diffusion.ema_decay) == (0.2, 0.25, 0.999)
    ae = yaml.safe_load((ROOT / "configs" / "train_autoencoder_paper.yaml").read_text())
    assert ae["kind"] == "vq" and len(ae["block_out_channels"]) == 3 and ae["latent_channels"] == 3  # f4, 3 ch
    assert ae["image_size"] // 4 == 32
    for text in (raw, (ROOT / "configs" / "train_diffusion_paper_tiny.yaml").read_text()):
        assert "/work" not in text and "/home" not in text and "out/" in text


def test_a_run_from_before_the_unet_field_resumes_as_the_diffusers_family(lfw_dir, tmp_path):
    from uiface_ray.train.loop import run_training
    from uiface_ray.train.validate import TrainInputError, validate_run

    table = write_face_table(str(tmp_path / "faces.parquet"), lfw_dir, num_people=2, per_person=2)
    values = dict(data={"table": table}, output=str(tmp_path / "run"), grid={"num_identities": 0})
    values.update(max_steps=1, batch_size=2, checkpoint_every=1, log_every=1)
    cfg = TrainConfig.model_validate({**values, "model": ModelConfig.tiny().model_dump()})
    run_training(cfg)
    latest_file = tmp_path / "run" / "latest.json"
    latest = json.loads(latest_file.read_text())
    for key in ("unet", "release"):  # as written before the field existed
        del latest["model_config"][key]
    latest_file.write_text(json.dumps(latest))
    assert validate_run(cfg.model_copy(update={"max_steps": 2})).start_step == 1
    release = TrainConfig.model_validate({**values, "max_steps": 2, "model": release_tiny().model_dump()})
    with pytest.raises(TrainInputError, match=r"different model \(model fields differ: \[.release., .unet.\]"):
        validate_run(release)


def test_the_paper_autoencoder_config_builds_the_releases_vq_f4():
    """configs/train_autoencoder_paper.yaml makes a VQModel with the release's LDM VQ-f4 layout (every
    weight's name and shape), and 3-channel latents at a quarter of the side: 128x128 -> 3x32x32."""
    from diffusers import VQModel

    from uiface_ray.release.checkpoint import official_vq_model
    from uiface_ray.train.autoencoder import build_autoencoder
    from uiface_ray.train.config import AutoencoderTrainConfig

    raw = yaml.safe_load((ROOT / "configs" / "train_autoencoder_paper.yaml").read_text())
    with torch.device("meta"):  # names and shapes only
        ours, release = build_autoencoder(AutoencoderTrainConfig(**raw)), official_vq_model(128)
    assert isinstance(ours, VQModel)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in release.state_dict().items()}
    tiny = yaml.safe_load((ROOT / "configs" / "train_autoencoder_paper_tiny.yaml").read_text())
    with torch.no_grad():
        latents = build_autoencoder(AutoencoderTrainConfig(**tiny)).encode(torch.zeros(1, 3, 16, 16)).latents
    assert latents.shape == (1, 3, 4, 4)
