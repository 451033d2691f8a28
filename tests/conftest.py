"""Shared fixtures and NumPy oracles for the lowbit test suite.

Every oracle here is written from the numeric contract (docs / DESIGN section 1), independently of
lowbit's own code: integer GEMMs are computed exactly in 64-bit (then reduced modulo 2**32), float
math reproduces the documented float32 operations one by one.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import lowbit

ISAS: list[str] = list(lowbit.cpu_info()["available"])
# every path lowbit knows: the dispatch table's rows, usable here or not
ALL_ISAS: tuple[str, ...] = tuple(ISAS) + tuple(lowbit.cpu_info()["unavailable"])

QRANGE = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7), "uint4": (0, 15),
          "int16": (-32768, 32767), "uint16": (0, 65535)}
STORAGE = {"int8": np.int8, "uint8": np.uint8, "int4": np.int8, "uint4": np.uint8,
           "int16": np.int16, "uint16": np.uint16}


# ---------------------------------------------------------------------------------------------
# optional dependencies: LOWBIT_REQUIRE_OPTIONAL=1 turns their skips into failures
# ---------------------------------------------------------------------------------------------
REQUIRE_OPTIONAL = "LOWBIT_REQUIRE_OPTIONAL"
_importorskip = pytest.importorskip


def require_optional() -> bool:
    """Read at every call, so a test can set the variable with monkeypatch."""
    return os.environ.get(REQUIRE_OPTIONAL) == "1"


@functools.wraps(_importorskip)
def importorskip(modname: str, *args: Any, **kwargs: Any) -> Any:
    """pytest.importorskip, except that with LOWBIT_REQUIRE_OPTIONAL=1 a missing (or too old)
    optional dependency fails the test, or the collection of its file for a module-level call,
    instead of skipping it: a CI that installs every extra must run every test, and a broken
    install must not pass as a green run that skipped whole files."""
    try:
        return _importorskip(modname, *args, **kwargs)
    except pytest.skip.Exception as e:
        if not require_optional():
            raise
        pytest.fail(f"{REQUIRE_OPTIONAL}=1 and the optional dependency {modname!r} is "
                    f"unavailable ({e.msg})", pytrace=False)


def pytest_configure(config: pytest.Config) -> None:
    # The test files call pytest.importorskip (some at import, before any fixture runs), so the
    # wrapper replaces it for the session, installed when this conftest loads.
    pytest.importorskip = importorskip


def pytest_unconfigure(config: pytest.Config) -> None:
    pytest.importorskip = _importorskip


# ---------------------------------------------------------------------------------------------
# experiments shared with bench/
# ---------------------------------------------------------------------------------------------
BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str) -> ModuleType:
    """bench/<name>.py as a module (bench/ is a folder of scripts, not a package), so a test
    runs the benchmark's own experiment code instead of a copy of it."""
    key = f"lowbit_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module   # before running it: dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    return module


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(params=ISAS, ids=ISAS)
def isa(request):
    """Runs the test on one kernel path (every path this CPU offers)."""
    with lowbit.use_isa(request.param):
        assert lowbit.get_isa() == request.param
        yield request.param


