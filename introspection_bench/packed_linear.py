"""Linear layers that multiply with a oneDNN-packed copy of their weight on the CPU.

A decode step multiplies a few dozen rows by every weight matrix of the model. torch's dense
CPU `linear` (MKL sgemm in fp32) reaches about half of what oneDNN does at these shapes once
the weight is stored in oneDNN's blocked layout: on SmolLM2's shapes at 32 rows (2 AMD cores)
the 30 blocks' projections took 66 ms per step dense and 44 ms packed in fp32, the 49152-row
output layer 24 ms and 10 ms; in bf16 33 / 26 ms and 7 / 5 ms (`benchmarks/decode.py` for the
whole loop). The arithmetic stays in the weight's dtype (fp32 or bf16); only the summation order
differs, so fp32 results move by ulps, as they do between batch sizes or CPUs.

`pack_linears` swaps the class of each eligible `nn.Linear` for `PackedLinear`, which keeps the
ordinary `weight` (state dicts, fingerprints, peft and training see the usual module) and adds
the packed copy. It multiplies with the copy only when no gradient is wanted; it re-packs when
the weight changes (an in-place update or a new tensor), and otherwise behaves as `nn.Linear`.
The copy costs as much memory as the weights, so models are packed only while that fits.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any, TypeGuard, cast

import torch
from torch.nn import functional

#: Dtypes oneDNN packs (fp16 linear has no fast oneDNN path on most CPUs).
_PACKED_DTYPES = (torch.float32, torch.bfloat16)
#: Pack only while the copies take at most this share of the available memory.
_MEMORY_SHARE = 0.5
#: Set to 0 to leave every model unpacked (e.g. to compare against torch's dense linear).
ENVIRONMENT_SWITCH = "INTROSPECTION_BENCH_PACK_LINEARS"


def available() -> bool:
    """Whether this torch build has the oneDNN linear ops (CPU builds with mkldnn do)."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def _pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)


class PackedLinear(torch.nn.Linear):
    """An `nn.Linear` that, without autograd, multiplies with a oneDNN-packed weight."""

    _packed: torch.Tensor
    _packed_from: tuple[int, int]

    def repack(self) -> None:
        """Pack the current weight (called on first use and whenever the weight changed)."""
        with torch.inference_mode():
            self._packed = _pack(self.weight)
        self._packed_from = (self.weight.data_ptr(), self.weight._version)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x @ weight.T + bias`; densely where autograd, dtype or device rule the copy out."""
        weight = self.weight
        if (
            x.dim() < 2
            or x.dtype != weight.dtype
            or x.device.type != "cpu"
            or weight.device.type != "cpu"
            or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            # A model packed in fp32 and cast to bf16 afterwards on a CPU without AVX-512, where
            # oneDNN refuses to pack bf16: the dense product, never an error.
            or not works(weight.dtype)
        ):
            return functional.linear(x, weight, self.bias)
        if self._packed_from != (weight.data_ptr(), weight._version):
            self.repack()
        return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")


def _eligible(module: torch.nn.Module) -> TypeGuard[torch.nn.Linear]:
    weight = getattr(module, "weight", None)
    return (
        type(module) is torch.nn.Linear
        and isinstance(weight, torch.Tensor)
        and weight.device.type == "cpu"
        and weight.dtype in _PACKED_DTYPES
        and (module.bias is None or module.bias.dtype == weight.dtype)
    )


def _probe(dtype: torch.dtype) -> bool:
    """Whether this CPU runs oneDNN's packed linear in `dtype` and matches the dense one.

    bf16 needs AVX-512 or AVX-NE-CONVERT (oneDNN refuses it on AVX2-only CPUs); the probe also
    guards against a torch build whose private ops changed.
    """
    if dtype not in _PACKED_DTYPES:
        return False
    if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(24, 40, generator=generator).to(dtype)
    x = torch.randn(3, 40, generator=generator).to(dtype)
    try:
        with torch.inference_mode():
            packed = torch.ops.mkldnn._linear_pointwise(x, _pack(weight), None, "none", [], "")
    except RuntimeError:
        return False
    dense = functional.linear(x, weight)
    return packed.shape == dense.shape and bool(
        torch.allclose(packed.float(), dense.float(), rtol=2e-2, atol=2e-2)
    )


#: `_probe`, once per dtype: what a packed layer's forward asks before each product.
works = functools.cache(_probe)


def _available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable where Linux reports it)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def pack_linears(model: torch.nn.Module) -> int:
    """Make every eligible `nn.Linear` of a CPU model a `PackedLinear`; return how many.

    Skipped (returns 0): `INTROSPECTION_BENCH_PACK_LINEARS=0`, a torch without the oneDNN ops,
    a model dispatched over devices (accelerate swaps its weights in per call), copies that
    would take more than half of the available memory, or a dtype this CPU cannot pack (bf16
    without AVX-512) or whose packed product does not match the dense one.
    """
    if os.environ.get(ENVIRONMENT_SWITCH, "1") == "0" or not available():
        return 0
    if getattr(model, "hf_device_map", None):
        return 0
    linears = [module for module in model.modules() if _eligible(module)]
    size = sum(module.weight.numel() * module.weight.element_size() for module in linears)
    if not linears or size > _MEMORY_SHARE * _available_memory():
        return 0
    if not all(_probe(dtype) for dtype in {module.weight.dtype for module in linears}):
        return 0
    for module in linears:
        module.__class__ = PackedLinear
        cast(PackedLinear, module).repack()  # its class was just swapped; mypy cannot follow
    return len(linears)


@contextlib.contextmanager
def dense_linears(model: torch.nn.Module) -> Iterator[None]:
    """Run `model`'s packed linear layers as plain `nn.Linear` inside the block (benchmarks)."""
    # Typed as plain modules: each one's class is swapped to `nn.Linear` and back.
    packed: list[torch.nn.Module] = [
        module for module in model.modules() if isinstance(module, PackedLinear)
    ]
    for module in packed:
        module.__class__ = torch.nn.Linear
    try:
        yield
    finally:
        for module in packed:
            module.__class__ = PackedLinear


def packed_count(model: Any) -> int:
    """How many of `model`'s linear layers multiply with a packed weight."""
    return sum(isinstance(module, PackedLinear) for module in model.modules())
