"""IResNet backbones: the insightface key layout, checkpoint round trips and checkpoint errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from uiface_ray.encoders import (
    CheckpointError,
    EncoderConfig,
    IResNetEncoder,
    build_iresnet,
    load_encoder,
)
from uiface_ray.storage import exists, write_bytes_atomic


def standard_iresnet_keys(layers: tuple[int, int, int, int]) -> set[str]:
    """The insightface/ElasticFace state-dict names, written out from the documented layout."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "prelu.weight", "fc.weight", "fc.bias"}
    keys |= {f"bn1.{s}" for s in bn} | {f"bn2.{s}" for s in bn} | {f"features.{s}" for s in bn}
    for k, blocks in enumerate(layers, start=1):
        for i in range(blocks):
            p = f"layer{k}.{i}"
            keys |= {f"{p}.conv1.weight", f"{p}.conv2.weight", f"{p}.prelu.weight"}
            keys |= {f"{p}.{b}.{s}" for b in ("bn1", "bn2", "bn3") for s in bn}
        keys |= {f"layer{k}.0.downsample.0.weight"} | {f"layer{k}.0.downsample.1.{s}" for s in bn}
    return keys


def _randomised(depth: int, seed: int = 0) -> torch.nn.Module:
    """A model whose BN statistics are not the identity, so a lost buffer changes the output."""
    gen = torch.Generator().manual_seed(seed)
    model = build_iresnet(depth)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
    return model.eval()


