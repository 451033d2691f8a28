"""ONNX-semantics primitives on NumPy arrays only (QuantizeLinear, DequantizeLinear,
DynamicQuantizeLinear, MatMulInteger, QLinearMatMul) plus requantize. The operations on packed
weights (the fused linears, MatMulInteger with a packed B) are lowbit.packed_ops, one floor up.
See docs/numeric_contract.md for the exact arithmetic."""
from __future__ import annotations

import math
from typing import Any, Optional, Union

import numpy as np

from ._core import _C
from ._core.checks import (NARROW_QTYPES, QTYPE_CODES, QTYPES, float_array, int8_array,
                           kernel_array, per_tensor_form, qtype_name, scales, zero_points)
from ._core.halfs import bfloat16_bits, is_bfloat16
from ._core.layout import scale_layout

ArrayLike = Any


# The zero point types that name an ONNX output type: NumPy's integer types of 8, 16 and 32
# bits. int64 is not among them: it is what NumPy makes of Python ints (np.array([1, 2])), and
# ONNX has no int64 quantized type, so such a zero point says nothing about the output type.
_TYPED_ZERO_POINTS = ("int8", "uint8", "int16", "uint16", "int32", "uint32")


def _output_qtype(dtype: Any, zero_point: Any, name: str = "zero_point",
                  supported: tuple[str, ...] = tuple(QTYPES), op: str = "quantize_linear") -> str:
    """ONNX: the output type follows the zero point's type; uint8 when neither is given.
    A zero point asking for an output `op` has no kernels for (int32/uint32 anywhere, int16/
    uint16 where `supported` stops at 8 bits) is a TypeError: saturating to uint8 instead
    would be a silent wrong answer."""
    if dtype is not None:
        return qtype_name(dtype, supported)
    if isinstance(zero_point, (np.ndarray, np.generic)):
        zdtype = zero_point.dtype.name
        if zdtype in _TYPED_ZERO_POINTS:
            if zdtype in supported:
                return zdtype
            typed = [t for t in supported if t in _TYPED_ZERO_POINTS]
            raise TypeError(f"{name} has dtype {zdtype}: ONNX takes the output type from the "
                            f"zero point's, and {op} has no {zdtype} output; give a zero point "
                            f"of dtype {', '.join(typed[:-1])} or {typed[-1]}, or dtype=")
    return "uint8"


def quantize_linear(x: ArrayLike, scale: ArrayLike, zero_point: ArrayLike = None, axis: int = 1,
                    block_size: int = 0, dtype: Any = None) -> np.ndarray:
    """q = saturate(round_half_to_even(x / scale) + zero_point), in float32.

    Parameters
    ----------
    x
        float32 data, or float16 or bfloat16 (an ml_dtypes.bfloat16 array), each widened to
        float32 exactly, or Python numbers.
    scale
        A scalar or a 1-element 1-D array (per tensor, as ONNX gives either), 1-D along `axis`
        (per axis), or, with block_size > 0, the shape of x with ceil(x.shape[axis] /
        block_size) along `axis` (blocked); float32, or a 16-bit float widened exactly.
    zero_point
        None (0), or the scale's shape (per tensor: a scalar or a 1-element array, in any mix
        with the scale's form).
    axis
        The axis a per-axis or blocked scale runs along (default 1, as in ONNX; negative
        values count from the end); not read for a per-tensor scale.
    block_size
        0 (default): per tensor or per axis, as the scale's shape says; > 0: blocks of
        block_size consecutive elements along `axis` (the last one may be shorter).
    dtype
        "int8", "uint8", "int16", "uint16", "int4", "uint4" (4-bit values are returned one per
        byte in int8/uint8 arrays); default: the zero point's dtype (int8, uint8, int16 or
        uint16, as ONNX says), else uint8.

    Returns
    -------
    The quantized array, x's shape, of the output type's storage dtype (int8, uint8, int16 or
    uint16).

    Raises
    ------
    TypeError
        x is not float32/float16/bfloat16 data; the zero point is int32/uint32 and dtype is
        None (ONNX would give 32-bit output, which lowbit has no type for); a scale or zero
        point that is None or not numeric (a zero point must hold integers); axis is not an
        int; dtype is not a type name.
    ValueError
        NaN/Inf in x; a scale that is not finite and > 0; a zero point outside the type's
        range; shapes that do not fit; axis out of range; block_size negative or not an int;
        an unsupported dtype.
    """
    xa = float_array(x, "x")
    name = _output_qtype(dtype, zero_point)
    _, lo, hi = QTYPES[name]
    s = per_tensor_form(scales(scale), block_size)
    layout = scale_layout(xa.shape, s.shape, axis, block_size)
    zp = None
    if zero_point is not None:
        zp = per_tensor_form(zero_points(zero_point, lo, hi), block_size)
        if zp.shape != s.shape:
            raise ValueError(f"zero_point shape {zp.shape} differs from scale shape {s.shape}")
    return _C.quantize_linear(xa, layout.outer, layout.axis, layout.inner, layout.mode,
                              layout.block, s, zp, QTYPE_CODES[name])


