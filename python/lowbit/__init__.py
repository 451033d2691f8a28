"""lowbit: exact int8 quantized inference kernels for CPUs, with ONNX numeric semantics.

Importing lowbit selects the best kernel path for this CPU (or LOWBIT_ISA if set: an unknown or
unsupported value raises at import). lowbit never imports PyTorch itself: `lowbit.torch` (model
conversion) is a separate, optional module.
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import _C
from ._runtime import (cpu_info, get_isa, get_num_threads, parallel_runtime, set_isa, set_num_threads,
                       use_isa)
from .ops import (dequantize_linear, dynamic_quantize_linear, linear, matmul_integer,
                  qlinear_matmul, quantize_linear, requantize)
from .packed import PackedWeight, pack_weight
from .qtensor import QTensor, quantize
from . import nn, observers
from .config import (Int4DynamicConfig, Int4WeightOnlyConfig, Int8DynamicConfig,
                     Int8StaticConfig, Int8WeightOnlyConfig)
from .conversion import quantize_weights
from .io import load, save
from .report import report

try:
    _C.get_isa()  # resolves LOWBIT_ISA now, so a bad value fails at import, not mid-computation
except (RuntimeError, ValueError) as _error:
    from ._runtime import started_as_cli
    if started_as_cli():   # the `lowbit` command: one line and exit status 1, not a traceback
        raise SystemExit(f"lowbit: {_error}") from None
    raise

__all__ = [
    "cpu_info", "get_isa", "set_isa", "use_isa", "get_num_threads", "set_num_threads", "parallel_runtime",
    "quantize_linear", "dequantize_linear", "dynamic_quantize_linear", "matmul_integer",
    "qlinear_matmul", "requantize", "linear", "PackedWeight", "pack_weight", "QTensor",
    "quantize", "nn", "observers", "Int8DynamicConfig", "Int8WeightOnlyConfig",
    "Int4WeightOnlyConfig", "Int4DynamicConfig", "Int8StaticConfig", "quantize_weights",
    "save", "load", "report",
]
