"""The 16-bit float weight types (float16, bfloat16) in NumPy: the one place their names, their
storage (bit patterns in uint16: NumPy has no bfloat16) and their exact widening to float32 live.
Rounding float32 to them is the packer's (C++, lowbit::PackedHalfMatrix: nearest even, refusing
a value that would round to Inf); `round_to_half` here is its NumPy twin, for QTensors."""
from __future__ import annotations

from typing import Any

import numpy as np

# The 16-bit float weight types, by the name PackedWeight.dtype and QTensor.dtype use.
HALF_TYPES = ("float16", "bfloat16")
# The largest finite magnitude of each, and the magnitude from which float32 rounds to Inf.
HALF_MAX = {"float16": 65504.0, "bfloat16": float(np.float32(3.3895313892515355e38))}


def is_bfloat16(dtype: np.dtype) -> bool:
    """ml_dtypes' bfloat16, known by its name and size (lowbit never imports ml_dtypes)."""
    return dtype.name == "bfloat16" and dtype.itemsize == 2


def half_type_of(dtype: Any) -> str:
    """The 16-bit float type a NumPy dtype is ("float16", or "bfloat16" for ml_dtypes'
    bfloat16), or "" for any other dtype."""
    dt = np.dtype(dtype)
    if dt == np.float16:
        return "float16"
    return "bfloat16" if is_bfloat16(dt) else ""


def widen_bfloat16(a: np.ndarray) -> np.ndarray:
    """float32 of a bfloat16 array (or of bfloat16 bit patterns in uint16), exactly: a bfloat16
    is the high half of a float32 (NaN, Inf and subnormals included), so its 16 bits shifted up
    are that float32."""
    bits = np.asarray(a, order="C").view(np.uint16).astype(np.uint32)
    bits <<= np.uint32(16)   # in place: a 0-d array stays an array
    return bits.view(np.float32)


def bfloat16_bits(y: np.ndarray) -> np.ndarray:
    """The bits (uint16) of float32 values rounded to bfloat16: to nearest, ties to even, on
    the bit pattern (the high half, plus one where the low half is above 0x8000 or is 0x8000
    with an odd high half; a carry moves into the exponent, so the largest values round to
    Inf as IEEE says). NaN, whose rounding could carry into a wrong value, becomes the quiet
    NaN 0x7FC0 with its sign, as ml_dtypes' own conversion gives it. The C++ packer's
    float_to_bfloat16 (csrc/kernels/half_float.h) is the same rounding for finite values."""
    bits = np.asarray(y, np.float32).view(np.uint32)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) \
        >> np.uint32(16)
    nan = ((bits >> np.uint32(16)) & np.uint32(0x8000)) | np.uint32(0x7FC0)
    return np.where(np.isnan(y), nan, rounded).astype(np.uint16)


def to_bits(a: np.ndarray) -> np.ndarray:
    """A float16 or ml_dtypes.bfloat16 array's bit patterns (uint16, a view when possible)."""
    return np.ascontiguousarray(a).view(np.uint16)


def widen(bits: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values of `dtype`'s bit patterns (uint16), exactly: float16 via NumPy's
    conversion, bfloat16 as the upper half of a float32."""
    b = np.asarray(bits, dtype=np.uint16)
    if dtype == "float16":
        return b.view(np.float16).astype(np.float32)
    return widen_bfloat16(b)


def round_to_half(w: np.ndarray, dtype: str, name: str = "weight") -> np.ndarray:
    """float32 `w` rounded to `dtype` (nearest, ties to even), as bit patterns (uint16): the
    packer's rule. Raises ValueError for NaN/Inf or a value that would round to Inf."""
    w32 = np.asarray(w, dtype=np.float32)
    if not np.all(np.isfinite(w32)):
        raise ValueError(f"{name} holds NaN or Inf values")
    if dtype == "float16":
        with np.errstate(over="ignore"):
            bits = w32.astype(np.float16).view(np.uint16)
        exp_mask = 0x7C00
    else:
        bits = bfloat16_bits(w32)
        exp_mask = 0x7F80
    over = (bits & exp_mask) == exp_mask
    if np.any(over):
        v = w32[over].flat[0]
        raise ValueError(f"{name} value {v} is outside the {dtype} range (|w| must round to at "
                         f"most {HALF_MAX[dtype]:g}; it would become Inf)")
    return np.ascontiguousarray(bits)
