"""QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear / requantize / QLinearMatMul against
NumPy versions of the ONNX formulas (bit-exact on every ISA), and lowbit.quantize (QTensor)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import lowbit
from conftest import (QRANGE, STORAGE, assert_bits_equal, assert_int_equal, random_int8,
                      ref_dynamic_quantize_linear, ref_matmul_integer, ref_quantize_linear)

QTYPES = ["int8", "uint8", "int4", "uint4"]
LENGTHS = list(range(41)) + [1000]


def _scale_like(rng, shape):
    """Positive float32 scales spread over several octaves (not powers of two)."""
    return (rng.uniform(0.5, 2.0, size=shape) * 10.0 ** rng.integers(-3, 1, size=shape)).astype(np.float32)


def _zp(rng, qtype, shape=()):
    lo, hi = QRANGE[qtype]
    return rng.integers(lo, hi + 1, size=shape).astype(np.int32)


def _data(rng, shape, scale, qtype="int8"):
    """x = t * scale with t covering the whole quantized range and beyond it (saturation); half
    of the t are exact halves (k + 0.5), so x / scale lands on or next to rounding ties, where
    any deviation from float32 division + round-half-to-even shows."""
    lo, hi = QRANGE[qtype]
    t = rng.uniform(lo - 20, hi + 20, size=shape)
    half = rng.random(size=shape) < 0.5
    t = np.where(half, np.floor(t) + 0.5, t)
    return (t * np.asarray(scale, np.float64)).astype(np.float32)


def _expand(param, shape, axis, block):
    """Broadcasts a per-axis (1-D) or blocked parameter to the data's shape."""
    param = np.asarray(param)
    if block:
        return np.repeat(param, block, axis=axis).take(range(shape[axis]), axis=axis)
    view = [1] * len(shape)
    view[axis] = -1
    return param.reshape(view)


# ---- QuantizeLinear --------------------------------------------------------------------------
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_per_tensor_lengths(isa, rng, qtype, n):
    scale = np.float32(rng.uniform(0.01, 0.2))
    zp = int(_zp(rng, qtype))
    x = _data(rng, (n,), scale, qtype)
    got = lowbit.quantize_linear(x, scale, zp, dtype=qtype)
    assert_int_equal(got, ref_quantize_linear(x, scale, zp, qtype), f"n={n}")
    # without a zero point
    got = lowbit.quantize_linear(x, scale, dtype=qtype)
    assert_int_equal(got, ref_quantize_linear(x, scale, None, qtype), f"n={n} no zp")


@pytest.mark.parametrize("n", [1, 7, 8, 9, 15, 16, 17, 31, 33, 1000])
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_per_axis_last_dim_lengths(isa, rng, qtype, n):
    """Per-axis along the contiguous last axis: one scale per element inside each SIMD run."""
    scale = _scale_like(rng, (n,))
    zp = _zp(rng, qtype, (n,))
    x = _data(rng, (3, n), scale, qtype)
    got = lowbit.quantize_linear(x, scale, zp, axis=1, dtype=qtype)
    assert_int_equal(got, ref_quantize_linear(x, scale[None, :], zp[None, :], qtype))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_per_axis_3d(isa, rng, qtype, axis):
    shape = (5, 19, 33)
    ax = axis % 3
    scale = _scale_like(rng, (shape[ax],))
    zp = _zp(rng, qtype, (shape[ax],))
    s_full = _expand(scale, shape, ax, 0)
    x = _data(rng, shape, s_full, qtype)
    got = lowbit.quantize_linear(x, scale, zp, axis=axis, dtype=qtype)
    assert_int_equal(got, ref_quantize_linear(x, s_full, _expand(zp, shape, ax, 0), qtype))