def dequantize_linear(q: ArrayLike, scale: ArrayLike, zero_point: ArrayLike = None,
                      axis: int = 1, block_size: int = 0, dtype: Any = None) -> np.ndarray:
    """x = (q - zero_point) * scale in float32, then rounded once to `dtype`.

    Parameters
    ----------
    q
        A NumPy int8, uint8, int16, uint16 or int32 array, or a NumPy scalar of those types
        (np.int8(5): the result is then 0-d). A Python int has no quantized type and is
        refused.
    scale, zero_point, axis, block_size
        As in `quantize_linear` (per tensor: a scalar or a 1-element array); the zero point
        lies in q's type's range; int32 input takes a zero point of 0 (as in ONNX).
    dtype
        The output type: None or float32 (default), float16 or bfloat16 (a name, a NumPy type,
        or ml_dtypes.bfloat16). The 16-bit outputs round the float32 result once, to nearest,
        ties to even (overflow gives Inf); bfloat16 output is an ml_dtypes.bfloat16 array.

    Returns
    -------
    The dequantized array, q's shape.

    Raises
    ------
    TypeError
        q is not a NumPy int8/uint8/int16/uint16/int32 array or scalar; dtype is not a type.
    ValueError
        A bad scale or zero point (see `quantize_linear`), or an output dtype other than
        float32/float16/bfloat16.
    ImportError
        dtype bfloat16 without ml_dtypes installed (its NumPy bfloat16 type holds the output).
    """
    if isinstance(q, np.generic):
        q = np.asarray(q)   # a NumPy scalar: 0-d, per tensor
    if not isinstance(q, np.ndarray):
        raise TypeError(f"q must be a NumPy int8, uint8, int16, uint16 or int32 array or "
                        f"scalar, got {type(q).__name__}"
                        + (" (a Python int has no quantized type: e.g. np.int8(q))"
                           if isinstance(q, int) else ""))
    if q.dtype not in (np.int8, np.uint8, np.int16, np.uint16, np.int32):
        raise TypeError(f"q must have dtype int8, uint8, int16, uint16 or int32, got {q.dtype}")
    out_name = _float_output(dtype)
    bfloat16 = _bfloat16_dtype() if out_name == "bfloat16" else None   # before any work
    s = per_tensor_form(scales(scale), block_size)
    layout = scale_layout(q.shape, s.shape, axis, block_size)
    zp = None
    if zero_point is not None:
        info = np.iinfo(q.dtype)
        zp = per_tensor_form(zero_points(zero_point, info.min, info.max), block_size)
        if q.dtype == np.int32 and np.any(zp != 0):
            raise ValueError("int32 input takes a zero point of 0 (as in ONNX)")
        if zp.shape != s.shape:
            raise ValueError(f"zero_point shape {zp.shape} differs from scale shape {s.shape}")
    out = _C.dequantize_linear(kernel_array(q), layout.outer, layout.axis, layout.inner,
                               layout.mode, layout.block, s, zp)
    if out_name == "float16":
        with np.errstate(over="ignore"):   # beyond float16's range the rounding gives Inf
            return out.astype(np.float16)
    if bfloat16 is not None:
        return bfloat16_bits(out).view(bfloat16)
    return out


_FLOAT_OUTPUTS = ("float32", "float16", "bfloat16")


