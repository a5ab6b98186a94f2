"""Which dtype and memory format a device runs fastest: one decision for every job.

:func:`decide` is a pure function of a :class:`Capability` record (what the device can do) and
the requested dtype (``auto`` or an explicit one):

* ``auto`` on a CPU with AMX-BF16 or AVX-512-BF16: bfloat16 + channels_last (oneDNN has bf16
  kernels there; measured 3x a float32 UNet evaluation on such a CPU, docs/PERFORMANCE.md);
* ``auto`` on CUDA sm_80 and newer (A100, H100): bfloat16 + channels_last;
* ``auto`` on CUDA sm_70/sm_75 (V100, T4): float16 + channels_last (tensor cores, no native bf16),
  training with a gradient scaler;
* ``auto`` anywhere else: float32, contiguous (today's exact results).

An explicit dtype is kept as asked; channels_last goes with every reduced precision and never
with float32, so an explicit ``float32`` reproduces the bytes of before this module existed.
A ``cuda`` request on a machine without a CUDA device (a fake GPU resource, a driver-less
container) falls back to the CPU's decision, and says so in :attr:`Precision.reason`.

:func:`detect` reads the capability of this process's machine (``/proc/cpuinfo`` flags, torch's
CPU capability, ``torch.cuda.get_device_capability``).  Torch only; no Ray, no I/O beyond
``/proc/cpuinfo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["DTYPES", "Capability", "Precision", "decide", "detect", "resolve"]

DTYPES = ("auto", "float32", "float16", "bfloat16")
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names


@dataclass(frozen=True)
class Capability:
    """What a machine can run: its CPU flags and, when it has one, the CUDA device's compute capability."""

    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    cuda: tuple[int, int] | None = None  # (major, minor) of device 0; None: no usable CUDA device
    cuda_name: str = ""

    def to_dict(self) -> dict:
        return {
            "cpu_flags": sorted(self.cpu_flags),
            "cuda": list(self.cuda) if self.cuda else None,
            "name": self.cuda_name,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Capability":
        cuda = d.get("cuda")
        return cls(frozenset(d.get("cpu_flags", ())), tuple(cuda) if cuda else None, d.get("name", ""))


@dataclass(frozen=True)
class Precision:
    """The decision: where to run, in which dtype, in which memory format, and why."""

    device: str  # "cpu" | "cuda"
    dtype: torch.dtype
    channels_last: bool
    reason: str  # e.g. "auto: CPU with AVX512-BF16"
    grad_scaler: bool = False  # float16 training needs loss scaling

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def autocast(self) -> torch.dtype | None:
        """The autocast dtype for training (None: plain float32)."""
        return None if self.dtype == torch.float32 else self.dtype

    def describe(self) -> str:
        """One line for a job's first lines: ``bfloat16 + channels_last on cpu (auto: CPU with AVX512-BF16)``."""
        fmt = " + channels_last" if self.channels_last else ""
        return f"{self.dtype_name}{fmt} on {self.device} ({self.reason})"

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def _cpu_reason(cap: Capability) -> str | None:
    found = [f.upper().replace("_", "-") for f in _BF16_CPU_FLAGS if f in cap.cpu_flags]
    return f"CPU with {' and '.join(found)}" if found else None


def _auto(device: str, cap: Capability) -> tuple[torch.dtype, str]:
    if device == "cuda":
        major, minor = cap.cuda  # type: ignore[misc]
        sm = f"CUDA sm_{major}{minor}" + (f" {cap.cuda_name}" if cap.cuda_name else "")
        if major >= 8:
            return torch.bfloat16, sm
        if major == 7:
            return torch.float16, f"{sm}: fp16 tensor cores, no native bf16"
        return torch.float32, f"{sm}: no fast reduced precision"
    why = _cpu_reason(cap)
    if why:
        return torch.bfloat16, why
    return torch.float32, "CPU without AMX-BF16 or AVX512-BF16"


def decide(cap: Capability, device: str = "cpu", requested: str = "auto") -> Precision:
    """The dtype and memory format for ``device`` ("cpu"/"cuda") given ``cap`` and the requested dtype."""
    if requested not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {requested!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    note = ""
    if device == "cuda" and cap.cuda is None:
        device, note = "cpu", "no CUDA device here, running on cpu; "
    if requested == "auto":
        dtype, why = _auto(device, cap)
        reason = f"{note}auto: {why}"
    else:
        dtype, reason = getattr(torch, requested), f"{note}asked for {requested}"
    reduced = dtype != torch.float32
    return Precision(device, dtype, reduced, reason, grad_scaler=device == "cuda" and dtype == torch.float16)


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    try:
        text = Path(path).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def detect() -> Capability:
    """This machine's capability (``/proc/cpuinfo`` flags; CUDA device 0 when torch sees one)."""
    flags = set(_cpuinfo_flags())
    if torch.backends.cpu.get_cpu_capability() == "AMX":  # torch's own probe, where /proc is hidden
        flags.add("amx_bf16")
    cuda, name = None, ""
    if torch.cuda.is_available():
        cuda, name = tuple(torch.cuda.get_device_capability(0)), torch.cuda.get_device_name(0)
    return Capability(frozenset(flags), cuda, name)


def resolve(device: str | torch.device = "cpu", requested: str | torch.dtype = "auto") -> Precision:
    """:func:`decide` for this machine; ``requested`` may be a torch dtype."""
    if isinstance(requested, torch.dtype):
        requested = str(requested).removeprefix("torch.")
    return decide(detect(), torch.device(device).type, requested)