@pytest.mark.parametrize("block", [1, 2, 3, 32, 70, 100])
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_blocked(isa, rng, qtype, axis, block):
    shape = [3, 5, 4]
    shape[axis] = 70  # 70 is not a multiple of 3 or 32
    shape = tuple(shape)
    sshape = list(shape)
    sshape[axis] = math.ceil(70 / block)
    scale = _scale_like(rng, tuple(sshape))
    zp = _zp(rng, qtype, tuple(sshape))
    s_full = _expand(scale, shape, axis, block)
    x = _data(rng, shape, s_full, qtype)
    got = lowbit.quantize_linear(x, scale, zp, axis=axis, block_size=block, dtype=qtype)
    assert_int_equal(got, ref_quantize_linear(x, s_full, _expand(zp, shape, axis, block), qtype))


def test_quantize_blocked_scale_index_layout(isa):
    """Hand-computed: blocks of 2 along axis 1 of a (2, 5) array, distinct scales per block."""
    x = np.array([[1, 2, 3, 4, 5], [10, 20, 30, 40, 50]], np.float32)
    scale = np.array([[1, 2, 4], [10, 5, 50]], np.float32)
    got = lowbit.quantize_linear(x, scale, axis=1, block_size=2, dtype="int8")
    np.testing.assert_array_equal(got, [[1, 2, 2, 2, 1], [1, 2, 6, 8, 1]])


@pytest.mark.parametrize("n", [1, 5, 8, 16, 17, 40, 1000])
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_ties_round_half_to_even(isa, qtype, n):
    lo, hi = QRANGE[qtype]
    ks = np.arange(-300, 300)
    for scale in (np.float32(1.0), np.float32(0.25), np.float32(4.0)):
        x = ((ks + 0.5) * scale).astype(np.float32)
        x = np.resize(x, n)
        t = (x / scale).astype(np.float64)  # exact k + 0.5
        assert np.all(t - np.floor(t) == 0.5)
        f = np.floor(t)
        even = np.where(f % 2 == 0, f, f + 1)  # half to even, written out
        for zp in (0, lo, hi):
            expected = np.clip(even + zp, lo, hi).astype(STORAGE[qtype])
            got = lowbit.quantize_linear(x, scale, zp, dtype=qtype)
            assert_int_equal(got, expected, f"scale={scale} zp={zp}")


def test_quantize_ties_spot_values(isa):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, -127.5, -128.5, -0.0], np.float32)
    got = lowbit.quantize_linear(x, 1.0, np.int8(0))
    np.testing.assert_array_equal(got, [0, 2, 2, 0, -2, -2, 126, 127, -128, -128, 0])
    got = lowbit.quantize_linear(x, 1.0, np.uint8(128))
    np.testing.assert_array_equal(got, [128, 130, 130, 128, 126, 126, 254, 255, 0, 0, 128])


@pytest.mark.parametrize("n", [1, 9, 17, 1000])
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_saturation(isa, rng, qtype, n):
    lo, hi = QRANGE[qtype]
    big = np.array([3e38, -3e38, 1e30, -1e30, 1e9, -1e9, hi + 0.5, lo - 0.5, hi + 1, lo - 1,
                    2.0**24 + 1, -(2.0**24) - 1], np.float32)
    x = np.resize(big, n)
    for scale in (np.float32(1.0), np.float32(1e-3), np.float32(1e-30)):
        for zp in (lo, 0 if lo < 0 else 1, hi):
            got = lowbit.quantize_linear(x, scale, zp, dtype=qtype)
            expected = ref_quantize_linear(x, scale, zp, qtype)
            assert_int_equal(got, expected, f"scale={scale} zp={zp}")
            assert got.min() >= lo and got.max() <= hi
    # x / scale overflows float32 to +-inf: still saturates
    x = np.resize(np.array([3e38, -3e38], np.float32), n)
    got = lowbit.quantize_linear(x, np.float32(1e-3), 0, dtype=qtype)
    np.testing.assert_array_equal(got, np.resize(np.array([hi, lo]), n))


def test_quantize_divides_by_scale(isa, rng):
    """x / scale, not x * (1 / scale): the two differ next to ties; the oracle divides."""
    n = 20_000
    scale = _scale_like(rng, (n,))
    x = _data(rng, (2, n), scale, "int8")
    by_mul = np.rint(x * (np.float32(1) / scale))
    by_div = np.rint(x / scale)
    assert np.count_nonzero(by_mul != by_div) > 100  # this data tells the two apart
    got = lowbit.quantize_linear(x, scale, np.zeros(n, np.int8), axis=1)
    assert_int_equal(got, ref_quantize_linear(x, scale, 0, "int8"), "per axis")
    for s in scale[:5]:
        got = lowbit.quantize_linear(x, s, np.int8(0))
        assert_int_equal(got, ref_quantize_linear(x, s, 0, "int8"), f"per tensor scale={s}")