def _float_output(dtype: Any) -> str:
    """dequantize_linear's output type by name: float32 (None), float16 or bfloat16, from a
    name, a NumPy type or dtype, or ml_dtypes.bfloat16 (the name needs no ml_dtypes)."""
    if dtype is None:
        return "float32"
    if isinstance(dtype, str) and dtype == "bfloat16":
        return "bfloat16"
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating-point type (float32, float16 or bfloat16), "
                        f"got {dtype!r}") from None
    name = "bfloat16" if is_bfloat16(out) else out.name
    if name not in _FLOAT_OUTPUTS:
        raise ValueError(f"dequantize_linear outputs float32, float16 or bfloat16, not "
                         f"dtype={dtype!r}")
    return name


def _bfloat16_dtype() -> np.dtype:
    """ml_dtypes' bfloat16, imported only when asked for (lowbit does not depend on it)."""
    try:
        import ml_dtypes
    except ImportError as e:
        raise ImportError("dtype='bfloat16': bfloat16 output needs ml_dtypes (NumPy's "
                          "bfloat16 type): pip install ml_dtypes") from e
    return np.dtype(ml_dtypes.bfloat16)


def dynamic_quantize_linear(x: ArrayLike) -> tuple[np.ndarray, np.float32, np.uint8]:
    """ONNX DynamicQuantizeLinear: uint8, one scale and zero point for the tensor, the range
    always including 0. A zero range (all zeros) gives scale 1 and zero point 0.

    Parameters
    ----------
    x
        float32 (or float16, or Python numbers) data of any shape, empty included.

    Returns
    -------
    tuple of (numpy.ndarray, numpy.float32, numpy.uint8)
        q (uint8, x's shape), the scale and the zero point, so that
        ``dequantize_linear(q, scale, zero_point)`` approximates x.

    Raises
    ------
    TypeError
        x is not float32/float16 data (float64 is refused: cast it with .astype(np.float32)).
    ValueError
        NaN/Inf in x.
    """
    xa = float_array(x, "x")
    q, scale, zero = _C.dynamic_quantize_linear(xa)
    return q, np.float32(scale), np.uint8(zero)


def requantize(acc: ArrayLike, multiplier: ArrayLike, zero_point: ArrayLike = 0,
               dtype: Any = None) -> np.ndarray:
    """y = saturate(round_half_to_even(acc * multiplier) + zero_point).

    acc is int32; multiplier (float32, > 0) is a scalar, one value per channel of the last axis,
    or an array broadcastable to acc. The product is formed in float64, so it is exact enough that
    ties round as in the float64 ONNX reference. dtype: int8/uint8/int4/uint4; default from the
    zero point's dtype, else uint8.

    Parameters
    ----------
    acc
        A NumPy int32 array (the accumulator of an integer GEMM, say).
    multiplier
        Finite values > 0: a scalar (or a 1-element array), one per element of acc's last
        axis, or an array that broadcasts to acc's shape.
    zero_point
        One value (a scalar or a 1-element array) within the output type's range; default 0.
    dtype
        "int8", "uint8", "int4" or "uint4" (4-bit values one per byte); default: the zero
        point's dtype (int8/uint8), else uint8.

    Returns
    -------
    numpy.ndarray
        y, acc's shape, of the output type's storage dtype (int8 or uint8).

    Raises
    ------
    TypeError
        acc is not a NumPy int32 array; a multiplier or zero point that is None or not
        numeric; an int16/uint16/int32/uint32 zero point with dtype None (requantize has
        8- and 4-bit outputs only); dtype is not a type name.
    ValueError
        A multiplier that is not finite and > 0 or does not broadcast to acc; a zero point
        that is not a single value or lies outside the type's range; an unsupported dtype
        (int16 and uint16 included).
    """
    return _requantize(acc, multiplier, zero_point, dtype, "zero_point")