def _faces(n: int, size: int = 112, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("depth,layers", [(18, (2, 2, 2, 2)), (50, (3, 4, 14, 3))])
def test_state_dict_matches_insightface_layout(depth, layers):
    model = build_iresnet(depth)
    assert set(model.state_dict()) == standard_iresnet_keys(layers)
    assert model.fc.in_features == 512 * 7 * 7 and model.fc.out_features == 512
    with torch.no_grad():
        out = model.eval()(torch.zeros(2, 3, 112, 112))
    assert out.shape == (2, 512)


def test_bad_depth_and_input_shape():
    with pytest.raises(ValueError, match="depth must be one of"):
        build_iresnet(42)
    with pytest.raises(ValueError, match=r"\(B, 3, 112, 112\)"):
        build_iresnet(18)(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_checkpoint_round_trip_same_embedding(tmp_path, fmt):
    model = _randomised(18)
    path = tmp_path / f"backbone.{fmt}"
    # Saved as by DataParallel training: every key under 'module.'.
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    if fmt == "pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    encoder = load_encoder(EncoderConfig(kind="iresnet", path=str(path), depth=18, batch_size=3))
    assert isinstance(encoder, IResNetEncoder)
    assert encoder.dim == 512 and len(encoder.fingerprint) == 12

    faces = _faces(5)
    got = encoder.embed(faces)
    with torch.no_grad():
        x = (torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
        ref = model(x).numpy()
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert got.dtype == np.float32 and got.shape == (5, 512)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # Different images give different embeddings (the model is not degenerate).
    assert np.abs(got[0] - got[1]).max() > 1e-3


def test_fingerprint_follows_the_weights(tmp_path):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save(_randomised(18, seed=0).state_dict(), a)
    torch.save(_randomised(18, seed=1).state_dict(), b)
    fa = load_encoder({"kind": "iresnet", "path": str(a), "depth": 18}).fingerprint
    fa2 = load_encoder({"kind": "iresnet", "path": str(a), "depth": 18}).fingerprint
    fb = load_encoder({"kind": "iresnet", "path": str(b), "depth": 18}).fingerprint
    assert fa == fa2 and fa != fb


def test_other_sizes_are_resized(tmp_path):
    path = tmp_path / "m.pth"
    torch.save(_randomised(18).state_dict(), path)
    encoder = load_encoder(EncoderConfig(kind="iresnet", path=str(path), depth=18))
    out = encoder.embed(_faces(2, size=64))
    assert out.shape == (2, 512) and np.isfinite(out).all()


def test_missing_and_unexpected_keys_name_the_file(tmp_path):
    state = _randomised(18).state_dict()
    state.pop("layer2.1.conv1.weight")
    state["head.kernel"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_encoder(EncoderConfig(kind="iresnet", path=str(path), depth=18))
    msg = str(err.value)
    assert str(path) in msg
    assert "missing keys: layer2.1.conv1.weight" in msg
    assert "unexpected keys: head.kernel" in msg


def test_wrong_depth_is_a_key_error(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_randomised(18).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"r18\.pth does not match IResNet-34.*missing keys: layer1\.2\."):
        load_encoder(EncoderConfig(kind="iresnet", path=str(path), depth=34))


def test_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    with pytest.raises(CheckpointError, match="refusing checkpoint .*evil.pth: .*could run code"):
        load_encoder(EncoderConfig(kind="iresnet", path=str(path), depth=18))


def test_missing_path_and_file(tmp_path):
    with pytest.raises(ValueError, match="encoder.path is required"):
        load_encoder(EncoderConfig(kind="iresnet", depth=18))
    with pytest.raises(OSError, match="not found: .*nothing.pth"):
        load_encoder(EncoderConfig(kind="iresnet", path=str(tmp_path / "nothing.pth"), depth=18))


def test_checkpoint_from_s3(s3_bucket, tmp_path):
    import io

    model = _randomised(18)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    url = f"{s3_bucket}/models/backbone.pth"
    write_bytes_atomic(url, buf.getvalue())
    assert exists(url)
    encoder = load_encoder(EncoderConfig(kind="iresnet", path=url, depth=18))
    faces = _faces(2)
    with torch.no_grad():
        ref = model((torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5).numpy()
    np.testing.assert_allclose(encoder.embed(faces), ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)


def _scaled_keys_and_shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("size,width", [(32, 0.5), (64, 1.0), (112, 0.5)])
def test_input_sized_backbones_keep_the_layout_and_load_as_encoders(tmp_path, size, width):
    """Backbones for 32, 64 and 112 px with a width multiplier: insightface's key names, an fc sized
    for the input (side / 16 squared), and a checkpoint that loads as an encoder without being told
    its size or width."""
    gen = torch.Generator().manual_seed(0)
    model = build_iresnet(18, 64, input_size=size, width=width)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
    model.eval()
    assert set(model.state_dict()) == standard_iresnet_keys((2, 2, 2, 2))
    top = int(512 * width)
    assert model.conv1.out_channels == int(64 * width) and model.bn2.num_features == top
    assert model.fc.in_features == top * (size // 16) ** 2
    path = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    encoder = load_encoder(EncoderConfig(kind="iresnet", path=str(path), depth=18, embedding_dim=64))
    assert encoder.model.input_size == size and _scaled_keys_and_shapes(encoder.model) == _scaled_keys_and_shapes(model)
    faces = _faces(3, size=size)
    with torch.no_grad():
        ref = model((torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5).numpy()
    np.testing.assert_allclose(encoder.embed(faces), ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    assert encoder.embed(_faces(2, size=112)).shape == (2, 64)  # other sizes are resized to the input


def test_insightface_shapes_at_112_and_bad_sizes():
    from uiface_ray.encoders.iresnet import iresnet_geometry

    standard = build_iresnet(50)
    assert iresnet_geometry(standard.state_dict()) == (112, 1.0)
    assert _scaled_keys_and_shapes(build_iresnet(50, input_size=112, width=1.0)) == _scaled_keys_and_shapes(standard)
    with pytest.raises(ValueError, match="multiple of 16"):
        build_iresnet(18, input_size=40)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        build_iresnet(18, input_size=32)(torch.zeros(1, 3, 112, 112))
    state = build_iresnet(18, 32, input_size=32).state_dict()
    state["fc.weight"] = torch.zeros(32, 513)
    with pytest.raises(CheckpointError, match="fit no IResNet input size"):
        iresnet_geometry(state, "odd.pth")