def test_quantize_subnormal_scale_saturates(isa):
    """Subnormal positive scales are accepted (documented); x / scale saturates as ONNX says."""
    x = np.array([1.0, -1.0, 0.0, 1e-45, -1e-45, 3e-45], np.float32)
    scale = np.float32(1e-45)
    assert scale > 0 and scale < np.finfo(np.float32).tiny
    got = lowbit.quantize_linear(x, scale, np.int8(0))
    assert_int_equal(got, ref_quantize_linear(x, scale, 0, "int8"))
    np.testing.assert_array_equal(got, [127, -128, 0, 1, -1, 2])


def test_quantize_float16_input_widened_exactly(isa, rng):
    x16 = (rng.standard_normal(100) * 10).astype(np.float16)
    got = lowbit.quantize_linear(x16, np.float32(0.07), np.int8(2))
    assert_int_equal(got, ref_quantize_linear(x16.astype(np.float32), np.float32(0.07), 2, "int8"))
    q, s, z = lowbit.dynamic_quantize_linear(x16)
    eq, es, ez = ref_dynamic_quantize_linear(x16.astype(np.float32))
    assert_int_equal(q, eq)
    assert s == es and z == ez


def test_quantize_default_dtype_follows_zero_point(isa):
    x = np.array([-1.0, 0.0, 1.0], np.float32)
    assert lowbit.quantize_linear(x, 1.0).dtype == np.uint8
    assert lowbit.quantize_linear(x, 1.0, 3).dtype == np.uint8
    got = lowbit.quantize_linear(x, 1.0, np.int8(0))
    assert got.dtype == np.int8 and got.tolist() == [-1, 0, 1]
    got = lowbit.quantize_linear(x, 1.0, np.uint8(5))
    assert got.dtype == np.uint8 and got.tolist() == [4, 5, 6]
    assert lowbit.quantize_linear(x, 1.0, dtype="int4").dtype == np.int8
    assert lowbit.quantize_linear(x, 1.0, dtype="uint4").dtype == np.uint8


def test_quantize_large_parallel(isa, rng):
    """More than one 64k-element task: per tensor and per axis."""
    x = rng.standard_normal((3, 70_001)).astype(np.float32) * 10
    got = lowbit.quantize_linear(x, np.float32(0.05), np.int8(3))
    assert_int_equal(got, ref_quantize_linear(x, np.float32(0.05), 3, "int8"))
    scale = _scale_like(rng, (3,))
    got = lowbit.quantize_linear(x, scale, axis=0, dtype="uint8")
    assert_int_equal(got, ref_quantize_linear(x, scale[:, None], None, "uint8"))


# ---- DequantizeLinear ------------------------------------------------------------------------
def _ref_dequant(q, scale, zp):
    z = 0 if zp is None else np.asarray(zp).astype(np.int32)
    return (q.astype(np.int32) - z).astype(np.float32) * np.asarray(scale, np.float32)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 33, 1000])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32])
