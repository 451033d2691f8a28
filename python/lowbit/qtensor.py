"""QTensor: quantized data with its scale/zero-point bookkeeping, and `quantize` to make one.

Rules (docs/numeric_contract.md):
- symmetric: zero point 0 (signed types) or the type's midpoint (128 for uint8, 8 for uint4,
  32768 for uint16), scale = max|x| / qmax_sym with qmax_sym = 127 (int8/uint8), 7 (int4/uint4)
  or 32767 (int16/uint16), so values use the restricted range [-127, 127] (or [-7, 7],
  [-32767, 32767]) around the zero point;
- asymmetric: the range [min(0, x_min), max(0, x_max)] maps onto the whole type range;
- a scale that computes to 0 (all-zero or underflowing range) becomes 1.0;
- NaN or Inf in x raise ValueError.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._core import _C
from ._core.checks import (QTYPE_CODES, QTYPES, check_bool, float_array, group_for_axis,
                           kernel_array, normalize_axis, qtype_name, require_finite)
from ._core.halfs import HALF_TYPES, widen
from .ops import dequantize_linear, quantize_linear

_SYMMETRIC_ZERO = {"int8": 0, "uint8": 128, "int4": 0, "uint4": 8, "int16": 0, "uint16": 32768,
                   "float16": 0, "bfloat16": 0}
_BITS = {"int8": 8, "uint8": 8, "int4": 4, "uint4": 4, "int16": 16, "uint16": 16, "float16": 16,
         "bfloat16": 16}


@dataclass(frozen=True)
class QTensor:
    """Quantized tensor. `data` holds one value per element (4-bit values one per byte, 16-bit
    values one per int16/uint16 element);
    `scale`/`zero_point` are per tensor (0-d), per channel along `axis` (1-D), or per group of
    `group_size` elements along `axis` (the data's shape with that axis divided into groups).

    16-bit float weights ("float16", "bfloat16": `PackedWeight.qtensor`, and the configs
    Float16WeightOnlyConfig / BFloat16WeightOnlyConfig) are QTensors too: `data` holds their bit
    patterns as uint16 (NumPy has no bfloat16), per tensor with scale 1.0 and zero point 0.

    Made by `lowbit.quantize` (or `PackedWeight.qtensor`); a QTensor built by hand is taken as
    given, and the functions it is passed to check it.

    Parameters
    ----------
    data
        The quantized values: int8 (int8, int4), uint8 (uint8, uint4), int16 or uint16
        storage.
    scale
        float32 scales, > 0: 0-d, 1-D along `axis`, or grouped (see above).
    zero_point
        Zero points of `scale`'s shape, in data's storage dtype.
    dtype
        "int8", "uint8", "int4", "uint4", "int16" or "uint16" (16-bit integer QTensors are
        for `dequantize` and the ONNX primitives: `pack_weight` and the layers take 8 and 4
        bits), or "float16" / "bfloat16" (see above).
    axis
        None (per tensor), the per-channel axis, or the grouped axis.
    group_size
        None, or the group along `axis`.

    Raises
    ------
    None
        The fields are not checked here (dequantize and pack_weight check what they use).
    """

    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    dtype: str
    axis: Optional[int] = None
    group_size: Optional[int] = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def symmetric(self) -> bool:
        return bool(np.all(self.zero_point == _SYMMETRIC_ZERO[self.dtype]))

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized representation: data (4-bit values packed two per byte),
        float32 scales, and zero points unless symmetric."""
        bits = _BITS[self.dtype]
        data_bytes = (self.data.size * bits + 7) // 8
        zp_bytes = 0 if self.symmetric else (self.zero_point.size * bits + 7) // 8
        return data_bytes + self.scale.nbytes + zp_bytes

    def dequantize(self) -> np.ndarray:
        """x = (data - zero_point) * scale, per tensor, channel or group (`dequantize_linear`).

        Returns
        -------
        numpy.ndarray
            float32, data's shape.

        Raises
        ------
        TypeError
            A hand-built QTensor whose data is not a NumPy int8/uint8/int16/uint16 (or int32)
            array (see `dequantize_linear`).
        ValueError
            A hand-built QTensor whose scales are not finite and > 0, or whose shapes do not
            fit its axis and group_size.
        """
        if self.dtype in HALF_TYPES:
            return widen(self.data, self.dtype)
        if self.group_size:
            assert self.axis is not None  # quantize() always records the grouped axis
            return dequantize_linear(self.data, self.scale, self.zero_point, axis=self.axis,
                                     block_size=self.group_size)
        return dequantize_linear(self.data, self.scale, self.zero_point,
                                 axis=self.axis if self.axis is not None else 0)


def _range_to_params(lo: np.ndarray, hi: np.ndarray, name: str, symmetric: bool
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Scale (float32) and zero point (int32) of each range [lo, hi], lo and hi of one shape:
    lowbit's one rule, in C++ (lowbit::range_params, lowbit.h documents its float32 order), so
    the NumPy layer, pack_weight's fused pass and the kernels' tests use the same code."""
    shape = np.shape(lo)
    lo32 = np.ascontiguousarray(np.asarray(lo, dtype=np.float32).reshape(-1))
    hi32 = np.ascontiguousarray(np.asarray(hi, dtype=np.float32).reshape(-1))
    scale, zero = _C.range_params(lo32, hi32, QTYPE_CODES[name], bool(symmetric))
    return scale.reshape(shape), zero.reshape(shape)


CLIP_RATIOS = np.linspace(1.0, 0.5, 11).astype(np.float32)
_SEARCH_CHUNK = 1 << 22   # elements per step of the clip search (bounds its temporaries)


def _search_clip(units: np.ndarray, lo: np.ndarray, hi: np.ndarray, name: str,
                 symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """The range [lo * r, hi * r] per unit (a row of `units`, zero padded) whose quantization
    has the least squared error, r in CLIP_RATIOS: clipping a few outliers buys resolution for
    every other value of the unit."""
    _, qmin, qmax = QTYPES[name]
    best = np.ones(lo.shape, np.float32)
    step = max(1, _SEARCH_CHUNK // max(units.shape[1], 1))
    for start in range(0, units.shape[0], step):
        part = slice(start, start + step)
        u = units[part]
        best_err = np.full(u.shape[0], np.inf)
        for r in CLIP_RATIOS:
            scale, zero = _range_to_params(lo[part] * r, hi[part] * r, name, symmetric)
            s, z = scale[:, None], zero[:, None].astype(np.float32)
            with np.errstate(over="ignore", invalid="ignore"):
                q = np.clip(np.rint(u / s) + z, qmin, qmax)
                err = (((q - z) * s - u) ** 2).sum(axis=1, dtype=np.float64)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best[part] = np.where(better, r, best[part])
    return lo * best, hi * best


def _group_params(x: np.ndarray, axis: int, group_size: int, name: str, symmetric: bool,
                  clip_search: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point per group of `group_size` consecutive elements along `axis` (the
    last group may be shorter, as in ONNX blocked quantization), from the group's range
    [min(0, min), max(0, max)] (optionally clipped by _search_clip)."""
    moved = np.moveaxis(x, axis, -1)
    dim = moved.shape[-1]
    groups = -(-dim // group_size)
    if dim == 0 or moved.size == 0:
        lo = hi = np.zeros(moved.shape[:-1] + (groups,), np.float32)
    else:
        starts = np.arange(0, dim, group_size)
        lo = np.minimum(np.minimum.reduceat(moved, starts, axis=-1), 0)
        hi = np.maximum(np.maximum.reduceat(moved, starts, axis=-1), 0)
        if clip_search:
            pad = [(0, 0)] * (moved.ndim - 1) + [(0, groups * group_size - dim)]
            units = np.pad(moved, pad).reshape(-1, group_size)
            lo_c, hi_c = _search_clip(units, lo.reshape(-1), hi.reshape(-1), name, symmetric)
            lo, hi = lo_c.reshape(lo.shape), hi_c.reshape(hi.shape)
    scale, zero = _range_to_params(lo, hi, name, symmetric)
    return np.moveaxis(scale, -1, axis), np.moveaxis(zero, -1, axis)


def quantize(x: Any, dtype: Any = "int8", symmetric: bool = True, axis: Optional[int] = None,
             group_size: Optional[int] = None, clip_search: bool = False) -> QTensor:
    """Quantizes a float32 array.

    axis=None, group_size=None: one scale for the tensor. axis=k: one scale per index along k
    (per channel; for a weight (out_features, in_features) use axis=0). group_size=g: one scale
    per g consecutive elements along `axis` (default the last axis); when the axis length is not
    a multiple of g the last group is shorter (ONNX blocked quantization), so `scale` has
    ceil(length / g) entries along that axis.

    clip_search=True (per channel or per group): instead of each unit's full range, use the
    range scaled by the ratio in CLIP_RATIOS (1.0 down to 0.5) whose quantization has the least
    squared error; it helps low bit widths on weights with outliers. Off by default.

    A group_size larger than the axis is one group of the whole axis (ONNX blocked
    quantization), and the QTensor records that group (the axis length), the rule every
    grouped quantization follows (lowbit._core.checks.group_for_axis).

    Parameters
    ----------
    x
        float32 data (or float16 or bfloat16, widened exactly, or Python numbers).
    dtype
        "int8" (default), "uint8", "int4", "uint4" (4-bit values are stored one per byte),
        "int16" or "uint16".
    symmetric
        True (default): the symmetric rule of the module docstring; False: the range
        [min(0, x_min), max(0, x_max)] onto the type's whole range, with a zero point.
    axis
        None (per tensor, or with group_size: the last axis), or the per-channel / grouped
        axis (negative values count from the end).
    group_size
        None, or a positive int: elements per group along `axis`.
    clip_search
        Search the clipping ratio per channel or group (needs axis or group_size).

    Returns
    -------
    QTensor
        data in the storage dtype (int8 for int8/int4, uint8 for uint8/uint4, int16, uint16),
        scale (float32) and zero_point of the per-tensor (0-d), per-channel (1-D) or grouped
        shape, with the axis and group actually used.

    Raises
    ------
    TypeError
        An x that is not float32/float16/bfloat16 (float64 included: cast it first);
        symmetric / clip_search that is not a bool; an axis that is not an int; a dtype that
        is not a type name.
    ValueError
        NaN/Inf in x, bad axis or group_size (out of range, not a positive int, a 0-d x);
        an unsupported dtype; clip_search per tensor.
    """
    return quantize_array(x, "x", dtype, symmetric, axis, group_size, clip_search)


def channel_params(w: np.ndarray, what: str, name: str, symmetric: bool, clip_search: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point per row of a non-empty 2-D float32 array (per output channel, axis
    0): one C++ pass finds each row's range and any NaN/Inf (row_ranges), optionally clipped by
    _search_clip, then _range_to_params. quantize(axis=0) and pack_weight share it."""
    lo, hi = _C.row_ranges(kernel_array(w), what)
    if clip_search:
        lo, hi = _search_clip(w, lo, hi, name, symmetric)
    return _range_to_params(lo, hi, name, symmetric)


def quantize_array(x: Any, what: str, dtype: Any = "int8", symmetric: bool = True,
                   axis: Optional[int] = None, group_size: Optional[int] = None,
                   clip_search: bool = False) -> QTensor:
    """`quantize`, with the argument's name for its errors (pack_weight's "weight")."""
    xa = float_array(x, what)
    # A weight's rows (2-D, per channel along axis 0): one C++ pass finds each row's range and
    # any NaN/Inf (row_ranges), instead of three passes of NumPy.
    by_rows = (group_size is None and not isinstance(axis, bool) and isinstance(axis, (int, np.integer))
               and xa.ndim == 2 and axis in (0, -2) and xa.size > 0)
    if not by_rows:
        require_finite(xa, what)
    symmetric = check_bool(symmetric, "symmetric")
    clip_search = check_bool(clip_search, "clip_search")
    name = qtype_name(dtype)
    storage = QTYPES[name][0]
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) \
                or group_size <= 0:
            raise ValueError(f"group_size must be a positive int, got {group_size!r}")
        if xa.ndim == 0:
            raise ValueError("group_size needs an array with at least one dimension")
        ax = normalize_axis(-1 if axis is None else axis, xa.ndim)
        g = group_for_axis(int(group_size), xa.shape[ax])
        scale, zero = _group_params(xa, ax, g, name, symmetric, clip_search)
        data = quantize_linear(xa, scale, zero.astype(storage), axis=ax, block_size=g, dtype=name)
        return QTensor(data, scale, zero.astype(storage), name, ax, g)
    if axis is None:
        if clip_search:
            raise ValueError("clip_search applies to per-channel (axis) or per-group quantization")
        lo = np.float32(xa.min(initial=0)) if xa.size else np.float32(0)
        hi = np.float32(xa.max(initial=0)) if xa.size else np.float32(0)
        scale, zero = _range_to_params(np.asarray(lo), np.asarray(hi), name, symmetric)
        data = quantize_linear(xa, scale, zero.astype(storage), dtype=name)
        return QTensor(data, scale, zero.astype(storage), name, None, None)
    if xa.ndim == 0:
        raise ValueError("per-channel quantization needs an array with at least one dimension")
    ax = normalize_axis(axis, xa.ndim)
    reduce_axes = tuple(i for i in range(xa.ndim) if i != ax)
    if by_rows:
        scale, zero = channel_params(xa, what, name, symmetric, clip_search)
        data = quantize_linear(xa, scale, zero.astype(storage), axis=ax, dtype=name)
        return QTensor(data, scale, zero.astype(storage), name, ax, None)
    else:
        lo_c = np.asarray(xa.min(axis=reduce_axes, initial=0) if xa.size
                          else np.zeros(xa.shape[ax], np.float32)).reshape(-1)
        hi_c = np.asarray(xa.max(axis=reduce_axes, initial=0) if xa.size
                          else np.zeros(xa.shape[ax], np.float32)).reshape(-1)
    if clip_search and xa.size:
        lo_c, hi_c = _search_clip(np.moveaxis(xa, ax, 0).reshape(xa.shape[ax], -1), lo_c, hi_c,
                                  name, symmetric)
    scale, zero = _range_to_params(lo_c, hi_c, name, symmetric)
    data = quantize_linear(xa, scale, zero.astype(storage), axis=ax, dtype=name)
    return QTensor(data, scale, zero.astype(storage), name, ax, None)
