"""The computations behind the configs that are compositions of lowbit's public primitives
rather than one fused kernel call (docs/conversion.md):

- static int8: `quantize_linear` with the frozen activation scale and zero point, exact
  `matmul_integer` against the packed weight, then a float32 epilogue in NumPy;
- int8 weight-only: `dequantize_linear` of the weight, then a float32 GEMM (NumPy's BLAS).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ._checks import float_array
from .ops import matmul_integer, quantize_linear
from .packed import PackedWeight
from .qtensor import QTensor


def _rows(x: Any, k: int) -> tuple[np.ndarray, tuple[int, ...]]:
    xa = float_array(x, "x")
    if xa.ndim == 0 or xa.shape[-1] != k:
        raise ValueError(f"x must have shape (..., {k}), got {xa.shape}")
    return xa.reshape(math.prod(xa.shape[:-1]), k), xa.shape[:-1]


def linear_static(x: Any, weight: PackedWeight, input_scale: np.ndarray,
                  input_zero_point: np.ndarray, bias: Optional[np.ndarray] = None) -> np.ndarray:
    """y = float32(acc) * float32(input_scale * weight.scale[n]) + bias[n], with
    acc = (quantize_linear(x, input_scale, input_zero_point) - input_zero_point) @ (W_q - z_w).T
    exact in int32. Two float32 roundings (product, then sum), unlike the single fma of the
    fused dynamic kernel. Values of x outside the calibrated range saturate."""
    if weight.bits != 8:
        raise ValueError("static activation quantization takes an 8-bit PackedWeight")
    rows, lead = _rows(x, weight.in_features)
    q = quantize_linear(rows, input_scale, input_zero_point)
    acc = matmul_integer(q, weight, a_zero_point=input_zero_point)
    multiplier = (np.float32(input_scale) * weight.scale).astype(np.float32)
    y = acc.astype(np.float32)
    y *= multiplier
    if bias is not None:
        y += bias
    return y.reshape(lead + (weight.out_features,))


def linear_weight_only_int8(x: Any, weight: QTensor, bias: Optional[np.ndarray] = None
                            ) -> np.ndarray:
    """y = x @ dequantize_linear(W_q).T + bias in float32. The float32 weight is rebuilt on
    every call (scratch memory of out x in features floats) so the layer only keeps int8."""
    n, k = weight.shape
    rows, lead = _rows(x, k)
    w = weight.dequantize()
    y = rows @ w.T
    if bias is not None:
        y += bias
    return y.reshape(lead + (n,))
