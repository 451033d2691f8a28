"""Input validation (clear TypeError / ValueError / RuntimeError), odd memory layouts (strided,
reversed, read-only, misaligned), empty dimensions, and never writing into the caller's arrays."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import lowbit
from conftest import (ALL_ISAS, ISAS, assert_bits_equal, assert_int_equal, random_int8,
                      ref_dynamic_quantize_linear, ref_linear, ref_matmul_integer,
                      ref_quantize_linear)


@pytest.fixture
def pw(rng):
    return lowbit.pack_weight(rng.standard_normal((9, 16)).astype(np.float32))


def _x(rng, shape=(4, 16)):
    return rng.standard_normal(shape).astype(np.float32)


# ---- dtypes ----------------------------------------------------------------------------------
BAD_FLOAT_INPUTS = {
    "float64": lambda: np.ones((4, 16), np.float64),
    "int16": lambda: np.ones((4, 16), np.int16),
    "int32": lambda: np.ones((4, 16), np.int32),
    "bool": lambda: np.ones((4, 16), bool),
    "object": lambda: np.ones((4, 16), object),
    "complex": lambda: np.ones((4, 16), np.complex64),
    "str": lambda: "abc",
    "none": lambda: None,
}


@pytest.mark.parametrize("kind", list(BAD_FLOAT_INPUTS))
def test_float_inputs_reject_wrong_dtype(isa, pw, kind):
    bad = BAD_FLOAT_INPUTS[kind]()
    with pytest.raises(TypeError):
        lowbit.linear(bad, pw)
    with pytest.raises(TypeError):
        lowbit.quantize_linear(bad, 0.1)
    with pytest.raises(TypeError):
        lowbit.dynamic_quantize_linear(bad)
    with pytest.raises(TypeError):
        lowbit.quantize(bad)


def test_float64_message_is_helpful(pw):
    with pytest.raises(TypeError, match="float32"):
        lowbit.linear(np.ones((2, 16)), pw)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16, bool, object, np.float32])
def test_integer_inputs_reject_wrong_dtype(isa, dtype):
    bad = np.ones((3, 3), dtype)
    ok = np.ones((3, 3), np.int8)
    with pytest.raises(TypeError):
        lowbit.matmul_integer(bad, ok)
    with pytest.raises(TypeError):
        lowbit.matmul_integer(ok, bad)
    if dtype not in (np.int32, np.int16, np.uint16):   # dequantize_linear's other inputs
        with pytest.raises(TypeError):
            lowbit.dequantize_linear(bad, 1.0)
    if dtype is not np.int32:
        with pytest.raises(TypeError):
            lowbit.requantize(bad, 0.5)
    with pytest.raises(TypeError):
        lowbit.matmul_integer([[1, 2], [3, 4]], ok[:2, :2])  # lists are not int8 arrays


def test_linear_rejects_non_packed_weight(rng):
    with pytest.raises(TypeError):
        lowbit.linear(_x(rng), np.ones((9, 16), np.float32))


def test_bias_validation(isa, rng, pw):
    x = _x(rng)
    with pytest.raises(ValueError):
        lowbit.linear(x, pw, np.ones(8, np.float32))
    with pytest.raises(ValueError):
        lowbit.linear(x, pw, np.ones((1, 9), np.float32))
    with pytest.raises(TypeError):
        lowbit.linear(x, pw, np.ones(9, np.float64))
    for v in (np.nan, np.inf, -np.inf):
        b = np.ones(9, np.float32)
        b[4] = v
        with pytest.raises(ValueError):
            lowbit.linear(x, pw, b)
    with pytest.raises(ValueError):
        lowbit.nn.QuantizedLinear.from_float(np.ones((9, 16), np.float32), np.ones(3, np.float32))


# ---- ranks and shapes ------------------------------------------------------------------------
def test_wrong_rank_and_shape(isa, rng, pw):
    with pytest.raises(ValueError):
        lowbit.linear(np.array(1.0, np.float32), pw)  # 0-d
    with pytest.raises(ValueError):
        lowbit.linear(_x(rng, (4, 15)), pw)  # K differs
    with pytest.raises(ValueError):
        lowbit.linear(_x(rng, (16, 4)), pw)
    a = random_int8(rng, (4, 16), np.uint8)
    with pytest.raises(ValueError):
        lowbit.matmul_integer(a, random_int8(rng, (15, 3), np.int8))
    with pytest.raises(ValueError):
        lowbit.matmul_integer(a, pw.qtensor().data)  # (9, 16): K=9 rows
    with pytest.raises(ValueError):
        lowbit.matmul_integer(random_int8(rng, (4, 15), np.uint8), pw)
    with pytest.raises(ValueError):
        lowbit.matmul_integer(np.array(3, np.uint8), random_int8(rng, (1, 3), np.int8))
    with pytest.raises(ValueError):
        lowbit.matmul_integer(random_int8(rng, (2, 3, 4, 16), np.uint8),
                              random_int8(rng, (4, 16, 5), np.int8))  # batch 3 vs 4
    with pytest.raises(ValueError):
        lowbit.pack_weight(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError):
        lowbit.pack_weight(np.ones(4, np.float32))


def test_zero_point_shapes(isa, rng):
    a = random_int8(rng, (4, 16), np.uint8)
    b = random_int8(rng, (16, 5), np.int8)
    with pytest.raises(ValueError):
        lowbit.matmul_integer(a, b, np.zeros(3, np.uint8))  # neither 1 nor M
    with pytest.raises(ValueError):
        lowbit.matmul_integer(a, b, None, np.zeros(4, np.int8))  # neither 1 nor N
    pw = lowbit.pack_weight(_x(rng, (5, 16)))
    with pytest.raises(ValueError):
        lowbit.matmul_integer(a, pw, None, 0)  # a PackedWeight carries its own
    x = _x(rng, (3, 8))
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, np.ones(3, np.float32), np.zeros(8, np.uint8), axis=0)
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, np.ones(4, np.float32), axis=1)  # per-axis length
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, np.ones((3, 2), np.float32), axis=1, block_size=3)  # ceil(8/3)=3
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, np.ones(8, np.float32), axis=2)  # axis out of range
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, 1.0, block_size=-1)
    with pytest.raises(ValueError):
        lowbit.quantize(x, group_size=0)


# ---- NaN / Inf -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("pos", [0, 5, 16, 39])  # first lane, inside a vector, tail lanes
def test_non_finite_inputs(isa, rng, pw, bad, pos):
    x = _x(rng, (40,))
    x[pos] = bad
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, 0.1)
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x.reshape(5, 8), np.full(8, 0.1, np.float32), axis=1)
    with pytest.raises(ValueError):
        lowbit.dynamic_quantize_linear(x)
    with pytest.raises(ValueError):
        lowbit.quantize(x)
    with pytest.raises(ValueError):
        lowbit.quantize(x.reshape(5, 8), axis=0)
    with pytest.raises(ValueError):
        lowbit.pack_weight(x.reshape(5, 8))
    xl = _x(rng, (3, 16))
    xl.reshape(-1)[pos] = bad
    with pytest.raises(ValueError):
        lowbit.linear(xl, pw)


def test_non_finite_in_large_inputs(isa, rng, pw):
    """NaN far from the start (other threads' chunks) is still found."""
    x = _x(rng, (200_000,))
    x[-3] = np.nan
    with pytest.raises(ValueError):
        lowbit.dynamic_quantize_linear(x)
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, 0.1)
    xl = _x(rng, (512, 16))
    xl[500, 3] = np.inf
    with pytest.raises(ValueError):
        lowbit.linear(xl, pw)