def test_dequantize_per_tensor(isa, rng, dtype, n):
    q = random_int8(rng, (n,), dtype) if dtype != np.int32 else \
        rng.integers(-2**31, 2**31, size=n, dtype=np.int64).astype(np.int32)
    if dtype == np.int32 and n:
        q[0] = np.iinfo(np.int32).max
        q[-1] = np.iinfo(np.int32).min
    scale = np.float32(rng.uniform(0.001, 3))
    zp = None if dtype == np.int32 else np.asarray(random_int8(rng, (), dtype))
    got = lowbit.dequantize_linear(q, scale, zp)
    assert_bits_equal(got, _ref_dequant(q, scale, zp))
    assert_bits_equal(lowbit.dequantize_linear(q, scale), _ref_dequant(q, scale, None))
    if dtype == np.int32:
        assert_bits_equal(lowbit.dequantize_linear(q, scale, np.int32(0)), _ref_dequant(q, scale, 0))


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32])
def test_dequantize_per_axis(isa, rng, dtype, axis):
    shape = (4, 17, 33)
    q = random_int8(rng, shape, dtype) if dtype != np.int32 else \
        rng.integers(-2**31, 2**31, size=shape, dtype=np.int64).astype(np.int32)
    scale = _scale_like(rng, (shape[axis],))
    zp = None if dtype == np.int32 else random_int8(rng, (shape[axis],), dtype)
    got = lowbit.dequantize_linear(q, scale, zp, axis=axis)
    exp = _ref_dequant(q, _expand(scale, shape, axis, 0),
                       None if zp is None else _expand(zp, shape, axis, 0))
    assert_bits_equal(got, exp)


@pytest.mark.parametrize("block", [1, 2, 3, 32])
@pytest.mark.parametrize("axis", [0, 2])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32])
def test_dequantize_blocked(isa, rng, dtype, axis, block):
    shape = [3, 5, 6]
    shape[axis] = 70
    shape = tuple(shape)
    sshape = list(shape)
    sshape[axis] = math.ceil(70 / block)
    q = random_int8(rng, shape, dtype) if dtype != np.int32 else \
        rng.integers(-2**31, 2**31, size=shape, dtype=np.int64).astype(np.int32)
    scale = _scale_like(rng, tuple(sshape))
    zp = None if dtype == np.int32 else random_int8(rng, tuple(sshape), dtype)
    got = lowbit.dequantize_linear(q, scale, zp, axis=axis, block_size=block)
    exp = _ref_dequant(q, _expand(scale, shape, axis, block),
                       None if zp is None else _expand(zp, shape, axis, block))
    assert_bits_equal(got, exp)


def test_dequantize_float16_output(isa, rng):
    q = random_int8(rng, (100,), np.int8)
    got = lowbit.dequantize_linear(q, np.float32(0.37), np.int8(-3), dtype=np.float16)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, _ref_dequant(q, np.float32(0.37), -3).astype(np.float16))


@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_dequantize_round_trip(isa, rng, qtype):
    lo, hi = QRANGE[qtype]
    scale, zp = np.float32(0.02), (lo + hi) // 2
    q = np.arange(lo, hi + 1).astype(STORAGE[qtype])
    x = lowbit.dequantize_linear(q, scale, np.asarray(zp, STORAGE[qtype]))
    back = lowbit.quantize_linear(x, scale, zp, dtype=qtype)
    np.testing.assert_array_equal(back, q)  # every code survives the round trip


# ---- DynamicQuantizeLinear -------------------------------------------------------------------
def _check_dynamic(x, msg=""):
    q, scale, zp = lowbit.dynamic_quantize_linear(x)
    eq, escale, ezp = ref_dynamic_quantize_linear(x)
    assert isinstance(scale, np.float32) and isinstance(zp, np.uint8), (type(scale), type(zp))
    assert np.isfinite(scale) and scale > 0, msg
    assert scale.view(np.uint32) == np.float32(escale).view(np.uint32), \
        f"scale {scale!r} != {escale!r} {msg}"
    assert int(zp) == ezp, f"zero point {zp} != {ezp} {msg}"
    assert_int_equal(q, eq, msg)
    return q, scale, zp


@pytest.mark.parametrize("n", LENGTHS + [65536, 65537, 200_001])
def test_dynamic_quantize_lengths(isa, rng, n):
    x = (rng.standard_normal(n) * 3 + 0.7).astype(np.float32)
    _check_dynamic(x, f"n={n}")


@pytest.mark.parametrize("n", [1, 5, 16, 17, 100])
def test_dynamic_quantize_one_sided(isa, rng, n):
    _check_dynamic(rng.uniform(0.5, 9, size=n).astype(np.float32), "all positive")
    _check_dynamic(rng.uniform(-9, -0.5, size=n).astype(np.float32), "all negative")
    # extreme in the tail lane / the first lane
    x = rng.uniform(-1, 1, size=n).astype(np.float32)
    x[-1] = 50
    _check_dynamic(x, "max last")
    x[0] = -70
    _check_dynamic(x, "min first")


