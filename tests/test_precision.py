"""The precision decision (issue 25, item 1): a pure function of a faked capability record."""

from __future__ import annotations

import pytest
import torch

from uiface_ray.precision import Capability, decide, detect, resolve

PLAIN = Capability(frozenset({"avx2", "fma"}))
AVX512_BF16 = Capability(frozenset({"avx512f", "avx512_bf16"}))
AMX = Capability(frozenset({"amx_tile", "amx_bf16"}))


@pytest.mark.parametrize(
    ("cap", "device", "dtype", "why"),
    [
        (AMX, "cpu", torch.bfloat16, "AMX-BF16"),
        (AVX512_BF16, "cpu", torch.bfloat16, "AVX512-BF16"),
        (PLAIN, "cpu", torch.float32, "without"),
        (Capability(cuda=(9, 0), cuda_name="H100"), "cuda", torch.bfloat16, "sm_90 H100"),
        (Capability(cuda=(8, 0)), "cuda", torch.bfloat16, "sm_80"),
        (Capability(cuda=(7, 0)), "cuda", torch.float16, "sm_70"),
        (Capability(cuda=(7, 5)), "cuda", torch.float16, "sm_75"),
        (Capability(cuda=(6, 1)), "cuda", torch.float32, "sm_61"),
    ],
)
def test_auto_picks_the_fast_dtype(cap, device, dtype, why):
    p = decide(cap, device, "auto")
    assert p.device == device and p.dtype == dtype and why in p.reason and p.reason.startswith("auto")
    assert p.channels_last == (dtype != torch.float32)
    assert p.grad_scaler == (dtype == torch.float16)  # fp16 training scales its loss
    assert p.autocast == (None if dtype == torch.float32 else dtype)


def test_explicit_dtype_is_kept_and_float32_stays_contiguous():
    for cap in (PLAIN, AMX, Capability(cuda=(8, 0))):
        p = decide(cap, "cpu", "float32")
        assert (p.dtype, p.channels_last, p.memory_format()) == (torch.float32, False, torch.contiguous_format)
    p = decide(PLAIN, "cpu", "bfloat16")
    assert p.dtype == torch.bfloat16 and p.channels_last and p.reason == "asked for bfloat16"
    assert decide(PLAIN, "cpu", "float16").grad_scaler is False  # no scaler off CUDA


def test_cuda_without_a_device_falls_back_to_the_cpu_decision():
    p = decide(AVX512_BF16, "cuda", "auto")  # a fake GPU resource: the slot has no CUDA device
    assert p.device == "cpu" and p.dtype == torch.bfloat16 and "no CUDA device" in p.reason
    assert decide(PLAIN, "cuda", "auto").dtype == torch.float32
    assert decide(PLAIN, "cuda", "float16").device == "cpu"


def test_describe_and_bad_requests():
    assert decide(AMX, "cpu").describe() == "bfloat16 + channels_last on cpu (auto: CPU with AMX-BF16)"
    assert decide(PLAIN, "cpu").describe() == "float32 on cpu (auto: CPU without AMX-BF16 or AVX512-BF16)"
    with pytest.raises(ValueError, match="dtype must be one of"):
        decide(PLAIN, "cpu", "float64")
    with pytest.raises(ValueError, match="device must be"):
        decide(PLAIN, "tpu")


def test_capability_round_trips_and_this_machine_resolves():
    cap = Capability(frozenset({"avx512_bf16"}), (8, 6), "A10")
    assert Capability.from_dict(cap.to_dict()) == cap
    here = detect()
    assert resolve("cpu", torch.float32).dtype == torch.float32
    assert resolve("cpu").dtype == (torch.bfloat16 if {"amx_bf16", "avx512_bf16"} & here.cpu_flags else torch.float32)


def test_training_precision_maps_the_config_values():
    from uiface_ray.train.loop import training_precision

    cpu = torch.device("cpu")
    assert training_precision("no", cpu).autocast is None and not training_precision("no", cpu).channels_last
    bf16 = training_precision("bf16", cpu)
    assert bf16.autocast == torch.bfloat16 and not bf16.channels_last  # measured slower for training on a CPU
    assert training_precision("fp16", cpu).autocast == torch.float16
    assert training_precision("auto", cpu).dtype == resolve("cpu").dtype


def test_fr_step_under_bf16_autocast_keeps_float32_weights_and_a_close_loss():
    import numpy as np

    from uiface_ray.fr import model as fr_model

    torch.set_num_threads(1)
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    losses = {}
    for autocast in (None, torch.bfloat16):
        torch.manual_seed(0)  # the backbone draws from the default generator: the same weights both times
        model = fr_model.FRModel(18, 5, 64, generator=torch.Generator().manual_seed(0), input_size=32, width=0.25)
        model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        step = fr_model.train_step(
            model, opt, images, np.arange(8) % 5, 0.1, torch.Generator().manual_seed(0), None, "cpu", autocast
        )
        losses[autocast] = step.loss
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[torch.bfloat16] == pytest.approx(losses[None], rel=0.05)