# ---- scales and zero points ------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("scale", [0.0, -1.0, np.nan, np.inf, -np.inf, 1e39, -0.0])
def test_bad_scales(isa, scale):
    x = np.ones((2, 4), np.float32)
    q = np.ones((2, 4), np.int8)
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, scale)
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, np.array([1.0, scale, 1.0, 1.0], np.float32), axis=1)
    with pytest.raises(ValueError):
        lowbit.dequantize_linear(q, scale)
    with pytest.raises(ValueError):
        lowbit.requantize(np.ones((2, 4), np.int32), scale)
    a = np.ones((2, 4), np.uint8)
    with pytest.raises(ValueError):
        lowbit.qlinear_matmul(a, scale, 0, a.T.copy(), 1.0, 0, 1.0, 0)
    with pytest.raises(ValueError):
        lowbit.qlinear_matmul(a, 1.0, 0, a.T.copy(), 1.0, 0, scale, 0)


def test_scale_wrong_type(isa):
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError):
        lowbit.quantize_linear(x, "0.1")
    with pytest.raises(TypeError):
        lowbit.quantize_linear(x, np.array(True))


@pytest.mark.parametrize("qtype,bad", [("int8", 128), ("int8", -129), ("uint8", -1), ("uint8", 256),
                                       ("int4", 8), ("int4", -9), ("uint4", 16), ("uint4", -1)])