def test_dynamic_quantize_matches_onnx_textbook_case(isa):
    # ONNX DynamicQuantizeLinear documentation example
    x = np.array([0, 2, -3, -2.5, 1.34, 0.5], np.float32)
    q, scale, zp = lowbit.dynamic_quantize_linear(x)
    assert scale == np.float32((2 - -3) / np.float32(255))
    assert zp == 153
    np.testing.assert_array_equal(q, [153, 255, 0, 26, 221, 179])


@pytest.mark.parametrize("shape", [(0,), (1,), (17,), (3, 40), (2, 3, 0)])
def test_dynamic_quantize_all_zero(isa, shape):
    x = np.zeros(shape, np.float32)
    q, scale, zp = _check_dynamic(x)
    assert scale == 1.0 and zp == 0 and q.shape == shape and (q == 0).all()
    q, scale, zp = _check_dynamic(-x)  # negative zeros
    assert scale == 1.0 and zp == 0


@pytest.mark.parametrize("value", [3.0, -3.0, 1e-3, -1e30, 1e-45, -1e-45])
def test_dynamic_quantize_constant(isa, value):
    x = np.full(33, value, np.float32)
    q, scale, zp = _check_dynamic(x, f"constant {value}")
    assert not np.isnan(lowbit.dequantize_linear(q, scale, zp)).any()
    if abs(value) >= 1e-3:
        # the constant is an endpoint of the range: it is represented (almost) exactly
        back = (q.astype(np.float32) - np.float32(zp)) * scale
        np.testing.assert_allclose(back, x, rtol=1e-5)


def test_dynamic_quantize_huge_range(isa):
    """max - min overflows float32: the documented rule max/255 - min/255 applies (no inf/NaN)."""
    x = np.array([3e38, -3e38, 1.0, 0.0], np.float32)
    q, scale, zp = _check_dynamic(x)
    assert np.isfinite(scale)
    assert scale == np.float32(np.float32(3e38) / np.float32(255) - np.float32(-3e38) / np.float32(255))


# ---- requantize ------------------------------------------------------------------------------
def _ref_requant(acc, mult, zp, qtype):
    lo, hi = QRANGE[qtype]
    v = np.rint(acc.astype(np.float64) * np.asarray(mult, np.float32).astype(np.float64)) + zp
    return np.clip(v, lo, hi).astype(STORAGE[qtype])


def _acc(rng, shape, spread):
    acc = rng.integers(-spread, spread + 1, size=shape, dtype=np.int64).astype(np.int32)
    flat = acc.reshape(-1)
    if flat.size >= 2:
        flat[0], flat[-1] = np.iinfo(np.int32).max, np.iinfo(np.int32).min
    return acc


