"""The bad-input matrix of docs/bad_input.md, for the cells tests/test_bad_input.py and
tests/test_int4.py do not already cover: 4-bit weights, qlinear_matmul, QuantizedLinear,
hand-made QTensors, sizes no machine can hold, and packed weights outliving their source."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import lowbit
from conftest import assert_bits_equal, random_int8
from test_bad_input import LAYOUTS

F32 = np.float32
K, N = 32, 6


@pytest.fixture
def w(rng):
    return rng.standard_normal((N, K)).astype(F32)


@pytest.fixture
def weights(w):
    """Every kind of packed weight, by name."""
    return {
        "int8": lowbit.pack_weight(w),
        "int4-w4a8": lowbit.pack_weight(w, bits=4, group_size=16, symmetric=False),
        "int4-weight_only": lowbit.pack_weight(w, bits=4, group_size=10, mode="weight_only"),
    }


def float_functions(weights):
    """Public functions that take a float32 array, as f(x) with x of shape (4, K)."""
    layer = lowbit.nn.QuantizedLinear(weights["int8"])
    return {
        "pack_weight(bits=8)": lambda x: lowbit.pack_weight(x),
        "pack_weight(bits=4)": lambda x: lowbit.pack_weight(x, bits=4, group_size=16),
        "linear(int4 w4a8)": lambda x: lowbit.linear(x, weights["int4-w4a8"]),
        "linear(int4 weight_only)": lambda x: lowbit.linear(x, weights["int4-weight_only"]),
        "QuantizedLinear.from_float": lambda x: lowbit.nn.QuantizedLinear.from_float(x),
        "QuantizedLinear()": layer,
    }


def integer_functions(weights):
    """Public functions that take an int8/uint8 array, as f(a) with a of shape (4, K)."""
    b = np.ones((K, 5), np.int8)
    a = np.ones((4, K), np.uint8)
    return {
        "matmul_integer(a, PackedWeight)": lambda q: lowbit.matmul_integer(q, weights["int8"]),
        "qlinear_matmul(a)": lambda q: lowbit.qlinear_matmul(q, 0.1, 0, b, 0.1, 0, 0.5, 0),
        "qlinear_matmul(b)": lambda q: lowbit.qlinear_matmul(a, 0.1, 0, q.T, 0.1, 0, 0.5, 0),
    }


# ---- wrong dtypes ------------------------------------------------------------------------------
WRONG = [np.float64, np.int16, bool, object]


@pytest.mark.parametrize("dtype", WRONG, ids=lambda d: np.dtype(d).name)
def test_wrong_dtype_float_functions(weights, dtype):
    bad = np.ones((4, K), dtype)
    for name, fn in float_functions(weights).items():
        with pytest.raises(TypeError):
            fn(bad)
            pytest.fail(name)


@pytest.mark.parametrize("dtype", WRONG + [np.int32, np.float32], ids=lambda d: np.dtype(d).name)
def test_wrong_dtype_integer_functions(weights, dtype):
    bad = np.ones((4, K), dtype)
    for name, fn in integer_functions(weights).items():
        with pytest.raises(TypeError):
            fn(bad)
            pytest.fail(name)
    with pytest.raises(TypeError):   # float64 is not among test_bad_input's integer dtypes
        lowbit.dequantize_linear(np.ones(4, np.float64), 1.0)
    with pytest.raises(TypeError):
        lowbit.requantize(np.ones(4, np.float64), 0.5)
    if dtype is not np.int32:
        with pytest.raises(TypeError):
            lowbit.requantize(np.ones(4, dtype), 0.5)


def test_wrong_dtype_bias_and_qtensor(w):
    with pytest.raises(TypeError):
        lowbit.nn.QuantizedLinear.from_float(w, np.ones(N, np.float64))
    qt = lowbit.quantize(w, "int8", axis=0)
    for data in (qt.data.astype(np.float32), qt.data.astype(np.int16)):
        with pytest.raises(TypeError):
            lowbit.pack_weight(lowbit.QTensor(data, qt.scale, qt.zero_point, "int8", 0))


# ---- ranks and K ------------------------------------------------------------------------------
def test_wrong_ranks(weights, w):
    for rank_bad in (np.ones(K, F32), np.ones((2, N, K), F32)):
        with pytest.raises(ValueError):
            lowbit.pack_weight(rank_bad, bits=4)
        with pytest.raises(ValueError):
            lowbit.nn.QuantizedLinear.from_float(rank_bad)
    for pw in weights.values():
        with pytest.raises(ValueError):
            lowbit.linear(np.array(1.0, F32), pw)
    with pytest.raises(ValueError):
        lowbit.nn.QuantizedLinear(weights["int8"])(np.array(1.0, F32))
    with pytest.raises(ValueError):
        lowbit.qlinear_matmul(np.array(1, np.uint8), 1.0, 0, np.ones((1, 2), np.int8), 1.0, 0, 1.0, 0)
    with pytest.raises(ValueError):
        lowbit.quantize_linear(np.array(1.0, F32), np.ones(3, F32))
    with pytest.raises(ValueError):
        lowbit.dequantize_linear(np.array(1, np.int8), np.ones(3, F32))
    with pytest.raises(ValueError):
        lowbit.quantize(np.array(1.0, F32), axis=0)


def test_low_ranks_with_a_defined_result(weights, rng):
    """1-D x is one row, 0-d tensors are per-tensor values: documented results, not errors."""
    x = rng.standard_normal(K).astype(F32)
    for pw in weights.values():
        assert_bits_equal(lowbit.linear(x, pw), lowbit.linear(x[None], pw)[0])
    r = lowbit.requantize(np.array(7, np.int32), 0.5, np.int8(1))
    assert r.shape == () and r == 5    # round_half_even(3.5) + 1
    q, s, z = lowbit.dynamic_quantize_linear(np.array(2.0, F32))
    assert q.shape == () and s == F32(2.0 / 255) and z == 0


def test_mismatched_k(weights, rng):
    for pw in weights.values():
        with pytest.raises(ValueError):
            lowbit.nn.QuantizedLinear(pw)(np.ones((2, K + 2), F32))
    a = random_int8(rng, (3, K), np.uint8)
    with pytest.raises(ValueError):
        lowbit.qlinear_matmul(a, 0.1, 0, random_int8(rng, (K - 1, 4), np.int8), 0.1, 0, 0.5, 0)


# ---- memory layouts ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_4bit_qlinear_and_layer(isa, rng, w, weights, layout):
    """Strided, reversed, Fortran-order, read-only and misaligned inputs give the bits of the
    contiguous input (test_bad_input.py covers the other functions)."""
    make = LAYOUTS[layout]
    x = rng.standard_normal((5, K)).astype(F32)
    bias = rng.standard_normal(N).astype(F32)
    for name in ("int4-w4a8", "int4-weight_only"):
        pw = weights[name]
        assert_bits_equal(lowbit.linear(make(x), pw, make(bias[None])[0]), lowbit.linear(x, pw, bias))
    assert_bits_equal(lowbit.pack_weight(make(w), bits=4, group_size=16).dequantize(),
                      lowbit.pack_weight(w, bits=4, group_size=16).dequantize())
    layer = lowbit.nn.QuantizedLinear.from_float(w, bias)
    assert_bits_equal(layer(make(x)), layer(x))
    a = random_int8(rng, (5, K), np.uint8)
    b = random_int8(rng, (K, 7), np.int8)
    expected = lowbit.qlinear_matmul(a, 0.02, 3, b, 0.05, 0, 0.4, np.uint8(9))
    got = lowbit.qlinear_matmul(make(a), 0.02, 3, make(b), 0.05, 0, 0.4, np.uint8(9))
    np.testing.assert_array_equal(got, expected)


# ---- empty dimensions -------------------------------------------------------------------------
@pytest.mark.parametrize("M,K_,N_", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)])
def test_empty_qlinear_matmul(isa, M, K_, N_):
    y = lowbit.qlinear_matmul(np.ones((M, K_), np.uint8), 0.1, 0, np.ones((K_, N_), np.int8),
                              0.1, 0, 0.5, np.uint8(7))
    assert y.shape == (M, N_) and y.dtype == np.uint8 and np.all(y == 7)   # acc 0 -> zero point


@pytest.mark.parametrize("shape", [(0, 8), (3, 0), (0, 0)])
def test_empty_quantize_and_layer(isa, shape):
    x = np.zeros(shape, F32)
    for kwargs in (dict(), dict(axis=0), dict(axis=1, group_size=4)):
        qt = lowbit.quantize(x, "int4", **kwargs)
        assert qt.data.shape == shape and qt.dequantize().shape == shape
    layer = lowbit.nn.QuantizedLinear.from_float(np.zeros((shape[0], shape[1]), F32))
    assert layer(np.zeros((2, shape[1]), F32)).shape == (2, shape[0])


# ---- sizes no machine can hold ----------------------------------------------------------------
def test_overflowing_shape_cannot_even_be_made():
    """The (2**40, 2**40) broadcast view of the issue: NumPy itself refuses it (2**80 elements
    overflow its 64-bit sizes), so no lowbit function ever receives one."""
    with pytest.raises(ValueError):
        np.broadcast_to(F32(1), (2**40, 2**40))


def test_zero_strided_views_of_terabytes(weights):
    """A zero-strided view of 2**40 rows costs nothing to make, but no function can copy or
    answer it: each one raises MemoryError (nothing is written; the process survives)."""
    big_f = np.broadcast_to(F32(1), (2**40, K))
    big_u = np.broadcast_to(np.uint8(1), (2**40, K))
    calls = [lambda: lowbit.quantize_linear(big_f, 0.1), lambda: lowbit.dynamic_quantize_linear(big_f),
             lambda: lowbit.quantize(big_f), lambda: lowbit.linear(big_f, weights["int8"]),
             lambda: lowbit.dequantize_linear(big_u, 0.1),
             lambda: lowbit.matmul_integer(big_u, np.ones((K, 3), np.int8)),
             lambda: lowbit.requantize(np.broadcast_to(np.int32(1), (2**40, K)), 0.5)]
    calls += [lambda fn=fn: fn(big_f) for fn in float_functions(weights).values()]
    calls += [lambda fn=fn: fn(big_u) for fn in integer_functions(weights).values()]
    for call in calls:
        with pytest.raises(MemoryError):
            call()


def test_empty_operands_with_an_impossible_result():
    """(2**40, 0) @ (0, 2**40) has no input bytes but 2**80 outputs: MemoryError, no crash."""
    with pytest.raises((MemoryError, ValueError)):
        lowbit.matmul_integer(np.zeros((2**40, 0), np.uint8), np.zeros((0, 2**40), np.int8))
    pw = lowbit.pack_weight(np.zeros((N, 0), F32))
    with pytest.raises((MemoryError, ValueError)):
        lowbit.linear(np.zeros((2**40, 0), F32), pw)


def test_block_size_beyond_int64(isa, rng):
    """A block longer than the axis is one block, whatever the int: per-row result."""
    x = rng.standard_normal((3, 8)).astype(F32)
    s = np.full((3, 1), 0.05, F32)
    expected = lowbit.quantize_linear(x, s, axis=1, block_size=8)
    for block in (9, 2**63 - 1, 2**64, 10**30):
        np.testing.assert_array_equal(lowbit.quantize_linear(x, s, axis=1, block_size=block), expected)
        assert_bits_equal(lowbit.dequantize_linear(expected, s, axis=1, block_size=block),
                          lowbit.dequantize_linear(expected, s, axis=1, block_size=8))


# ---- NaN / Inf, scales, zero points -------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_layer_and_4bit(weights, w, bad):
    x = np.ones((3, K), F32)
    x[2, 7] = bad
    with pytest.raises(ValueError):
        lowbit.nn.QuantizedLinear(weights["int8"])(x)
    wb = w.copy()
    wb[1, 3] = bad
    with pytest.raises(ValueError):
        lowbit.nn.QuantizedLinear.from_float(wb)
    with pytest.raises(ValueError):
        lowbit.nn.QuantizedLinear.from_float(w, np.full(N, bad, F32))(np.ones((1, K), F32))
    with pytest.raises(ValueError):
        lowbit.quantize(x, "int4", group_size=8)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("scale", [0.0, -0.0, -1.0, np.nan, np.inf, 1e39])
def test_bad_scales_elsewhere(isa, w, scale):
    """b_scale of qlinear_matmul, one bad element of a per-channel multiplier, and the scale of a
    hand-made QTensor (8-bit: once accepted silently, giving NaN or 0 outputs)."""
    a = np.ones((2, 4), np.uint8)
    with pytest.raises(ValueError):
        lowbit.qlinear_matmul(a, 1.0, 0, a.T.copy(), scale, 0, 1.0, 0)
    with pytest.raises(ValueError):
        lowbit.requantize(np.ones((2, 4), np.int32), np.array([0.5, scale, 0.5, 0.5], F32))
    qt = lowbit.quantize(w, "int8", axis=0)
    bad = qt.scale.copy()
    bad[2] = scale
    with pytest.raises(ValueError, match="scale"):
        lowbit.pack_weight(lowbit.QTensor(qt.data, bad, qt.zero_point, "int8", 0))


def test_subnormal_scales_are_accepted(isa):
    """Documented: positive subnormal scales are valid; results saturate or underflow exactly."""
    tiny = F32(1e-45)
    q = lowbit.quantize_linear(np.array([1.0, -1.0, 0.0], F32), tiny, np.int8(0))
    np.testing.assert_array_equal(q, np.array([127, -128, 0], np.int8))
    d = lowbit.dequantize_linear(np.array([1, 100], np.int8), tiny)
    assert_bits_equal(d, np.array([1, 100], F32) * tiny)
    np.testing.assert_array_equal(lowbit.requantize(np.array([10**9], np.int32), tiny), [0])
    # a_scale * b_scale / y_scale beyond float32 is an error, not inf
    a = np.ones((2, 3), np.uint8)
    with pytest.raises(ValueError, match="overflows"):
        lowbit.qlinear_matmul(a, 1.0, 0, a.T.copy(), 1.0, 0, tiny, 0)


def test_zero_points_out_of_range_elsewhere(w):
    a = np.ones((2, 4), np.uint8)
    with pytest.raises(ValueError):
        lowbit.qlinear_matmul(a, 1.0, 0, a.T.copy(), 1.0, 0, 1.0, 256)
    with pytest.raises(ValueError):
        lowbit.qlinear_matmul(a, 1.0, -1, a.T.copy(), 1.0, 0, 1.0, 0)
    with pytest.raises(ValueError):
        lowbit.qlinear_matmul(a, 1.0, 0, a.T.copy(), 1.0, 300, 1.0, 0)
    qt = lowbit.quantize(w, "int8", axis=0)
    with pytest.raises(ValueError):
        lowbit.pack_weight(lowbit.QTensor(qt.data, qt.scale, np.full(N, 200, np.int32), "int8", 0))
    q4 = lowbit.quantize(w, "uint4", symmetric=False, axis=1, group_size=16)
    with pytest.raises(ValueError):
        lowbit.pack_weight(lowbit.QTensor(q4.data, q4.scale, q4.zero_point + 16, "uint4", 1, 16), bits=4)


# ---- depth -------------------------------------------------------------------------------------
def test_4bit_has_no_depth_limit(rng):
    """4-bit sums are exact per group (at most 2**20 values) and added in float32, so K beyond
    linear's 8-bit limit of 65536 is accepted and accurate."""
    k = 70_000
    w = rng.standard_normal((2, k)).astype(F32)
    x = rng.standard_normal((1, k)).astype(F32)
    for mode in ("w4a8", "weight_only"):
        pw = lowbit.pack_weight(w, bits=4, group_size=128, mode=mode)
        y = lowbit.linear(x, pw)
        ref = x.astype(np.float64) @ pw.dequantize().astype(np.float64).T
        np.testing.assert_allclose(y, ref, rtol=0, atol=0.05 * np.abs(x).sum() * np.abs(pw.scale).max())