def test_zero_point_out_of_range(isa, qtype, bad):
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, 1.0, bad, dtype=qtype)
    with pytest.raises(ValueError):
        lowbit.quantize_linear(x, np.ones(4, np.float32), np.array([0, bad, 0, 0]), axis=0,
                               dtype=qtype)
    with pytest.raises(ValueError):
        lowbit.requantize(np.ones(4, np.int32), 0.5, bad, dtype=qtype)


def test_integer_zero_point_out_of_range(isa):
    a = np.ones((2, 4), np.uint8)
    s = np.ones((2, 4), np.int8)
    with pytest.raises(ValueError):
        lowbit.matmul_integer(a, s.T.copy(), 256)
    with pytest.raises(ValueError):
        lowbit.matmul_integer(a, s.T.copy(), -1)
    with pytest.raises(ValueError):
        lowbit.matmul_integer(s, a.T.copy(), 128)
    with pytest.raises(ValueError):
        lowbit.matmul_integer(a, s.T.copy(), None, -129)
    with pytest.raises(ValueError):
        lowbit.matmul_integer(a, a.T.copy(), None, np.array([0, 300]))
    with pytest.raises(ValueError):
        lowbit.dequantize_linear(a, 1.0, 256)
    with pytest.raises(ValueError):
        lowbit.dequantize_linear(np.ones(4, np.int32), 1.0, 3)  # int32 takes zero point 0
    with pytest.raises(TypeError):
        lowbit.matmul_integer(a, s.T.copy(), 1.5)  # not an integer


@pytest.mark.parametrize("name", ["int32", "float32", "int2", "bogus", ""])
def test_unknown_dtype_names(isa, name):
    x = np.ones(4, np.float32)
    with pytest.raises((ValueError, TypeError)):
        lowbit.quantize_linear(x, 1.0, dtype=name)
    with pytest.raises((ValueError, TypeError)):
        lowbit.quantize(x, name)
    with pytest.raises((ValueError, TypeError)):
        lowbit.requantize(np.ones(4, np.int32), 1.0, dtype=name)


def test_unknown_dtype_objects(isa):
    x = np.ones(4, np.float32)
    for bad in (np.int32, np.float64, 3.5, object()):
        with pytest.raises((ValueError, TypeError)):
            lowbit.quantize_linear(x, 1.0, dtype=bad)
    with pytest.raises(ValueError):
        lowbit.dequantize_linear(np.ones(4, np.int8), 1.0, dtype=np.float64)
    with pytest.raises(ValueError):
        lowbit.pack_weight(np.ones((2, 4), np.float32), bits=3)
    with pytest.raises(ValueError):
        lowbit.pack_weight(lowbit.quantize(np.ones((2, 4), np.float32), "int4", axis=0))


# ---- ISA selection ---------------------------------------------------------------------------
def test_unknown_isa_name():
    before = lowbit.get_isa()
    for name in ("bogus", "AVX2", "", "neon "):
        with pytest.raises(ValueError):
            lowbit.set_isa(name)
        with pytest.raises(ValueError):
            with lowbit.use_isa(name):
                pass  # pragma: no cover
        assert lowbit.get_isa() == before
    with pytest.raises(TypeError):
        lowbit.set_isa(2)


def _run_python(code, env_extra, cwd):
    env = dict(os.environ)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_unsupported_isa(tmp_path):
    missing = [n for n in ALL_ISAS if n not in ISAS]
    if missing:
        before = lowbit.get_isa()
        for name in missing:
            with pytest.raises(RuntimeError):
                lowbit.set_isa(name)
            assert lowbit.get_isa() == before
            r = _run_python("import lowbit", {"LOWBIT_ISA": missing[0]}, tmp_path)
            assert r.returncode != 0 and missing[0] in r.stderr
    else:
        # every path is usable here: check the environment override's error path instead
        r = _run_python("import lowbit", {"LOWBIT_ISA": "bogus"}, tmp_path)
        assert r.returncode != 0
        assert "bogus" in r.stderr and "Traceback" in r.stderr
        assert "Segmentation" not in r.stderr