def _requantize(acc: ArrayLike, multiplier: ArrayLike, zero_point: ArrayLike, dtype: Any,
                zp_name: str) -> np.ndarray:
    """requantize, with the zero point's name for its errors (qlinear_matmul's y_zero_point)."""
    if not isinstance(acc, np.ndarray) or acc.dtype != np.int32:
        raise TypeError("acc must be a NumPy int32 array")
    name = _output_qtype(dtype, zero_point, zp_name, NARROW_QTYPES, "requantize")
    _, lo, hi = QTYPES[name]
    zp = zero_points(zero_point, lo, hi, zp_name)
    if zp.size != 1:
        raise ValueError(f"{zp_name} must be a single value (a scalar or a 1-element array)")
    m = scales(multiplier, "multiplier")
    a = kernel_array(acc)
    if a.ndim == 0:
        a = a.reshape(1)
    if m.size == 1:
        mode, mult = _C.MultiplierMode.per_tensor, m.reshape(1)
    elif m.ndim == 1 and a.ndim >= 1 and m.shape[0] == a.shape[-1]:
        mode, mult = _C.MultiplierMode.per_column, m
    else:
        try:
            mult = np.ascontiguousarray(np.broadcast_to(m, a.shape))
        except ValueError:
            raise ValueError(f"multiplier shape {m.shape} does not broadcast to acc shape "
                             f"{acc.shape}") from None
        mode = _C.MultiplierMode.elementwise
    out = _C.requantize(a, mult, mode, int(zp.reshape(-1)[0]), QTYPE_CODES[name])
    return out.reshape(acc.shape)


def row_zero_points(zero_point: ArrayLike, a: np.ndarray, name: str) -> Optional[np.ndarray]:
    """Per-tensor (scalar), per-row (M values) or per-row-per-batch (..., M, 1) zero points of A,
    returned flattened to one value per row of a.reshape(-1, K) (or a single value)."""
    if zero_point is None:
        return None
    info = np.iinfo(a.dtype)
    z = zero_points(zero_point, info.min, info.max, name)
    if z.size == 1:
        return z.reshape(1)
    rows_shape = a.shape[:-1]
    if z.ndim == 1 and a.ndim >= 2 and z.shape[0] == a.shape[-2]:
        z = z.reshape(-1, 1)
    elif z.shape and z.shape[-1] == 1:
        pass
    else:
        raise ValueError(f"{name} must be a scalar, have M={a.shape[-2] if a.ndim > 1 else 1} "
                         f"values, or shape (..., M, 1); got shape {z.shape}")
    try:
        full = np.broadcast_to(z[..., 0], rows_shape)
    except ValueError:
        raise ValueError(f"{name} shape {z.shape} does not broadcast to A's rows "
                         f"{rows_shape}") from None
    return np.ascontiguousarray(full.reshape(-1), dtype=np.int32)


def _col_zero_points(zero_point: ArrayLike, b: np.ndarray) -> Optional[np.ndarray]:
    if zero_point is None:
        return None
    info = np.iinfo(b.dtype)
    z = zero_points(zero_point, info.min, info.max, "b_zero_point")
    if z.size == 1:
        return z.reshape(1)
    if z.ndim == 1 and z.shape[0] == b.shape[-1]:
        return z
    if z.ndim >= 2 and z.shape[-2] == 1 and z.shape[-1] == b.shape[-1]:
        return z  # per batch: resolved by the caller
    raise ValueError(f"b_zero_point must be a scalar, have N={b.shape[-1]} values, or shape "
                     f"(..., 1, N); got shape {z.shape}")


def matmul_integer(a: ArrayLike, b: ArrayLike, a_zero_point: ArrayLike = None,
                   b_zero_point: ArrayLike = None) -> np.ndarray:
    """C = (A - a_zero_point) @ (B - b_zero_point) in exact int32 (ONNX MatMulInteger).

    A and B are int8 or uint8, with numpy.matmul shape rules (1-D operands, broadcast batch
    dimensions). a_zero_point: scalar or one per row of A; b_zero_point: scalar or one per
    column of B. Results wrap modulo 2**32 only when they cannot fit in int32. (lowbit's
    public matmul_integer, lowbit.packed_ops, also takes a PackedWeight for B.)
    """
    a = int8_array(a, "a")
    b = int8_array(b, "b")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul_integer operands must have at least one dimension")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    a2 = a.reshape(1, -1) if squeeze_a else a
    b2 = b.reshape(-1, 1) if squeeze_b else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul_integer: inner dimensions differ: A {a.shape} and B {b.shape}")
    try:
        np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul_integer: the batch dimensions of A {a.shape} and B {b.shape} "
                         "do not broadcast") from None
    zb = _col_zero_points(b_zero_point, b2)
    if b2.ndim == 2 and (zb is None or zb.ndim == 1):
        # B as given: the extension packs it a few panels at a time per task (or whole, for
        # many rows), never a copy the caller pays again on the next call.
        za = row_zero_points(a_zero_point, a2, "a_zero_point")
        rows = kernel_array(a2.reshape(math.prod(a2.shape[:-1]), a2.shape[-1]))
        c = _C.matmul_integer_unpacked(rows, za, kernel_array(b2), zb)
        out = c.reshape(a2.shape[:-1] + (b2.shape[1],))
    else:
        out = _matmul_batched(a2, b2, a_zero_point, zb)
    if squeeze_a:
        out = out[..., 0, :]
    if squeeze_b:
        out = out[..., 0]
    return out


