"""The release's UNet rebuilt (sizes, layout) and its checkpoints imported strictly."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

from uiface_ray.model import load_model
from uiface_ray.release.importer import build_official_model
from uiface_ray.release.checkpoint import (
    SCHEDULE_KEYS,
    release_schedule,
    release_state_dict,
    release_vq_state_dicts,
)
from uiface_ray.release.unet import OfficialUNet, official_unet_kwargs
from uiface_ray.model.context import ProjectedContextEncoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))
import import_official  # noqa: E402


def eps_of(model, seed: int = 3) -> torch.Tensor:
    """eps for one identity row and one c_e row at two timesteps."""
    c, h, w = model.latent_shape()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, h, w, generator=g)
    ident = torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=1)
    tokens = torch.cat([model.context_encoder(ident), model.context_encoder.empty_tokens(1)])
    with torch.no_grad():
        return model.unet(x, torch.tensor([17, 640]), encoder_hidden_states=tokens).sample


def write_release_files(
    folder: Path, seed: int = 0, name: str = "model_100.ckpt", prefix: str = "module.eps_model.", edit=None
) -> tuple:
    """A tiny model's weights written as the release writes them; returns (model, argv)."""
    model = build_official_model("tiny", seed=seed)
    with torch.no_grad():
        model.context_encoder.empty_context.add_(0.5)
    state = release_state_dict(model.unet, model.context_encoder, prefix=prefix)
    if edit is not None:
        edit(state)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / name)
    enc, dec = release_vq_state_dicts(model.autoencoder)
    torch.save(enc, folder / "first_stage_encoder_state_dict.pt")
    torch.save(dec, folder / "first_stage_decoder_state_dict.pt")
    argv = [
        f"--checkpoint={folder / name}",
        f"--vq_encoder={folder / 'first_stage_encoder_state_dict.pt'}",
        f"--vq_decoder={folder / 'first_stage_decoder_state_dict.pt'}",
        "--architecture=tiny",
    ]
    return model, argv


def test_full_size_architecture_matches_the_release_counts():
    kwargs = official_unet_kwargs()
    with torch.device("meta"):  # sizes and names only: no 866 MB of random weights
        unet, context = OfficialUNet(**kwargs), ProjectedContextEncoder(512, kwargs["cross_attention_dim"])
    params = sum(p.numel() for m in (unet, context) for p in m.parameters())
    assert params == 216_341_443  # measured on the release's own module (its yaml comment omits the 256-d c_e)
    assert params - context.empty_context.numel() == 216_341_187
    assert len(unet.state_dict()) + len(context.state_dict()) == 843
    state = release_state_dict(unet, context, prefix="", schedule=False)
    assert len(state) == 843
    # a few of the release's key names, verbatim
    for key in (
        "image_proj.weight",
        "time_emb.lin1.weight",
        "down.3.attn.cross_attention.proj_out.weight",
        "down.3.attn.c_proj_in.weight",
        "middle.attn.c_norm.weight",
        "up.2.res.norm2.norm.weight",
        "up.2.res.shortcut.weight",
        "down.2.conv.weight",
        "final.weight",
        "empty_context_embedding",
        "context_emb.weight",
        "down.3.attn.ff.2.bias",
        "middle.res2.scale_emb.weight",
    ):
        assert key in state, key
    assert state["down.3.attn.self_attention.to_q.weight"].shape == (192, 192, 1)  # Conv1d 1x1
    assert state["down.3.attn.c_proj_in.weight"].shape == (256 * 32, 256)
    assert state["up.2.res.shortcut.weight"].shape == (384, 768 + 384, 1, 1)  # last block of a level: skip from above
    assert state["up.3.conv.weight"].shape == (384, 384, 4, 4)  # transposed conv


def test_import_gives_the_same_eps_and_records_provenance(tmp_path, capsys):
    model, argv = write_release_files(tmp_path / "release")
    out = tmp_path / "bundle"
    assert import_official.main(argv + [f"--output={out}"]) == 0
    loaded = load_model(str(out))
    assert type(loaded.unet).__name__ == "OfficialUNet"
    torch.testing.assert_close(eps_of(loaded), eps_of(model), rtol=0, atol=0)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.decode_latents(loaded.encode_images(images)),
            model.decode_latents(model.encode_images(images)),
            rtol=0,
            atol=0,
        )
    official = loaded.info["official"]
    assert official["weights"] == "non_ema"
    assert official["sources"]["checkpoint"]["file"] == "model_100.ckpt"
    assert len(official["sources"]["vq_decoder"]["sha256"]) == 64
    assert official["release_sampling"]["MSE_th"] == 0.006
    assert "non_ema" in capsys.readouterr().out