def test_bogus_lowbit_isa_env_fails_at_import(tmp_path):
    r = _run_python("import lowbit", {"LOWBIT_ISA": "bogus"}, tmp_path)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "ValueError" in last and "bogus" in last, r.stderr[-500:]


# ---- memory layouts --------------------------------------------------------------------------
def _misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of `a` whose data pointer is 1 byte off the dtype's alignment."""
    buf = bytearray(a.nbytes + 1)
    out = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned or a.dtype.itemsize == 1
    return out


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)
    return a


LAYOUTS = {
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "reversed": lambda a: a[::-1].copy()[::-1],
    "transposed": lambda a: np.asfortranarray(a),
    "readonly": _readonly,
    "misaligned": _misaligned,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_float_ops(isa, rng, layout):
    make = LAYOUTS[layout]
    pw_ = lowbit.pack_weight(_x(rng, (33, 40)))
    bias = rng.standard_normal(33).astype(np.float32)
    x = _x(rng, (6, 40))
    xv = make(x)
    np.testing.assert_array_equal(xv, x)
    if layout == "strided":
        assert not xv.flags.c_contiguous
    if layout == "reversed":
        assert xv.strides[0] < 0
    assert_bits_equal(lowbit.linear(xv, pw_, bias), ref_linear(x, pw_, bias))
    assert_bits_equal(lowbit.linear(x, pw_, make(bias[None, :])[0]), ref_linear(x, pw_, bias))
    assert_int_equal(lowbit.quantize_linear(xv, 0.02, np.int8(1)),
                     ref_quantize_linear(x, np.float32(0.02), 1, "int8"))
    scale = np.linspace(0.01, 0.05, 40, dtype=np.float32)
    assert_int_equal(lowbit.quantize_linear(xv, scale, axis=1),
                     ref_quantize_linear(x, scale, None, "uint8"))
    q, s, z = lowbit.dynamic_quantize_linear(xv)
    eq, es, ez = ref_dynamic_quantize_linear(x)
    assert_int_equal(q, eq)
    assert s == es and z == ez
    qt = lowbit.quantize(xv, "int8", axis=0)
    np.testing.assert_array_equal(qt.data, lowbit.quantize(x, "int8", axis=0).data)
    w = _x(rng, (33, 40))
    np.testing.assert_array_equal(lowbit.pack_weight(make(w)).qtensor().data,
                                  lowbit.pack_weight(w).qtensor().data)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_integer_ops(isa, rng, layout):
    make = LAYOUTS[layout]
    for a_dt in (np.uint8, np.int8):
        a = random_int8(rng, (7, 64), a_dt)  # K % 4 == 0: uint8 A may be used in place
        b = random_int8(rng, (64, 19), np.int8)
        za = random_int8(rng, (7,), a_dt)
        expected = ref_matmul_integer(a, b, za, 3)
        assert_int_equal(lowbit.matmul_integer(make(a), b, za, 3), expected, "A")
        assert_int_equal(lowbit.matmul_integer(a, make(b), za, 3), expected, "B")
        assert_int_equal(lowbit.matmul_integer(make(a), make(b), make(za[None])[0], 3), expected)
        q = random_int8(rng, (6, 40), a_dt)
        assert_bits_equal(lowbit.dequantize_linear(make(q), 0.5, a_dt(2)),
                          (q.astype(np.int32) - 2).astype(np.float32) * np.float32(0.5))
    acc = rng.integers(-10**6, 10**6, size=(6, 40)).astype(np.int32)
    accv = make(acc)
    expected = np.clip(np.rint(acc.astype(np.float64) * np.float64(np.float32(1e-4))) + 5, -128,
                       127).astype(np.int8)
    assert_int_equal(lowbit.requantize(accv, np.float32(1e-4), np.int8(5)), expected)
    assert_bits_equal(lowbit.dequantize_linear(accv, 0.25),
                      acc.astype(np.float32) * np.float32(0.25))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_parameter_arrays(isa, rng, layout):
    """Scales, zero points and multipliers given as strided / reversed / read-only / misaligned
    arrays are valid input too."""
    make = LAYOUTS[layout]
    x = _x(rng, (6, 40))
    scale = np.linspace(0.01, 0.05, 40, dtype=np.float32)
    zp32 = rng.integers(-5, 6, size=40).astype(np.int32)
    sv = make(scale[None, :])[0]
    zv = make(zp32[None, :])[0]
    np.testing.assert_array_equal(sv, scale)
    assert_int_equal(lowbit.quantize_linear(x, sv, zv, axis=1, dtype="int8"),
                     ref_quantize_linear(x, scale, zp32, "int8"), "quantize_linear")
    q = random_int8(rng, (6, 40), np.int8)
    assert_bits_equal(lowbit.dequantize_linear(q, sv, zv, axis=1),
                      (q.astype(np.int32) - zp32).astype(np.float32) * scale, "dequantize_linear")
    acc = rng.integers(-10**4, 10**4, size=(6, 40)).astype(np.int32)
    expected = np.clip(np.rint(acc.astype(np.float64) * scale.astype(np.float64)), 0, 255)
    assert_int_equal(lowbit.requantize(acc, sv), expected.astype(np.uint8), "requantize")
    a = random_int8(rng, (40, 8), np.uint8)
    b = random_int8(rng, (8, 3), np.int8)
    za32 = rng.integers(0, 256, size=40).astype(np.int32)
    assert_int_equal(lowbit.matmul_integer(a, b, make(za32[None, :])[0]),
                     ref_matmul_integer(a, b, za32), "matmul_integer a_zero_point")


def test_misaligned_really_misaligned():
    a = _misaligned(np.arange(10, dtype=np.float32))
    assert not a.flags.aligned
    b = _misaligned(np.arange(10, dtype=np.int32))
    assert not b.flags.aligned


# ---- empty dimensions ------------------------------------------------------------------------
@pytest.mark.parametrize("M,K,N", [(0, 5, 3), (4, 5, 0), (4, 0, 3), (0, 0, 0), (0, 5, 0)])
def test_empty_matmul(isa, rng, M, K, N):
    for a_dt, b_dt in ((np.uint8, np.int8), (np.int8, np.uint8)):
        a = random_int8(rng, (M, K), a_dt)
        b = random_int8(rng, (K, N), b_dt)
        got = lowbit.matmul_integer(a, b)
        assert got.shape == (M, N) and got.dtype == np.int32
        assert (got == 0).all()
        got = lowbit.matmul_integer(a, b, 7, 3)  # (A - 7) @ (B - 3) over zero terms is 0
        assert got.shape == (M, N) and (got == 0).all()
        got = lowbit.matmul_integer(random_int8(rng, (2, M, K), a_dt), b)
        assert got.shape == (2, M, N) and (got == 0).all()


@pytest.mark.parametrize("M,K,N", [(0, 5, 3), (4, 5, 0), (4, 0, 3), (0, 0, 0)])
def test_empty_linear(isa, rng, M, K, N):
    w = _x(rng, (N, K))
    b = rng.standard_normal(N).astype(np.float32)
    pw_ = lowbit.pack_weight(w)
    assert pw_.shape == (N, K)
    x = _x(rng, (M, K))
    y = lowbit.linear(x, pw_, b)
    assert y.shape == (M, N) and y.dtype == np.float32
    assert_bits_equal(y, np.broadcast_to(b, (M, N)) if K == 0 else ref_linear(x, pw_, b))
    y = lowbit.linear(x, pw_)
    assert y.shape == (M, N)
    if K == 0:
        assert (y == 0).all()


@pytest.mark.parametrize("shape", [(0,), (2, 4, 0), (2, 0, 0), (0, 4, 5), (2, 0, 5)])
def test_empty_linear_leading_dims(isa, rng, shape):
    K, N = shape[-1], 3
    pw_ = lowbit.pack_weight(_x(rng, (N, K)))
    b = rng.standard_normal(N).astype(np.float32)
    x = _x(rng, shape)
    y = lowbit.linear(x, pw_, b)
    assert y.shape == shape[:-1] + (N,) and y.dtype == np.float32
    if K == 0:
        assert_bits_equal(y, np.broadcast_to(b, y.shape))


@pytest.mark.parametrize("M,K,N", [(0, 5, 3), (4, 5, 0), (4, 0, 3), (0, 0, 0)])
def test_empty_matmul_packed_weight(isa, rng, M, K, N):
    pw_ = lowbit.pack_weight(_x(rng, (N, K)))
    c = lowbit.matmul_integer(random_int8(rng, (M, K), np.uint8), pw_, 9)
    assert c.shape == (M, N) and c.dtype == np.int32 and (c == 0).all()


def test_empty_elementwise(isa):
    for shape in ((0,), (3, 0), (0, 4, 2)):
        x = np.zeros(shape, np.float32)
        q = lowbit.quantize_linear(x, 0.5, np.int8(1))
        assert q.shape == shape and q.dtype == np.int8
        d = lowbit.dequantize_linear(q, 0.5, np.int8(1))
        assert d.shape == shape and d.dtype == np.float32
        r = lowbit.requantize(np.zeros(shape, np.int32), 0.5)
        assert r.shape == shape and r.dtype == np.uint8
        q, s, z = lowbit.dynamic_quantize_linear(x)
        assert q.shape == shape and s == 1 and z == 0
    x = np.zeros((3, 0), np.float32)
    assert lowbit.quantize_linear(x, np.ones(0, np.float32), axis=1).shape == (3, 0)


# ---- the caller's arrays are never modified ---------------------------------------------------
def test_inputs_not_modified(isa, rng):
    x = _x(rng, (6, 64))
    w = _x(rng, (10, 64))
    bias = rng.standard_normal(10).astype(np.float32)
    a_u8 = random_int8(rng, (6, 64), np.uint8)  # may be read in place (K % 4 == 0)
    a_s8 = random_int8(rng, (6, 63), np.int8)
    b_s8 = random_int8(rng, (64, 10), np.int8)
    b_u8 = random_int8(rng, (63, 10), np.uint8)
    za = random_int8(rng, (6,), np.uint8)
    zb = random_int8(rng, (10,), np.int8)
    scale = np.full(64, 0.05, np.float32)
    zq = np.zeros(64, np.int8)
    acc = rng.integers(-10**6, 10**6, size=(6, 10)).astype(np.int32)
    mult = np.full(10, 1e-3, np.float32)
    arrays = [x, w, bias, a_u8, a_s8, b_s8, b_u8, za, zb, scale, zq, acc, mult]
    copies = [arr.copy() for arr in arrays]

    pw_ = lowbit.pack_weight(w)
    lowbit.linear(x, pw_, bias)
    lowbit.nn.QuantizedLinear.from_float(w, bias)(x)
    lowbit.quantize_linear(x, scale, zq, axis=1)
    lowbit.quantize_linear(x, 0.1)
    lowbit.dynamic_quantize_linear(x)
    lowbit.quantize(x, "uint4", symmetric=False, group_size=32)
    lowbit.matmul_integer(a_u8, b_s8, za, zb)
    lowbit.matmul_integer(a_s8, b_u8, None, 7)
    lowbit.matmul_integer(a_u8, pw_, za)
    lowbit.dequantize_linear(a_u8, 0.1, 3)
    lowbit.requantize(acc, mult, np.int8(0))
    lowbit.qlinear_matmul(a_u8, 0.1, za, b_s8, 0.2, zb, 0.5, np.uint8(3))
    for i, (arr, ref) in enumerate(zip(arrays, copies)):
        np.testing.assert_array_equal(arr, ref, err_msg=f"array #{i} was modified")
        assert arr.flags.writeable
    # results do not alias the inputs
    q = lowbit.quantize_linear(x, 0.1)
    assert not np.shares_memory(q, x)
    y = lowbit.linear(x, pw_, bias)
    assert not np.shares_memory(y, x) and not np.shares_memory(y, bias)


def test_set_num_threads_validation():
    before = lowbit.get_num_threads()
    for bad in (0, -1):
        with pytest.raises(ValueError):
            lowbit.set_num_threads(bad)
    for bad in (1.5, "2", True, None):
        with pytest.raises(TypeError):
            lowbit.set_num_threads(bad)
    assert lowbit.get_num_threads() == before