@pytest.mark.parametrize("cols", [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 100])
@pytest.mark.parametrize("qtype", QTYPES)
def test_requantize_per_tensor(isa, rng, qtype, cols):
    lo, hi = QRANGE[qtype]
    acc = _acc(rng, (5, cols), 40_000)
    for mult in (np.float32(1e-3), np.float32(0.000123), np.float32(0.75)):
        for zp in (lo, (lo + hi) // 2, hi):
            got = lowbit.requantize(acc, mult, zp, dtype=qtype)
            assert_int_equal(got, _ref_requant(acc, mult, zp, qtype), f"m={mult} zp={zp}")


@pytest.mark.parametrize("cols", [1, 3, 4, 5, 8, 9, 17, 100])
@pytest.mark.parametrize("qtype", QTYPES)
def test_requantize_per_channel_and_elementwise(isa, rng, qtype, cols):
    lo, hi = QRANGE[qtype]
    acc = _acc(rng, (2, 3, cols), 20_000)
    mult = (rng.uniform(0.5, 2, size=cols) * 1e-3).astype(np.float32)
    zp = int(rng.integers(lo, hi + 1))
    got = lowbit.requantize(acc, mult, zp, dtype=qtype)
    assert_int_equal(got, _ref_requant(acc, mult, zp, qtype))
    mult_e = (rng.uniform(0.5, 2, size=acc.shape) * 1e-3).astype(np.float32)
    got = lowbit.requantize(acc, mult_e, zp, dtype=qtype)
    assert_int_equal(got, _ref_requant(acc, mult_e, zp, qtype), "elementwise")
    mult_r = (rng.uniform(0.5, 2, size=(3, 1)) * 1e-3).astype(np.float32)
    got = lowbit.requantize(acc, mult_r, zp, dtype=qtype)
    assert_int_equal(got, _ref_requant(acc, mult_r, zp, qtype), "per row (broadcast)")


@pytest.mark.parametrize("n", [1, 4, 5, 8, 9, 13])
def test_requantize_ties(isa, n):
    acc = np.resize(np.array([1, 3, 5, -1, -3, -5, 253, 255, 257, -255, -257], np.int32), n)
    got = lowbit.requantize(acc, np.float32(0.5), np.int8(0))
    f = np.floor(acc / 2)
    expected = np.clip(np.where(f % 2 == 0, f, f + 1), -128, 127).astype(np.int8)
    assert_int_equal(got, expected)


def test_requantize_default_dtype(isa):
    acc = np.array([-1000, 0, 1000], np.int32)
    got = lowbit.requantize(acc, 0.1)
    assert got.dtype == np.uint8 and got.tolist() == [0, 0, 100]
    got = lowbit.requantize(acc, 0.1, np.int8(1))
    assert got.dtype == np.int8 and got.tolist() == [-99, 1, 101]


# ---- QLinearMatMul ---------------------------------------------------------------------------
def _ref_qlinear(a, sa, za, b, sb, zb, sy, zy):
    """ONNX QLinearMatMul reference: int32 MatMulInteger, multiplier a_scale*b_scale/y_scale
    in float32, product with the accumulator in float64, rint, + y_zero_point, saturate."""
    za_v = np.asarray(za)
    acc = ref_matmul_integer(a, b, za_v if za_v.ndim == 0 else za_v, zb)
    sa = np.asarray(sa, np.float32)
    sb = np.asarray(sb, np.float32)
    if sa.ndim == 1:
        sa = sa.reshape(-1, 1)
    mult = (sa * sb / np.float32(sy)).astype(np.float32)
    y = np.rint(acc.astype(np.float64) * mult.astype(np.float64)) + int(zy)
    info = np.iinfo(np.asarray(zy).dtype)
    return np.clip(y, info.min, info.max).astype(np.asarray(zy).dtype)


@pytest.mark.parametrize("y_dt", [np.uint8, np.int8])
@pytest.mark.parametrize("a_dt,b_dt", [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8),
                                       (np.int8, np.uint8)])
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (5, 33, 17), (13, 256, 65)])
def test_qlinear_matmul(isa, rng, M, K, N, a_dt, b_dt, y_dt):
    a = random_int8(rng, (M, K), a_dt)
    b = random_int8(rng, (K, N), b_dt)
    # zero points near the middle of the data, so the output is not saturated
    za, zb, zy = (np.asarray(int(rng.integers(-10, 11)) + (128 if t == np.uint8 else 0), t)
                  for t in (a_dt, b_dt, y_dt))
    sa, sb = np.float32(0.02), np.float32(0.013)
    sy = np.float32(0.05 * math.sqrt(K))
    got = lowbit.qlinear_matmul(a, sa, za, b, sb, zb, sy, zy)
    exp = _ref_qlinear(a, sa, za, b, sb, zb, sy, zy)
    assert got.dtype == np.dtype(y_dt)
    assert_int_equal(got, exp, "per tensor")
    # the output is not trivially saturated
    assert len(np.unique(got)) > min(3, got.size - 1)
    # per-row a_scale, per-column b_scale and b zero point
    sa_r = _scale_like(rng, (M,))
    sb_c = _scale_like(rng, (N,))
    zb_c = (rng.integers(-10, 11, size=N) + (128 if b_dt == np.uint8 else 0)).astype(b_dt)
    sy2 = np.float32(np.median(sa_r) * np.median(sb_c) * 40 * math.sqrt(K))
    got = lowbit.qlinear_matmul(a, sa_r, za, b, sb_c, zb_c, sy2, zy)
    assert_int_equal(got, _ref_qlinear(a, sa_r, za, b, sb_c, zb_c, sy2, zy), "per channel")