@pytest.fixture
def rng(request):
    """A generator seeded from the test id: reproducible, and different for every test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True)
def _restore_process_state(request):
    """Tests that change the thread count or the ISA must not leak it into later tests.

    Importing lowbit.torch moves the kernels onto PyTorch's OpenMP threads for the whole
    process; tests in modules that do not import torch run on lowbit's own pool, so its thread
    counts (not torch's) are the ones they exercise."""
    isa0, threads0 = lowbit.get_isa(), lowbit.get_num_threads()
    runtime0 = lowbit.parallel_runtime()
    if runtime0 != "lowbit" and "torch" not in vars(request.module):
        lowbit._C._use_own_threads()
    yield
    if lowbit.parallel_runtime() != runtime0:
        if runtime0 == "lowbit":
            lowbit._C._use_own_threads()
        else:
            lowbit._C._use_openmp_runtime(runtime0.split(":", 1)[1])
    if lowbit.get_isa() != isa0:
        lowbit.set_isa(isa0)
    if lowbit.get_num_threads() != threads0:
        lowbit.set_num_threads(threads0)


# ---------------------------------------------------------------------------------------------
# integer references
# ---------------------------------------------------------------------------------------------
def wrap_int32(v) -> np.ndarray:
    """Reduces int64 values modulo 2**32 into int32 (two's complement), explicitly."""
    v = np.asarray(v, dtype=np.int64)
    return (((v + 2**31) % 2**32) - 2**31).astype(np.int32)


def centered(x, zero_point=None, axis_of_zp: str = "none") -> np.ndarray:
    """x - zero_point in int64. axis_of_zp: 'row' (one per row, i.e. along axis -2) or 'col'
    (one per column, along axis -1) or anything for scalars/None."""
    v = np.asarray(x).astype(np.int64)
    if zero_point is None:
        return v
    z = np.asarray(zero_point).astype(np.int64)
    if z.ndim == 1 and axis_of_zp == "row":
        z = z.reshape(-1, 1)
    return v - z


def matmul_i64(a_c: np.ndarray, b_c: np.ndarray) -> np.ndarray:
    """Exact int64 matmul of already-centred int64 operands (numpy.matmul rules).

    Large problems go through float64 BLAS, which is exact here: every product and partial sum
    is an integer of magnitude <= K * 255 * 255 < 2**53, so no rounding happens in any order.
    """
    a_c = np.asarray(a_c, dtype=np.int64)
    b_c = np.asarray(b_c, dtype=np.int64)
    k = a_c.shape[-1]
    amax = int(np.abs(a_c).max(initial=0))
    bmax = int(np.abs(b_c).max(initial=0))
    if a_c.size * (b_c.shape[-1] if b_c.ndim > 1 else 1) <= 200_000:
        return np.matmul(a_c, b_c)
    assert k * amax * bmax < 2**53
    return np.rint(np.matmul(a_c.astype(np.float64), b_c.astype(np.float64))).astype(np.int64)


def ref_matmul_integer(a, b, a_zero_point=None, b_zero_point=None) -> np.ndarray:
    """ONNX MatMulInteger oracle: (a - za) @ (b - zb) in int64, reduced mod 2**32 to int32.
    za: scalar or per row of A (M,); zb: scalar or per column of B (N,)."""
    a_c = centered(a, a_zero_point, "row")
    b_c = centered(b, b_zero_point, "col")
    return wrap_int32(matmul_i64(a_c, b_c))


# ---------------------------------------------------------------------------------------------
# float32 references
# ---------------------------------------------------------------------------------------------
F32 = np.float32


def ref_quantize_linear(x, scale, zero_point, qtype: str) -> np.ndarray:
    """saturate(rint(x / scale) + zp), float32 division, half to even; scale/zp already
    broadcast to x's shape (or scalars)."""
    lo, hi = QRANGE[qtype]
    x = np.asarray(x, dtype=F32)
    s = np.asarray(scale, dtype=F32)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        q = np.rint(x / s)  # float32 / float32 -> correctly rounded float32
    assert q.dtype == F32
    z = np.zeros((), F32) if zero_point is None else np.asarray(zero_point).astype(F32)
    q = q + z
    return np.clip(q, lo, hi).astype(np.int64).astype(STORAGE[qtype])


def ref_dynamic_params(x) -> tuple[np.float32, int]:
    """ONNX DynamicQuantizeLinear scale/zero point in float32, plus lowbit's documented rules
    beyond ONNX (overflowing range: max/255 - min/255; zero scale -> 1)."""
    x = np.asarray(x, dtype=F32)
    mn = F32(min(F32(0), x.min())) if x.size else F32(0)
    mx = F32(max(F32(0), x.max())) if x.size else F32(0)
    with np.errstate(over="ignore"):
        scale = F32((mx - mn) / F32(255))
    if not np.isfinite(scale):
        scale = F32(mx / F32(255) - mn / F32(255))
    if scale == 0:
        scale = F32(1)
    zp = int(np.clip(np.rint(F32(F32(0) - mn) / scale), 0, 255))
    return scale, zp


def ref_dynamic_quantize_linear(x):
    x = np.asarray(x, dtype=F32)
    scale, zp = ref_dynamic_params(x)
    return ref_quantize_linear(x, scale, zp, "uint8"), scale, zp


def fma_f32(a, b, c) -> np.ndarray:
    """Correctly rounded float32 fma(a, b, c) for float32 inputs, emulated in float64.

    a*b is exact in float64 (24 + 24 significant bits). s = p + c is rounded once in float64,
    with the exact error recovered by TwoSum; rounding s to float32 can only differ from rounding
    the exact sum when s lies exactly halfway between two float32 values, and then the error's
    sign decides."""
    a64 = np.asarray(a, dtype=F32).astype(np.float64)
    b64 = np.asarray(b, dtype=F32).astype(np.float64)
    c64 = np.asarray(c, dtype=F32).astype(np.float64)
    p = a64 * b64
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)
    r = s.astype(F32)
    r64 = r.astype(np.float64)
    toward = np.where(s > r64, np.inf, -np.inf).astype(F32)
    other = np.nextafter(r, toward)
    other64 = other.astype(np.float64)
    tie = (r64 != s) & (np.abs(s - r64) == np.abs(other64 - s)) & (err != 0)
    # on a tie the exact value lies on err's side of s
    pick_other = tie & (np.sign(err) == np.sign(other64 - s))
    return np.where(pick_other, other, r).astype(F32)