def _matmul_batched(a: np.ndarray, b: np.ndarray, a_zero_point: ArrayLike,
                    zb: Optional[np.ndarray]) -> np.ndarray:
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    a_full = np.broadcast_to(a, batch + (M, K))
    b_full = np.broadcast_to(b, batch + (K, N))
    za_rows = row_zero_points(a_zero_point, a_full, "a_zero_point")
    if zb is not None and zb.ndim >= 2:
        zb_full = np.broadcast_to(zb, batch + (1, N)).reshape(-1, N)
    else:
        zb_full = None
    out = np.empty(batch + (M, N), dtype=np.int32)
    out2 = out.reshape(-1, M, N)
    a3 = a_full.reshape(-1, M, K)
    b3 = b_full.reshape(-1, K, N)
    for i in range(out2.shape[0]):
        z_b = zb_full[i] if zb_full is not None else zb
        z_a = za_rows if za_rows is None or za_rows.size == 1 else za_rows[i * M:(i + 1) * M]
        out2[i] = _C.matmul_integer_unpacked(np.ascontiguousarray(a3[i]), z_a,
                                             np.ascontiguousarray(b3[i]), z_b)
    return out


def qlinear_matmul(a: ArrayLike, a_scale: ArrayLike, a_zero_point: ArrayLike, b: ArrayLike,
                   b_scale: ArrayLike, b_zero_point: ArrayLike, y_scale: ArrayLike,
                   y_zero_point: ArrayLike) -> np.ndarray:
    """ONNX QLinearMatMul: MatMulInteger, then
    y = saturate(round_half_to_even(acc * (a_scale * b_scale / y_scale)) + y_zero_point).

    a_scale: scalar or one per row of A; b_scale: scalar or one per column of B; y_scale and
    y_zero_point: scalars. The multiplier is formed in float32 (as the ONNX reference does),
    the product with acc in float64. The output dtype is y_zero_point's (uint8 if untyped).
    Every scale and zero point may also be given as a 1-element array (ONNX's per-tensor
    form). y_zero_point is required, as in ONNX (its type sets the output type); a_zero_point
    and b_zero_point may be None (0).

    Parameters
    ----------
    a, b
        NumPy int8 or uint8 arrays, with numpy.matmul's shape rules (as `matmul_integer`).
    a_scale, a_zero_point
        A's scale (finite, > 0) and zero point (None: 0): a scalar or one per row of A.
    b_scale, b_zero_point
        B's scale and zero point (None: 0): a scalar or one per column of B.
    y_scale, y_zero_point
        The output's scale and zero point, scalars; y_zero_point's dtype (int8 or uint8; a
        Python int: uint8) is the output type.

    Returns
    -------
    numpy.ndarray
        y, of the output type, with A @ B's shape.

    Raises
    ------
    TypeError
        Wrong dtypes or a missing y_zero_point, the message naming the argument: a or b is
        not a NumPy int8/uint8 array; y_zero_point is None; a scale or zero point that is not
        numeric; an int16/uint16/int32/uint32 y_zero_point (the outputs are int8 and
        uint8).
    ValueError
        Bad values or shapes, the message naming the argument: shapes that do not multiply
        or broadcast; a scale that is not finite and > 0, or not a scalar / one per row or
        column; a zero point outside its type's range or of the wrong shape;
        a_scale * b_scale / y_scale overflowing float32.
    """
    if y_zero_point is None:
        raise TypeError("y_zero_point is required (ONNX QLinearMatMul): its type sets the "
                        "output type; give e.g. np.uint8(0) or np.int8(0)")
    acc = matmul_integer(a, b, a_zero_point, b_zero_point)
    sa, sb, sy = scales(a_scale, "a_scale"), scales(b_scale, "b_scale"), scales(y_scale, "y_scale")
    if sy.size != 1:
        raise ValueError("y_scale must be a scalar")
    if sa.size > 1:
        if acc.ndim < 2 or sa.size != acc.shape[-2]:
            raise ValueError("a_scale must be a scalar or have one value per row of A")
        sa = sa.reshape(-1, 1)
    if sb.size > 1 and (acc.ndim < 1 or sb.size != acc.shape[-1]):
        raise ValueError("b_scale must be a scalar or have one value per column of B")
    with np.errstate(over="ignore"):
        multiplier = (sa.reshape(sa.shape if sa.size > 1 else ()) *
                      sb.reshape(-1 if sb.size > 1 else ())) / sy.reshape(())
    if not np.all(np.isfinite(multiplier)):
        raise ValueError("a_scale * b_scale / y_scale overflows float32 (y_scale too small)")
    return _requantize(acc, np.asarray(multiplier, dtype=np.float32), y_zero_point,
                       _output_qtype(None, y_zero_point, "y_zero_point", NARROW_QTYPES,
                                     "qlinear_matmul"), "y_zero_point")