def test_qlinear_matmul_batched(isa, rng):
    a = random_int8(rng, (2, 3, 5, 40), np.uint8)
    b = random_int8(rng, (40, 17), np.int8)
    za, zb, zy = np.uint8(120), np.int8(-4), np.int8(3)
    sa, sb, sy = np.float32(0.02), np.float32(0.01), np.float32(0.3)
    got = lowbit.qlinear_matmul(a, sa, za, b, sb, zb, sy, zy)
    assert got.shape == (2, 3, 5, 17) and got.dtype == np.int8
    acc = np.matmul(a.astype(np.int64) - 120, b.astype(np.int64) + 4)
    mult = np.float32(sa * sb) / sy
    exp = np.clip(np.rint(acc * np.float64(mult)) + 3, -128, 127).astype(np.int8)
    assert_int_equal(got, exp)


def test_qlinear_matmul_onnx_example(isa):
    # the example of the ONNX QLinearMatMul specification
    a = np.array([[208, 236, 0, 238], [3, 214, 255, 29]], np.uint8)
    b = np.array([[152, 51, 244], [60, 26, 255], [0, 127, 246], [127, 254, 247]], np.uint8)
    got = lowbit.qlinear_matmul(a, np.float32(0.0066), np.uint8(113), b, np.float32(0.00705),
                                np.uint8(114), np.float32(0.0107), np.uint8(118))
    np.testing.assert_array_equal(got, [[168, 115, 255], [1, 66, 151]])


# ---- lowbit.quantize / QTensor ---------------------------------------------------------------
SYM_ZERO = {"int8": 0, "uint8": 128, "int4": 0, "uint4": 8}
SYM_MAX = {"int8": 127, "uint8": 127, "int4": 7, "uint4": 7}


def _param_full(qt):
    shape = qt.data.shape
    if qt.group_size:
        return (_expand(qt.scale, shape, qt.axis, qt.group_size),
                _expand(qt.zero_point, shape, qt.axis, qt.group_size))
    if qt.axis is not None:
        return _expand(qt.scale, shape, qt.axis, 0), _expand(qt.zero_point, shape, qt.axis, 0)
    return np.asarray(qt.scale), np.asarray(qt.zero_point)


GRANULARITY = [("tensor", None, None), ("axis0", 0, None), ("axis1", 1, None), ("axis-1", -1, None),
               ("group32", None, 32), ("group64", None, 64), ("group32_axis0", 0, 32)]


@pytest.mark.parametrize("gran", GRANULARITY, ids=[g[0] for g in GRANULARITY])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_qtensor_round_trip(isa, rng, qtype, symmetric, gran):
    _, axis, group = gran
    x = (rng.standard_normal((64, 128)) * rng.uniform(0.1, 10, size=(64, 1))).astype(np.float32)
    x[3] += 2.0  # a row with an offset (asymmetric range)
    qt = lowbit.quantize(x, qtype, symmetric=symmetric, axis=axis, group_size=group)
    lo, hi = QRANGE[qtype]
    assert qt.dtype == qtype and qt.data.shape == x.shape
    assert qt.data.dtype == np.dtype(STORAGE[qtype])
    assert qt.data.min() >= lo and qt.data.max() <= hi
    scale, zp = _param_full(qt)
    assert np.all(np.isfinite(qt.scale)) and np.all(np.asarray(qt.scale) > 0)
    if symmetric:
        assert np.all(np.asarray(qt.zero_point) == SYM_ZERO[qtype])
        c = qt.data.astype(np.int32) - SYM_ZERO[qtype]
        assert np.abs(c).max() <= SYM_MAX[qtype]  # restricted symmetric range
    # the data is exactly quantize_linear with the QTensor's own parameters
    assert_int_equal(qt.data, ref_quantize_linear(x, scale, zp, qtype))
    # round trip error <= scale / 2 (plus float32 rounding of the two operations)
    back = qt.dequantize()
    assert back.dtype == np.float32 and back.shape == x.shape
    err = np.abs(back.astype(np.float64) - x)
    bound = np.broadcast_to(scale, x.shape).astype(np.float64) * 0.5 * (1 + 1e-5) + \
        np.abs(x) * 2.0**-22
    assert np.all(err <= bound), float((err - bound).max())
    # and the bound is not vacuous: the error uses a good part of it
    assert err.max() > 0.2 * float(np.min(scale))