def test_ema_and_non_ema_are_told_apart(tmp_path):
    ema, argv_ema = write_release_files(tmp_path / "r", seed=1, name="ema_averaged_model_100.ckpt")
    raw, argv_raw = write_release_files(tmp_path / "r2", seed=2, name="model_100.ckpt")
    assert import_official.main(argv_ema + [f"--output={tmp_path / 'ema'}"]) == 0
    assert import_official.main(argv_raw + [f"--output={tmp_path / 'raw'}"]) == 0
    got_ema, got_raw = load_model(str(tmp_path / "ema")), load_model(str(tmp_path / "raw"))
    assert got_ema.info["official"]["weights"] == "ema" and got_raw.info["official"]["weights"] == "non_ema"
    torch.testing.assert_close(eps_of(got_ema), eps_of(ema), rtol=0, atol=0)
    torch.testing.assert_close(eps_of(got_raw), eps_of(raw), rtol=0, atol=0)
    # an explicit choice that contradicts the file name is refused
    assert import_official.main(argv_ema + ["--weights=non_ema", f"--output={tmp_path / 'x'}"]) == 2
    assert not (tmp_path / "x").exists()


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _drop_one(state):
    state.pop(next(k for k in state if k.endswith("cross_attention.to_k.bias")))


def _add_one(state):
    state["module.eps_model.extra_head.weight"] = torch.zeros(3)


def _wrong_shape(state):
    key = next(k for k in state if k.endswith("image_proj.weight"))
    state[key] = torch.zeros(7, 3, 3, 3)


def _wrong_schedule(state):
    state["betas"] = state["betas"] * 2


@pytest.mark.parametrize(
    "edit, message",
    [
        (_drop_one, r"model_100.ckpt: 1 missing key.*cross_attention.to_k.bias"),
        (_add_one, r"model_100.ckpt: 1 unexpected key.*extra_head.weight"),
        (_wrong_shape, r"model_100.ckpt: key 'module.eps_model.image_proj.weight' has shape \(7, 3, 3, 3\), expected"),
        (_wrong_schedule, r"schedule buffer 'betas'"),
    ],
)
def test_bad_checkpoints_are_one_clear_error_and_write_nothing(tmp_path, capsys, edit, message):
    _, argv = write_release_files(tmp_path / "release", edit=edit)
    out = tmp_path / "bundle"
    assert import_official.main(argv + [f"--output={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    import re

    assert re.search(message, err), err
    assert not out.exists()


def test_a_pickle_that_runs_code_is_refused(tmp_path, capsys):
    _, argv = write_release_files(tmp_path / "release")
    evil = tmp_path / "release" / "model_100.ckpt"
    with open(evil, "wb") as f:
        pickle.dump({"w": RunsCode()}, f)
    assert import_official.main(argv + [f"--output={tmp_path / 'bundle'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused to load" in err and "model_100.ckpt" in err
    assert not (tmp_path / "bundle").exists()


def test_schedule_buffers_match_diffusers_linear_betas():
    from diffusers import DDIMScheduler

    ours = release_schedule()
    assert set(ours) == set(SCHEDULE_KEYS)
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    torch.testing.assert_close(ours["betas"], sched.betas, rtol=0, atol=0)
    torch.testing.assert_close(ours["alpha_bars"], sched.alphas_cumprod, rtol=1e-5, atol=1e-7)


def test_vq_f4_shapes():
    from uiface_ray.release.checkpoint import official_vq_model

    with torch.device("meta"), torch.no_grad():  # shapes only
        vq = official_vq_model()
        z = vq.encode(torch.zeros(1, 3, 128, 128)).latents
        assert z.shape == (1, 3, 32, 32)
        assert vq.decode(z).sample.shape == (1, 3, 128, 128)
    assert vq.quantize.embedding.weight.shape == (8192, 3)
    assert vq.config.block_out_channels == (128, 256, 512) and vq.config.scaling_factor == 1.0


def test_missing_file_and_bad_vq_half_are_named(tmp_path, capsys):
    _, argv = write_release_files(tmp_path / "release")
    missing = [a if not a.startswith("--vq_encoder") else f"--vq_encoder={tmp_path / 'nope.pt'}" for a in argv]
    assert import_official.main(missing + [f"--output={tmp_path / 'b1'}"]) == 2
    assert "nope.pt: no such file" in capsys.readouterr().err
    decoder = tmp_path / "release" / "first_stage_decoder_state_dict.pt"
    state = torch.load(decoder, weights_only=True)
    state.pop("decoder.up.1.upsample.conv.weight")
    torch.save(state, decoder)
    assert import_official.main(argv + [f"--output={tmp_path / 'b2'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "first_stage_decoder_state_dict.pt: 1 missing key(s)" in err and "decoder.up.1.upsample.conv.weight" in err
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()
