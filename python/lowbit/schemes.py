"""The static int8 computation (docs/conversion.md); the dynamic and weight-only layers call
`lowbit.linear` directly:

- static int8: one fused kernel (`_C.linear_static`): activations quantized with the frozen
  scale and zero point, exact int8 GEMM, the dynamic kernel's float epilogue;
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from . import _C
from ._checks import QTYPE_CODES, float_array
from .packed import PackedWeight
from .qtensor import QTensor


def _rows(x: Any, k: int) -> tuple[np.ndarray, tuple[int, ...]]:
    xa = float_array(x, "x")
    if xa.ndim == 0 or xa.shape[-1] != k:
        raise ValueError(f"x must have shape (..., {k}), got {xa.shape}")
    return xa.reshape(math.prod(xa.shape[:-1]), k), xa.shape[:-1]


def linear_static(x: Any, weight: PackedWeight, input_scale: np.ndarray,
                  input_zero_point: np.ndarray, bias: Optional[np.ndarray] = None) -> np.ndarray:
    """One fused kernel call: q = quantize_linear(x, input_scale, input_zero_point) (uint8, or
    int8 when the zero point is int8; values outside the calibrated range saturate),
    acc = (q - input_zero_point) @ (W_q - z_w).T exact in int32, and
    y = fma(float32(acc), float32(input_scale * weight.scale[n]), bias[n]): the epilogue of the
    dynamic `linear` with the frozen scale in place of each row's."""
    if weight.bits != 8:
        raise ValueError("static activation quantization takes an 8-bit PackedWeight")
    rows, lead = _rows(x, weight.in_features)
    zp = np.asarray(input_zero_point)
    if zp.dtype not in (np.int8, np.uint8) or zp.size != 1:
        raise ValueError(f"input_zero_point must be one int8 or uint8 value, got {zp.dtype} "
                         f"of shape {zp.shape}")
    in_type = QTYPE_CODES["int8" if zp.dtype == np.int8 else "uint8"]
    if bias is not None:
        bias = float_array(bias, "bias")
        if bias.shape != (weight.out_features,):
            raise ValueError(f"bias must have shape ({weight.out_features},), got {bias.shape}")
    y = _C.linear_static(rows, weight._packed, weight.scale, bias, float(np.float32(input_scale)),
                         int(zp.reshape(())), in_type)
    return y.reshape(lead + (weight.out_features,))