@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_parameters_follow_documented_rule(isa, rng, qtype):
    x = rng.uniform(-3, 5, size=(4, 64)).astype(np.float32)
    qs = lowbit.quantize(x, qtype, symmetric=True, axis=0)
    amax = np.abs(x).max(axis=1).astype(np.float32)
    np.testing.assert_array_equal(qs.scale, (amax / np.float32(SYM_MAX[qtype])).astype(np.float32))
    qa = lowbit.quantize(x, qtype, symmetric=False, axis=0)
    lo, hi = QRANGE[qtype]
    mn = np.minimum(x.min(axis=1), 0).astype(np.float32)
    mx = np.maximum(x.max(axis=1), 0).astype(np.float32)
    scale = ((mx - mn) / np.float32(hi - lo)).astype(np.float32)
    np.testing.assert_array_equal(qa.scale, scale)
    np.testing.assert_array_equal(np.asarray(qa.zero_point).astype(np.int64),
                                  np.clip(np.rint(np.float32(lo) - mn / scale), lo, hi))


@pytest.mark.parametrize("value", [0.0, 2.5, -2.5, 1e-45])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_constant_and_zero(isa, qtype, symmetric, value):
    x = np.full((4, 32), value, np.float32)
    for axis, group in ((None, None), (0, None), (None, 16)):
        qt = lowbit.quantize(x, qtype, symmetric=symmetric, axis=axis, group_size=group)
        s = np.asarray(qt.scale)
        assert np.all(np.isfinite(s)) and np.all(s > 0)
        back = qt.dequantize()
        assert not np.isnan(back).any()
        if value == 0.0 or value == 1e-45:
            if value == 0.0:
                assert np.all(s == 1.0)
            np.testing.assert_array_equal(back, np.zeros_like(x))
        else:
            np.testing.assert_allclose(back, x, rtol=1e-6)


def test_quantize_empty(isa):
    qt = lowbit.quantize(np.zeros((0, 8), np.float32), "int8")
    assert qt.data.shape == (0, 8) and np.all(np.asarray(qt.scale) > 0)
    qt = lowbit.quantize(np.zeros((0, 8), np.float32), "uint8", symmetric=False, axis=1)
    assert qt.data.shape == (0, 8) and np.asarray(qt.scale).shape == (8,)


@pytest.mark.parametrize("qtype", QTYPES)
def test_qtensor_nbytes(qtype):
    bits = 4 if qtype in ("int4", "uint4") else 8
    x = np.linspace(-1, 3, 64 * 96, dtype=np.float32).reshape(64, 96)
    qt = lowbit.quantize(x, qtype, symmetric=True)
    assert qt.nbytes == 64 * 96 * bits // 8 + 4
    qt = lowbit.quantize(x, qtype, symmetric=True, axis=0)
    assert qt.nbytes == 64 * 96 * bits // 8 + 64 * 4
    qt = lowbit.quantize(x, qtype, symmetric=False, axis=0)
    assert not qt.symmetric
    assert qt.nbytes == 64 * 96 * bits // 8 + 64 * 4 + 64 * bits // 8
    qt = lowbit.quantize(x, qtype, symmetric=False, group_size=32)
    groups = 64 * 3
    assert qt.nbytes == 64 * 96 * bits // 8 + groups * 4 + (groups * bits + 7) // 8
    qt = lowbit.quantize(np.ones(3, np.float32), qtype, symmetric=True)
    assert qt.nbytes == (3 * bits + 7) // 8 + 4