_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _int_list(value: Any, n: int, default: int, name: str, minimum: int) -> list[int]:
    if value is None:
        return [default] * n
    try:
        values = [int(v) for v in value]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}") from None
    if any(isinstance(v, bool) for v in value) or any(v != float(o) for v, o in zip(values, value)):
        raise TypeError(f"{name} must hold ints, got {value!r}")
    if len(values) != n:
        raise ValueError(f"{name} must have {n} values, got {len(values)}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}, got {values}")
    return values


def _conv_setup(x: np.ndarray, w: np.ndarray, auto_pad: str, dilations: Any, group: Any,
                kernel_shape: Any, pads: Any, strides: Any) -> tuple[np.ndarray, np.ndarray, list[int], int, bool]:
    """The 2-D form of an ONNX Conv's operands and attributes: (x4, w4, params, group, one_d)
    with params = [stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, pad_bottom, pad_right]."""
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be 3-D (N, C, L) or 4-D (N, C, H, W), got shape {x.shape}")
    if w.ndim != x.ndim:
        raise ValueError(f"w must have the rank of x ({x.ndim}), got shape {w.shape}")
    n = x.ndim - 2
    if isinstance(group, bool) or not isinstance(group, (int, np.integer)):
        raise TypeError(f"group must be an int, got {group!r}")
    group = int(group)
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    if x.shape[1] % group:
        raise ValueError(f"x has {x.shape[1]} channels, not divisible by group={group}")
    if w.shape[0] % group:
        raise ValueError(f"w has {w.shape[0]} output channels, not divisible by group={group}")
    if w.shape[1] * group != x.shape[1]:
        raise ValueError(f"w has {w.shape[1]} input channels per group; x has {x.shape[1]} "
                         f"channels in {group} groups")
    if min(w.shape) < 1:
        raise ValueError(f"w must have no empty dimension, got shape {w.shape}")
    kernel = list(w.shape[2:])
    if kernel_shape is not None and _int_list(kernel_shape, n, 1, "kernel_shape", 1) != kernel:
        raise ValueError(f"kernel_shape {list(kernel_shape)} differs from w's {kernel}")
    strides_ = _int_list(strides, n, 1, "strides", 1)
    dil = _int_list(dilations, n, 1, "dilations", 1)
    if not isinstance(auto_pad, str) or auto_pad not in _AUTO_PADS:
        raise ValueError(f"auto_pad must be one of {_AUTO_PADS}, got {auto_pad!r}")
    if auto_pad == "NOTSET":
        pads_ = _int_list(pads, 2 * n, 0, "pads", 0)
    else:
        if pads is not None:
            raise ValueError(f"pads must be None with auto_pad={auto_pad!r}")
        pads_ = [0] * (2 * n)
        if auto_pad != "VALID":
            for i in range(n):
                size = x.shape[2 + i]
                out = -(-size // strides_[i])
                total = max(0, (out - 1) * strides_[i] + (kernel[i] - 1) * dil[i] + 1 - size)
                small, large = total // 2, total - total // 2
                pads_[i], pads_[n + i] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    for i in range(n):
        if x.shape[2 + i] + pads_[i] + pads_[n + i] < (kernel[i] - 1) * dil[i] + 1:
            raise ValueError(f"the kernel ({kernel[i]} with dilation {dil[i]}) is larger than the "
                             f"padded input ({x.shape[2 + i]} + pads) along spatial axis {i}")
    if n == 1:
        x4, w4 = x[:, :, None, :], w[:, :, None, :]
        params = [1, strides_[0], 1, dil[0], 0, pads_[0], 0, pads_[1]]
    else:
        x4, w4 = x, w
        params = strides_ + dil + pads_
    return (np.ascontiguousarray(x4), np.ascontiguousarray(w4), params, group, n == 1)


def _conv_zero(zero_point: Any, ref: np.ndarray, name: str, per_channel: int = 0) -> np.ndarray:
    """A zero point of ref's type (int8/uint8): None gives 0; per_channel > 0 allows that many
    values."""
    if zero_point is None:
        return np.zeros(1, np.int32)
    z = np.asarray(zero_point)
    if isinstance(zero_point, (int, np.integer)) and not isinstance(zero_point, bool):
        info = np.iinfo(ref.dtype)   # a plain int: in range of the tensor's type
        if not info.min <= int(zero_point) <= info.max:
            raise ValueError(f"{name}={int(zero_point)} is outside the range of {ref.dtype}")
        z = z.astype(ref.dtype)
    if z.dtype != ref.dtype:
        raise TypeError(f"{name} must have the dtype of its tensor ({ref.dtype}), got {z.dtype}")
    if z.size != 1 and not (per_channel and z.ndim == 1 and z.size == per_channel):
        allowed = f"a scalar or {per_channel} values" if per_channel else "a scalar"
        raise ValueError(f"{name} must be {allowed}, got shape {z.shape}")
    return np.ascontiguousarray(z.reshape(-1), dtype=np.int32)


def conv_integer(x: ArrayLike, w: ArrayLike, x_zero_point: ArrayLike = None,
                 w_zero_point: ArrayLike = None, auto_pad: str = "NOTSET",
                 dilations: Any = None, group: int = 1, kernel_shape: Any = None,
                 pads: Any = None, strides: Any = None) -> np.ndarray:
    """ONNX ConvInteger: y = conv(x - x_zero_point, w - w_zero_point) in exact int32, NCHW.

    1-D (x (N, C, L), w (M, C/group, k)) and 2-D (x (N, C, H, W), w (M, C/group, kH, kW))
    convolutions, with ONNX's attributes. Padding reads the input zero point (padded taps add
    nothing). Depthwise convolutions (one input channel per group) run on direct kernels, the
    rest on the int8 GEMM kernels; every path gives the same int32 results (modulo 2**32 only
    where they cannot fit).

    Parameters
    ----------
    x
        int8 or uint8, (N, C, L) or (N, C, H, W).
    w
        int8 or uint8, (M, C / group, k...) of x's rank.
    x_zero_point
        None (0) or a scalar of x's dtype.
    w_zero_point
        None (0), a scalar or M values (per output channel) of w's dtype.
    auto_pad
        "NOTSET" (use pads), "SAME_UPPER", "SAME_LOWER" or "VALID".
    dilations, strides
        One int >= 1 per spatial axis (default 1).
    group
        Groups of channels (C and M divisible by it).
    kernel_shape
        Optional; must equal w's spatial shape.
    pads
        [begin..., end...] per spatial axis, >= 0 (default 0); only with auto_pad="NOTSET".

    Returns
    -------
    numpy.ndarray
        int32, (N, M, out...).

    Raises
    ------
    TypeError
        x or w not int8/uint8 arrays; a zero point of another dtype; non-int attributes.
    ValueError
        Wrong ranks or shapes, channels not divisible by group, negative pads, strides or
        dilations below 1, a kernel larger than the padded input, a bad auto_pad.
    """
    xa, wa = int8_array(x, "x"), int8_array(w, "w")
    x4, w4, params, group, one_d = _conv_setup(xa, wa, auto_pad, dilations, group,
                                               kernel_shape, pads, strides)
    xz = _conv_zero(x_zero_point, xa, "x_zero_point")
    wz = _conv_zero(w_zero_point, wa, "w_zero_point", wa.shape[0])
    packed = _C.pack_conv(w4, group, wz)
    y = _C.conv_integer(x4, int(xz[0]), packed, params)
    return y[:, :, 0, :] if one_d else y


def qlinear_conv(x: ArrayLike, x_scale: ArrayLike, x_zero_point: ArrayLike, w: ArrayLike,
                 w_scale: ArrayLike, w_zero_point: ArrayLike, y_scale: ArrayLike,
                 y_zero_point: ArrayLike, B: ArrayLike = None, auto_pad: str = "NOTSET",
                 dilations: Any = None, group: int = 1, kernel_shape: Any = None,
                 pads: Any = None, strides: Any = None) -> np.ndarray:
    """ONNX QLinearConv: acc = conv(x - x_zero_point, w - w_zero_point) + B (int32), then
    y = saturate(round_half_even(acc * (x_scale * w_scale / y_scale)) + y_zero_point), the
    multiplier formed in float32 and the product in float64, as the ONNX reference does.

    Parameters
    ----------
    x, x_scale, x_zero_point
        The quantized input (int8/uint8, 3-D or 4-D NCHW), its scalar scale and zero point (of
        x's dtype, or None for 0).
    w, w_scale, w_zero_point
        The weight (int8/uint8, (M, C / group, k...)), a scalar or M scales (per output
        channel), and a scalar or M zero points of w's dtype (or None).
    y_scale, y_zero_point
        The output's scalar scale and zero point; the zero point's dtype (int8 / uint8) is the
        output type (None: x's dtype, zero point 0).
    B
        Optional int32 bias, M values.
    auto_pad, dilations, group, kernel_shape, pads, strides
        As `conv_integer`.

    Returns
    -------
    numpy.ndarray
        int8 or uint8, (N, M, out...).

    Raises
    ------
    TypeError, ValueError
        As `conv_integer`; also scales that are not finite and > 0, a w_scale of the wrong
        size, B not int32 of M values, x_scale * w_scale / y_scale overflowing float32.
    """
    xa, wa = int8_array(x, "x"), int8_array(w, "w")
    x4, w4, params, group, one_d = _conv_setup(xa, wa, auto_pad, dilations, group,
                                               kernel_shape, pads, strides)
    m = wa.shape[0]
    xz = _conv_zero(x_zero_point, xa, "x_zero_point")
    wz = _conv_zero(w_zero_point, wa, "w_zero_point", m)
    sx, sw, sy = scales(x_scale, "x_scale"), scales(w_scale, "w_scale"), scales(y_scale, "y_scale")
    if sx.size != 1 or sy.size != 1:
        raise ValueError("x_scale and y_scale must be scalars")
    if sw.size not in (1, m):
        raise ValueError(f"w_scale must be a scalar or have {m} values (one per output channel)")
    with np.errstate(over="ignore"):
        mult = (sx.reshape(()) * sw.reshape(-1)) / sy.reshape(())
    if not np.all(np.isfinite(mult)):
        raise ValueError("x_scale * w_scale / y_scale overflows float32 (y_scale too small)")
    mult = np.ascontiguousarray(np.broadcast_to(mult, (m,)), dtype=np.float32)
    if y_zero_point is None:
        out_type, yz = xa.dtype.name, 0
    else:
        z = np.asarray(y_zero_point)
        if z.dtype not in (np.int8, np.uint8) or z.size != 1:
            raise TypeError(f"y_zero_point must be one int8 or uint8 value, got {z.dtype} of shape {z.shape}")
        out_type, yz = z.dtype.name, int(z.reshape(()))
    bias = None
    if B is not None:
        b = np.asarray(B)
        if b.dtype != np.int32 or b.shape != (m,):
            raise ValueError(f"B must be int32 with shape ({m},), got {b.dtype} {b.shape}")
        bias = np.ascontiguousarray(b)
    packed = _C.pack_conv(w4, group, wz)
    y = _C.qlinear_conv(x4, int(xz[0]), packed, params, bias, mult, yz,
                        _C.QType.uint8 if out_type == "uint8" else _C.QType.int8)
    return y[:, :, 0, :] if one_d else y