# ---- packed weights outlive their source ------------------------------------------------------
@pytest.mark.parametrize("kind", ["int8", "int8-asym", "int4-w4a8", "int4-weight_only", "qtensor"])
def test_packed_weight_survives_source_change_and_free(isa, rng, kind):
    w = rng.standard_normal((N, K)).astype(F32)
    x = rng.standard_normal((3, K)).astype(F32)
    make = {
        "int8": lambda: lowbit.pack_weight(w),
        "int8-asym": lambda: lowbit.pack_weight(w, symmetric=False),
        "int4-w4a8": lambda: lowbit.pack_weight(w, bits=4, group_size=16),
        "int4-weight_only": lambda: lowbit.pack_weight(w, bits=4, group_size=16, mode="weight_only"),
        "qtensor": lambda: lowbit.pack_weight(qt),
    }[kind]
    qt = lowbit.quantize(w, "int8", axis=0)
    pw = make()
    layer = lowbit.nn.QuantizedLinear(pw)
    before, deq = lowbit.linear(x, pw), pw.dequantize()
    w[...] = np.nan                    # the source is overwritten ...
    qt.data[...] = 0
    qt.scale[...] = 0
    del w, qt
    gc.collect()                       # ... and freed
    assert_bits_equal(lowbit.linear(x, pw), before)
    assert_bits_equal(layer(x), before)
    assert_bits_equal(pw.dequantize(), deq)
