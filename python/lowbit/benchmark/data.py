"""Benchmark operands and result checks.

Operands are seeded by shape, so every worker subprocess builds the same data, and every
method's first result is checked against a float64 reference before it is timed.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

SEED = 20240611
FLOAT_CHECK_TOLERANCE = 0.05  # relative RMS error of an int8 linear vs the float64 reference
INT4_CHECK_TOLERANCE = 0.2    # the same for 4-bit weights (about 0.1 for these Gaussian weights)


def make_weight(K: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    """The float32 (N, K) weight and (N,) bias; the same in every worker for a given shape."""
    rng = np.random.default_rng([SEED, K, N])
    w = rng.standard_normal((N, K), dtype=np.float32) * np.float32(1.0 / math.sqrt(K))
    b = rng.standard_normal(N, dtype=np.float32) * np.float32(0.1)
    return w, b


def make_x(M: int, K: int) -> np.ndarray:
    return np.random.default_rng([SEED, 1, M, K]).standard_normal((M, K), dtype=np.float32)


def make_a(M: int, K: int) -> np.ndarray:
    return np.random.default_rng([SEED, 2, M, K]).integers(0, 256, (M, K), dtype=np.uint8)


def weight_copy(w: np.ndarray, i: int) -> np.ndarray:
    # Rolling along K gives distinct bytes (nothing can share or dedupe copies) while every row
    # keeps its value set, so per-channel scales, and the work, stay the same.
    return w if i == 0 else np.roll(w, i, axis=1)


def quantize_per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output row: the weight format of both MatMulInteger methods."""
    scale = np.abs(w).max(axis=1) / np.float32(127)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def check_columns(N: int, count: int = 256) -> np.ndarray:
    """Columns checked against the reference: spread over N, last included (edge tiles)."""
    return np.unique(np.append(np.linspace(0, N - 1, min(N, count)).astype(np.int64), N - 1))


def quantize_int4_groups(w: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 per group of `group` input features (K a multiple of it): the weight
    format every 4-bit method is given. q in [-7, 7] (int8), scale (N, K / group)."""
    N, K = w.shape
    grouped = w.reshape(N, K // group, group)
    scale = np.abs(grouped).max(axis=2) / np.float32(7)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(grouped / scale[:, :, None]), -8, 7).astype(np.int8).reshape(N, K)
    return q, scale


def check_float(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], y: np.ndarray,
                tolerance: float = FLOAT_CHECK_TOLERANCE) -> str:
    """Relative RMS error of y against the float64 x @ w.T + b, on a row/column subset."""
    rows, cols = slice(0, min(x.shape[0], 8)), check_columns(w.shape[0])
    ref = x[rows].astype(np.float64) @ w[cols].astype(np.float64).T
    if b is not None:
        ref += b[cols]
    got = np.asarray(y, dtype=np.float64)[rows][:, cols]
    err = float(np.sqrt(np.mean((got - ref) ** 2) / max(np.mean(ref ** 2), 1e-30)))
    if not err <= tolerance:
        raise RuntimeError(f"wrong result: relative RMS error {err:.3g} > {tolerance}")
    return f"rel_rms_err={err:.2g}"


def check_int(a: np.ndarray, q: np.ndarray, c: np.ndarray) -> str:
    """c must equal a @ q.T exactly (float64 is exact here: |sums| < 2**53)."""
    rows, cols = slice(0, min(a.shape[0], 8)), check_columns(q.shape[0])
    ref = a[rows].astype(np.float64) @ q[cols].astype(np.float64).T
    got = np.asarray(c)[rows][:, cols]
    if got.dtype != np.int32:
        raise RuntimeError(f"wrong result dtype {got.dtype}, expected int32")
    bad = int(np.count_nonzero(got.astype(np.float64) != ref))
    if bad:
        raise RuntimeError(f"wrong result: {bad} of {ref.size} checked int32 values differ")
    return "exact"
