"""lowbit: exact int8 quantized inference kernels for CPUs, with ONNX numeric semantics.

Importing lowbit selects the best kernel path for this CPU (or LOWBIT_ISA if set: an unknown or
unsupported value raises at import). lowbit never imports PyTorch itself: `lowbit.torch` (model
conversion) is a separate, optional module.
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._core import _C
from ._core import adapters as _adapters
from ._core.runtime import (cpu_info, get_isa, get_num_threads, parallel_runtime, set_isa,
                            set_num_threads, use_isa)
from .ops import (conv_integer, dequantize_linear, dynamic_quantize_linear, qlinear_conv,
                  qlinear_matmul, quantize_linear, requantize)
from .qtensor import QTensor, quantize
from .packed import PackedWeight, pack_weight
from .packed_ops import linear, matmul_integer
from .quant import observers
from .quant.config import (BFloat16WeightOnlyConfig, Float16WeightOnlyConfig, Int4DynamicConfig,
                           Int4WeightOnlyConfig, Int8DynamicConfig, Int8StaticConfig,
                           Int8WeightOnlyConfig)
from . import nn
from .nn.conversion import quantize_weights
from .io import load, save
from .report import report


def _load_torch_adapters() -> None:
    """lowbit.torch registers its io and report adapters when imported; the first PyTorch object
    given to save / load / report imports it (this floor is above it, so the import points
    down). lowbit never imports PyTorch before such an object exists."""
    from . import torch as _torch  # noqa: F401


_adapters.register_loader("torch", _load_torch_adapters)

try:
    _C.get_isa()  # resolves LOWBIT_ISA now, so a bad value fails at import, not mid-computation
except (RuntimeError, ValueError) as _error:
    from ._core.runtime import started_as_cli
    if started_as_cli():   # the `lowbit` command: one line and exit status 1, not a traceback
        raise SystemExit(f"lowbit: {_error}") from None
    raise

__all__ = [
    "cpu_info", "get_isa", "set_isa", "use_isa", "get_num_threads", "set_num_threads", "parallel_runtime",
    "quantize_linear", "dequantize_linear", "dynamic_quantize_linear", "matmul_integer",
    "qlinear_matmul", "requantize", "conv_integer", "qlinear_conv", "linear", "PackedWeight", "pack_weight", "QTensor",
    "quantize", "nn", "observers", "Int8DynamicConfig", "Int8WeightOnlyConfig",
    "Int4WeightOnlyConfig", "Int4DynamicConfig", "Int8StaticConfig", "Float16WeightOnlyConfig",
    "BFloat16WeightOnlyConfig", "quantize_weights",
    "save", "load", "report",
]