def ref_linear(x, pw: "lowbit.PackedWeight", bias=None) -> np.ndarray:
    """The fused linear, operation by operation: per-row DynamicQuantizeLinear of x, exact
    integer GEMM against the packed int8 weight (with its zero points), then
    fma(float32(acc), float32(row_scale * col_scale), bias) in float32."""
    x = np.asarray(x, dtype=F32)
    n, k = pw.out_features, pw.in_features
    rows = x.reshape(-1, k)
    m = rows.shape[0]
    q = np.zeros((m, k), np.int64)
    row_scale = np.zeros(m, F32)
    row_zero = np.zeros(m, np.int64)
    for i in range(m):
        qi, si, zi = ref_dynamic_quantize_linear(rows[i])
        q[i], row_scale[i], row_zero[i] = qi, si, zi
    qt = pw.qtensor()
    w_c = qt.data.astype(np.int64) - np.asarray(qt.zero_point).astype(np.int64).reshape(-1, 1)
    acc = matmul_i64(q - row_zero[:, None], w_c.T)
    # the contract: an exact int32 accumulator (no wrap-around) for in_features <= 65536
    assert acc.size == 0 or np.abs(acc).max() < 2**31
    s = (row_scale[:, None] * np.asarray(pw.scale, F32)[None, :]).astype(F32)
    b = np.zeros(n, F32) if bias is None else np.asarray(bias, F32)
    y = fma_f32(acc.astype(F32), s, np.broadcast_to(b, (m, n)))
    return y.reshape(x.shape[:-1] + (n,))


def bits(a) -> np.ndarray:
    """float32 bit patterns (for bit-exact comparisons that also see -0.0 and NaN payloads)."""
    return np.ascontiguousarray(a, dtype=F32).view(np.uint32)


def assert_bits_equal(got, expected, msg: str = "") -> None:
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.dtype == np.float32, f"dtype {got.dtype} {msg}"
    assert got.shape == expected.shape, f"shape {got.shape} != {expected.shape} {msg}"
    gb, eb = bits(got), bits(expected)
    if not np.array_equal(gb, eb):
        bad = np.argwhere(gb != eb)
        i = tuple(bad[0])
        raise AssertionError(f"{len(bad)} of {got.size} values differ {msg}; first at {i}: "
                             f"got {got[i]!r} expected {expected[i]!r}")


def assert_int_equal(got, expected, msg: str = "") -> None:
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype, f"dtype {got.dtype} != {expected.dtype} {msg}"
    assert got.shape == expected.shape, f"shape {got.shape} != {expected.shape} {msg}"
    if not np.array_equal(got, expected):
        bad = np.argwhere(got != expected)
        i = tuple(bad[0])
        raise AssertionError(f"{len(bad)} of {got.size} values differ {msg}; first at {i}: "
                             f"got {got[i]} expected {expected[i]}")


def random_int8(rng, shape, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def export_onnx(model, x, path, dynamo: bool):
    """torch.onnx.export of model(x) to path (one input named "x", the exporters' warnings
    silenced) and the loaded onnx graph."""
    import warnings

    import onnx
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=dynamo, input_names=["x"])
    return onnx.load(str(path))

