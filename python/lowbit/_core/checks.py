"""Input normalization shared by the public functions: clear errors, copies only when needed,
and never a write into the caller's arrays."""
from __future__ import annotations

import numbers
from typing import Any, Collection

import numpy as np

from .halfs import is_bfloat16, widen_bfloat16

from . import _C

QTYPES: dict[str, tuple[np.dtype, int, int]] = {
    "int8": (np.dtype(np.int8), -128, 127),
    "uint8": (np.dtype(np.uint8), 0, 255),
    "int4": (np.dtype(np.int8), -8, 7),
    "uint4": (np.dtype(np.uint8), 0, 15),
    "int16": (np.dtype(np.int16), -32768, 32767),
    "uint16": (np.dtype(np.uint16), 0, 65535),
}
# The types of everything past the ONNX primitives and QTensor (packed weights, layers,
# observers, saved files, requantize): their kernels take and give 8-bit values, so the
# 16-bit types are quantize_linear's, dequantize_linear's and lowbit.quantize's only.
NARROW_QTYPES: tuple[str, ...] = ("int8", "uint8", "int4", "uint4")
# The C++ enum of each quantized type name (exported from _C, never mirrored by hand).
QTYPE_CODES = {name: _C.QType.__members__[name] for name in QTYPES}


def qtype_name(dtype: Any, supported: Collection[str] = tuple(QTYPES)) -> str:
    """Normalizes 'int8' | np.int8 | np.dtype('int8') | 'int4' ... to a name in `supported`
    (every name in QTYPES unless the caller takes fewer)."""
    if isinstance(dtype, str):
        name = dtype.lower()
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"unknown quantized dtype {dtype!r}") from None
    if name not in supported:
        raise ValueError(f"unsupported quantized dtype {dtype!r}; expected one of "
                         f"{sorted(supported)}")
    return name


def kernel_array(a: np.ndarray) -> np.ndarray:
    """A C-contiguous, aligned view of `a`, copying only when it is not already contiguous and
    aligned (the extension refuses other arrays rather than copy them behind the caller's back)."""
    if a.flags.c_contiguous and a.flags.aligned:
        return a
    return np.require(a, requirements=["C", "A"])


def float_array(x: Any, name: str) -> np.ndarray:
    """float32 input: float32/float16/bfloat16 arrays, or Python numbers/lists. float64 arrays
    are refused (a silent float64 -> float32 cast would change the quantized values); the
    16-bit floats widen exactly."""
    if isinstance(x, np.ndarray):
        if x.dtype == np.float32:
            return kernel_array(x)
        if x.dtype == np.float16:
            return np.asarray(x, dtype=np.float32, order="C")
        if is_bfloat16(x.dtype):
            return widen_bfloat16(x)
        raise TypeError(f"{name} must be a float32 array, got dtype {x.dtype}"
                        + (" (cast it with .astype(np.float32))" if x.dtype.kind == "f" else ""))
    if isinstance(x, (numbers.Real, list, tuple)) and not isinstance(x, bool):
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold numbers")
        return np.asarray(arr, dtype=np.float32, order="C")
    raise TypeError(f"{name} must be a NumPy float32 array, got {type(x).__name__}")


def int8_array(a: Any, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy int8 or uint8 array, got {type(a).__name__}")
    if a.dtype not in (np.int8, np.uint8):
        raise TypeError(f"{name} must have dtype int8 or uint8, got {a.dtype}")
    return a


def per_tensor_form(a: np.ndarray, block_size: int = 0) -> np.ndarray:
    """ONNX gives a per-tensor scale or zero point either as a scalar or as a 1-element 1-D
    array: both become 0-d here, so either form, in any mix, is per tensor (with block_size
    > 0 the shapes are the blocked ones and stay as given)."""
    if block_size == 0 and a.ndim == 1 and a.size == 1:
        return a.reshape(())
    return a


def scales(scale: Any, name: str = "scale") -> np.ndarray:
    """Scales as float32 (16-bit floats, bfloat16 included, widened exactly); each must be
    finite and > 0."""
    if scale is None:
        raise TypeError(f"{name} must be a floating-point number or array, got None")
    arr = np.asarray(scale)
    if is_bfloat16(arr.dtype):
        arr = widen_bfloat16(arr)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be a floating-point number or array, got dtype {arr.dtype}")
    arr = kernel_array(np.asarray(arr, dtype=np.float32))
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (got NaN or Inf, or a value beyond float32)")
    if arr.size and not np.all(arr > 0):
        raise ValueError(f"{name} must be > 0, got min {arr.min()!r}")
    return arr


def zero_points(zero_point: Any, lo: int, hi: int, name: str = "zero_point") -> np.ndarray:
    """Zero points as int32, each within [lo, hi]."""
    if zero_point is None:
        raise TypeError(f"{name} must be an integer or an array of integers, got None")
    arr = np.asarray(zero_point)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return kernel_array(np.asarray(arr, dtype=np.int32))


def check_bool(value: Any, name: str) -> bool:
    """Booleans must be booleans: None, 0, "yes" or "no" would each be read as True or False
    without a word (symmetric=None gave asymmetric weights). Python and NumPy bools only."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def group_for_axis(group_size: int, length: int) -> int:
    """The one rule for a group (block) longer than the axis it groups: it is one group of the
    whole axis, as ONNX blocked quantization treats a block longer than the axis. Every
    grouped quantization (quantize, pack_weight of a float weight or a QTensor, from_float,
    from_config, quantize_, embeddings) uses it, so each gives the same group for the same
    request; values are identical either way (one group covers the axis)."""
    return min(group_size, length) if length else group_size


def normalize_axis(axis: int, ndim: int, name: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} dimensions")
    return int(axis) % ndim


def require_finite(x: np.ndarray, name: str) -> None:
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or Inf values; they cannot be quantized")
