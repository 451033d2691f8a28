"""The operations on packed weights: `lowbit.linear` (the fused dynamic, W4A8 and weight-only
linears), `linear_static` (the static int8 computation, docs/conversion.md: activations
quantized with the frozen scale and zero point, exact int8 GEMM, the dynamic kernel's float
epilogue, one fused kernel call) and `lowbit.matmul_integer`, which takes a PackedWeight for B
besides the arrays of lowbit.ops.matmul_integer. One floor above lowbit.packed: the layers
call these."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ._core import _C
from ._core.checks import QTYPE_CODES, float_array, int8_array, kernel_array
from . import ops
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


def matmul_integer(a: Any, b: Any, a_zero_point: Any = None, b_zero_point: Any = None) -> np.ndarray:
    """C = (A - a_zero_point) @ (B - b_zero_point) in exact int32 (ONNX MatMulInteger), as
    lowbit.ops.matmul_integer, where B may also be an 8-bit PackedWeight: then C = A @ W_q.T
    with W_q's zero points, and b_zero_point must be None.

    A and B are int8 or uint8, with numpy.matmul shape rules (1-D operands, broadcast batch
    dimensions). Results wrap modulo 2**32 only when they cannot fit in int32.

    Parameters
    ----------
    a
        A NumPy int8 or uint8 array, at least 1-D.
    b
        A NumPy int8 or uint8 array, at least 1-D, or an 8-bit PackedWeight (then A's last
        axis is its in_features).
    a_zero_point
        None (0), a scalar, one value per row of A, or shape (..., M, 1) (per row and batch).
    b_zero_point
        None (0), a scalar, one value per column of B, or shape (..., 1, N); None for a
        PackedWeight.

    Returns
    -------
    numpy.ndarray
        int32 C, with numpy.matmul's shape of A @ B (A @ W_q.T for a PackedWeight).

    Raises
    ------
    TypeError
        a or b is not a NumPy int8/uint8 array (or a PackedWeight); a zero point that is not
        integers.
    ValueError
        A 0-d operand; inner or batch dimensions that do not fit; a zero point outside its
        type's range or of another shape; a 4-bit PackedWeight, or b_zero_point with a
        packed B.
    """
    if not isinstance(b, PackedWeight):
        return ops.matmul_integer(a, b, a_zero_point, b_zero_point)
    a = int8_array(a, "a")
    if b.bits != 8:
        raise ValueError(f"matmul_integer takes an 8-bit PackedWeight, got a {b.bits}-bit one "
                         "(use lowbit.linear for 4-bit weights)")
    if b_zero_point is not None:
        raise ValueError("a PackedWeight carries its own zero points; b_zero_point must be None")
    return _matmul_packed(a, a_zero_point, b._packed, b.in_features)


def _matmul_packed(a: np.ndarray, a_zero_point: Any, packed: Any, k: int) -> np.ndarray:
    if a.ndim == 0:
        raise ValueError("matmul_integer operands must have at least one dimension")
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    if a2.shape[-1] != k:
        raise ValueError(f"matmul_integer: A has {a2.shape[-1]} columns, B has {k} rows")
    za = ops.row_zero_points(a_zero_point, a2, "a_zero_point")
    rows = kernel_array(a2.reshape(math.prod(a2.shape[:-1]), k))
    c = _C.matmul_integer(rows, za, packed)
    out = c.reshape(a2.shape[:-1] + (packed.out_features,))
    return out[0] if a.ndim == 1 else out


def linear(x: Any, weight: PackedWeight, bias: Any = None) -> np.ndarray:
    """Fused dynamic-quantization linear: y = x @ W.T + bias with float32 in and out.

    8-bit weights: each row of x is quantized to uint8 inside the call (DynamicQuantizeLinear per
    row), then an exact int8 GEMM against the packed weight, with dequantization and bias applied
    in the kernel epilogue; with mode="weight_only", float32 x against the int8 weights (fma in
    k order, then the channel scale: no activation rounding). 4-bit weights: as the weight's `mode` says, "w4a8" (rows of x
    quantized to int8, symmetric per row; exact int32 sums per group, scaled and summed in
    float32) or "weight_only" (float32 x against weights dequantized in registers). 16-bit
    float weights (float16 / bfloat16): float32 x against the values widened exactly in
    registers, fma in k order, then + bias (kernels wf16f32 / wbf16f32).
    x has shape (..., in_features); y has shape (..., out_features).
    NaN/Inf in x or bias raise ValueError.

    Parameters
    ----------
    x
        float32 (or float16, or Python numbers) input of shape (..., in_features).
    weight
        A PackedWeight (`lowbit.pack_weight`); its `family` picks the kernel.
    bias
        None, or float32 of shape (out_features,).

    Returns
    -------
    numpy.ndarray
        float32 y of shape (..., out_features).

    Raises
    ------
    TypeError
        weight is not a PackedWeight; x or bias is not float32/float16 data (float64 is
        refused rather than cast).
    ValueError
        x's last axis is not in_features (or x is 0-d); bias of another shape; NaN/Inf in x
        or bias; an 8-bit "w8a8" weight with in_features past the exact int32 depth limit
        (lowbit._core._C.LINEAR_MAX_DEPTH, or the asymmetric one).
    """
    if not isinstance(weight, PackedWeight):
        raise TypeError("weight must be a PackedWeight (see lowbit.pack_weight)")
    # Fast path first: this function is on every layer call and must stay within a few us.
    # An identity test is the cheapest; any other array goes through float_array's checks.
    if not (type(x) is np.ndarray and x.dtype is _F32 and x.flags.c_contiguous
            and x.flags.aligned):
        x = float_array(x, "x")
    k = weight.in_features
    if x.ndim == 0 or x.shape[-1] != k:
        raise ValueError(f"x must have shape (..., {k}), got {x.shape}")
    if bias is not None and not (type(bias) is np.ndarray and bias.dtype is _F32
                                 and bias.flags.c_contiguous and bias.flags.aligned):
        bias = float_array(bias, "bias")
    if bias is not None and bias.shape != (weight.out_features,):
        raise ValueError(f"bias must have shape ({weight.out_features},), got {bias.shape}")
    x2 = x if x.ndim == 2 else x.reshape(math.prod(x.shape[:-1]), k)
    y = _LINEAR[weight.family](x2, weight, bias)
    return y if x.ndim == 2 else y.reshape(x.shape[:-1] + (weight.out_features,))


_F32 = np.dtype(np.float32)
# The kernel of each family (lowbit.packed.FAMILIES), called with the 2-D rows of x.
_LINEAR = {
    "w8a8": lambda x2, w, bias: _C.linear(x2, w._packed, w.scale, bias),
    "w8f32": lambda x2, w, bias: _C.linear_weight_only(x2, w._packed, w.scale, bias),
    "w4a8": lambda x2, w, bias: _C.linear_int4(x2, w._packed, _C.Int4Compute.w4a8, bias),
    "w4f32": lambda x2, w, bias: _C.linear_int4(x2, w._packed, _C.Int4Compute.weight_only, bias),
    "wf16f32": lambda x2, w, bias: _C.linear_half(x2, w._packed, bias),
    "wbf16f32": lambda x2, w, bias: _C.linear_half(x2, w._packed, bias),
}
