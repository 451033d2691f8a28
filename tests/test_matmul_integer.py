"""matmul_integer (ONNX MatMulInteger): exact int32 results against an int64 NumPy oracle, on every
ISA path, over shape tails, zero-point forms, batching, packed weights and adversarial data."""
from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import lowbit
from conftest import (ISAS, assert_int_equal, matmul_i64, random_int8, ref_matmul_integer,
                      wrap_int32)

DTYPES = [np.uint8, np.int8]
COMBOS = list(itertools.product(DTYPES, DTYPES))
COMBO_IDS = [f"{np.dtype(a).name}x{np.dtype(b).name}" for a, b in COMBOS]

KS = [1, 2, 3, 4, 5, 7, 8, 31, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4096]
MS = [1, 2, 3, 4, 5, 6, 7, 8, 13, 24, 25, 100]
NS = [1, 3, 15, 16, 17, 47, 48, 63, 64, 65, 127, 128, 129, 200]


@functools.lru_cache(maxsize=None)
def _case(M, K, N, a_dt, b_dt, zp_mode, seed=0):
    """Random operands, zero points and the exact expected result (shared by every ISA)."""
    rng = np.random.default_rng([M, K, N, seed, len(zp_mode)])
    a_dt, b_dt = np.dtype(a_dt), np.dtype(b_dt)
    a = random_int8(rng, (M, K), a_dt)
    b = random_int8(rng, (K, N), b_dt)
    ia, ib = np.iinfo(a_dt), np.iinfo(b_dt)
    za = zb = None
    if zp_mode in ("scalar", "scalar_typed"):
        za = int(rng.integers(ia.min, ia.max + 1))
        zb = int(rng.integers(ib.min, ib.max + 1))
        if zp_mode == "scalar_typed":
            za, zb = np.array(za, a_dt), np.array(zb, b_dt)
    if zp_mode in ("row", "row_col"):
        za = random_int8(rng, (M,), a_dt)
    if zp_mode in ("col", "row_col"):
        zb = random_int8(rng, (N,), b_dt)
    expected = ref_matmul_integer(a, b, za, zb)
    for arr in (a, b, expected):
        arr.setflags(write=False)
    return a, b, za, zb, expected


def _check(M, K, N, a_dt, b_dt, zp_mode="none"):
    a, b, za, zb, expected = _case(M, K, N, a_dt, b_dt, zp_mode)
    got = lowbit.matmul_integer(a, b, za, zb)
    assert_int_equal(got, expected, f"M={M} K={K} N={N} {np.dtype(a_dt)}x{np.dtype(b_dt)} "
                                    f"zp={zp_mode} isa={lowbit.get_isa()}")


def test_oracle_float_path_matches_int64():
    """The oracle's fast float64 path must agree with a plain int64 matmul (self-check)."""
    rng = np.random.default_rng(1)
    a = rng.integers(-255, 256, size=(60, 3000))
    b = rng.integers(-255, 256, size=(3000, 70))
    assert a.size * 70 > 200_000  # takes the float64 path
    np.testing.assert_array_equal(matmul_i64(a, b), np.matmul(a, b))
    assert wrap_int32(2**31).item() == -2**31 and wrap_int32(-2**31 - 1).item() == 2**31 - 1


# every (M, N) pair with K = 3 (padded depth), 64 (no padding) and 129; all dtype combos
@pytest.mark.parametrize("K", [3, 64, 129])
@pytest.mark.parametrize("N", NS)
@pytest.mark.parametrize("M", MS)
def test_shape_tails_m_n(isa, M, N, K):
    for a_dt, b_dt in COMBOS:
        _check(M, K, N, a_dt, b_dt)


# every K against a few M/N tails, all dtype combos
@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("M,N", [(1, 1), (3, 17), (6, 64), (7, 129), (25, 48)])
def test_shape_tails_k(isa, M, N, K):
    for a_dt, b_dt in COMBOS:
        _check(M, K, N, a_dt, b_dt)


# deep K with small M, N
@pytest.mark.parametrize("M,K,N", [(1, 16384, 1), (2, 16384, 3), (5, 16383, 17), (1, 32769, 65)])
def test_deep_k(isa, M, K, N):
    for a_dt, b_dt in COMBOS:
        _check(M, K, N, a_dt, b_dt, "row_col")


@pytest.mark.parametrize("a_dt,b_dt", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("M,K,N", [(100, 1000, 200), (24, 4096, 65), (13, 257, 129)])
def test_dtype_combos_larger(isa, a_dt, b_dt, M, K, N):
    _check(M, K, N, a_dt, b_dt, "row_col")


@pytest.mark.parametrize("zp_mode", ["none", "scalar", "scalar_typed", "row", "col", "row_col"])
@pytest.mark.parametrize("a_dt,b_dt", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("M,K,N", [(1, 33, 17), (7, 67, 65), (13, 256, 200)])
def test_zero_points(isa, a_dt, b_dt, zp_mode, M, K, N):
    _check(M, K, N, a_dt, b_dt, zp_mode)


def test_zero_points_change_the_result(isa):
    """Guards against zero points being ignored: a nonzero zero point must move the result."""
    a = np.full((2, 8), 10, np.uint8)
    b = np.full((8, 3), 3, np.int8)
    base = lowbit.matmul_integer(a, b)
    assert (base == 240).all()
    assert (lowbit.matmul_integer(a, b, 10) == 0).all()
    assert (lowbit.matmul_integer(a, b, None, 3) == 0).all()
    got = lowbit.matmul_integer(a, b, np.array([0, 5], np.uint8), np.array([0, 1, 2], np.int8))
    np.testing.assert_array_equal(got, [[240, 160, 80], [120, 80, 40]])


@pytest.mark.parametrize("a_dt", DTYPES, ids=["uint8", "int8"])
def test_every_a_zero_point(isa, rng, a_dt):
    info = np.iinfo(a_dt)
    a = random_int8(rng, (3, 37), a_dt)
    b = random_int8(rng, (37, 17), np.int8)
    zb = random_int8(rng, (17,), np.int8)
    b_c = b.astype(np.int64) - zb.astype(np.int64)
    for z in range(info.min, info.max + 1):
        expected = wrap_int32((a.astype(np.int64) - z) @ b_c)
        got = lowbit.matmul_integer(a, b, z, zb)
        assert_int_equal(got, expected, f"a_zero_point={z}")
        got_typed = lowbit.matmul_integer(a, b, np.array(z, a_dt), zb)
        assert_int_equal(got_typed, expected, f"typed a_zero_point={z}")


@pytest.mark.parametrize("b_dt", DTYPES, ids=["uint8", "int8"])
def test_every_b_zero_point(isa, rng, b_dt):
    info = np.iinfo(b_dt)
    a = random_int8(rng, (5, 21), np.uint8)
    b = random_int8(rng, (21, 66), b_dt)
    a_c = a.astype(np.int64) - 7
    for z in range(info.min, info.max + 1):
        expected = wrap_int32(a_c @ (b.astype(np.int64) - z))
        assert_int_equal(lowbit.matmul_integer(a, b, 7, z), expected, f"b_zero_point={z}")


# ---- batching and 1-D operands (numpy.matmul rules) ------------------------------------------
BATCH_SHAPES = [
    ((2, 3, 5, 19), (19, 17)),
    ((5, 19), (2, 19, 17)),
    ((2, 1, 5, 19), (1, 3, 19, 17)),
    ((2, 1, 4, 33), (3, 33, 65)),
    ((19,), (19, 17)),
    ((5, 19), (19,)),
    ((19,), (19,)),
    ((2, 3, 5, 19), (19,)),
    ((19,), (2, 19, 17)),
    ((1, 6, 64), (4, 64, 1)),
]


@pytest.mark.parametrize("a_dt,b_dt", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("a_shape,b_shape", BATCH_SHAPES, ids=[f"{a}@{b}" for a, b in BATCH_SHAPES])
def test_batched_broadcasting(isa, rng, a_shape, b_shape, a_dt, b_dt):
    a = random_int8(rng, a_shape, a_dt)
    b = random_int8(rng, b_shape, b_dt)
    expected = wrap_int32(np.matmul(a.astype(np.int64), b.astype(np.int64)))
    got = lowbit.matmul_integer(a, b)
    assert_int_equal(got, expected)
    za, zb = np.array(3, a_dt), np.array(-5 if b_dt == np.int8 else 250, b_dt)
    expected = wrap_int32(np.matmul(a.astype(np.int64) - int(za), b.astype(np.int64) - int(zb)))
    assert_int_equal(lowbit.matmul_integer(a, b, za, zb), expected, "scalar zero points")


@pytest.mark.parametrize("a_shape,b_shape", [((2, 3, 5, 19), (19, 17)), ((5, 19), (2, 19, 17)),
                                             ((2, 1, 5, 19), (1, 3, 19, 17))])
def test_batched_row_and_column_zero_points(isa, rng, a_shape, b_shape):
    a = random_int8(rng, a_shape, np.uint8)
    b = random_int8(rng, b_shape, np.int8)
    za = random_int8(rng, (a_shape[-2],), np.uint8)
    zb = random_int8(rng, (b_shape[-1],), np.int8)
    a_c = a.astype(np.int64) - za.astype(np.int64).reshape(-1, 1)
    b_c = b.astype(np.int64) - zb.astype(np.int64)
    assert_int_equal(lowbit.matmul_integer(a, b, za, zb), wrap_int32(np.matmul(a_c, b_c)))


# ---- PackedWeight as B -----------------------------------------------------------------------
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("a_dt", DTYPES, ids=["uint8", "int8"])
@pytest.mark.parametrize("N,K", [(1, 1), (17, 63), (64, 64), (129, 257), (200, 1000)])
def test_packed_weight_operand(isa, rng, N, K, a_dt, symmetric):
    w = rng.standard_normal((N, K)).astype(np.float32)
    pw = lowbit.pack_weight(w, symmetric=symmetric)
    qt = pw.qtensor()
    assert qt.data.shape == (N, K) and qt.data.dtype == np.int8
    zw = np.asarray(qt.zero_point).reshape(-1)
    assert symmetric == bool(np.all(zw == 0))
    for M in (1, 5, 13):
        a = random_int8(rng, (M, K), a_dt)
        za = random_int8(rng, (M,), a_dt)
        expected = ref_matmul_integer(a, qt.data.T, za, zw)
        assert_int_equal(lowbit.matmul_integer(a, pw, za), expected, f"M={M}")
        expected0 = ref_matmul_integer(a, qt.data.T, None, zw)
        assert_int_equal(lowbit.matmul_integer(a, pw), expected0, f"M={M} no a_zero_point")
    # leading dims and 1-D A
    a = random_int8(rng, (2, 3, K), a_dt)
    expected = wrap_int32(np.matmul(a.astype(np.int64),
                                    (qt.data.astype(np.int64) - zw.reshape(-1, 1).astype(np.int64)).T))
    assert_int_equal(lowbit.matmul_integer(a, pw), expected)
    assert_int_equal(lowbit.matmul_integer(a[0, 0], pw), expected[0, 0])


def test_packed_weight_from_qtensor(isa, rng):
    w = rng.standard_normal((33, 70)).astype(np.float32)
    qt = lowbit.quantize(w, "uint8", symmetric=False, axis=0)
    pw = lowbit.pack_weight(qt)
    np.testing.assert_array_equal(pw.qtensor().data, qt.data)
    a = random_int8(rng, (9, 70), np.uint8)
    expected = ref_matmul_integer(a, qt.data.T, 11, np.asarray(qt.zero_point))
    assert_int_equal(lowbit.matmul_integer(a, pw, 11), expected)


# ---- adversarial data: saturation of 16-bit intermediates and int32 wrap-around --------------
def _const(shape, dtype, value):
    return np.full(shape, value, dtype=dtype)


ADVERSARIAL = {
    # name: (A dtype, A value or pattern, B dtype, B value or pattern)
    "u255_s-128": (np.uint8, 255, np.int8, -128),
    "u255_s127": (np.uint8, 255, np.int8, 127),
    "u255_alt": (np.uint8, 255, np.int8, "alt"),
    "u255_u0": (np.uint8, 255, np.uint8, 0),
    "u255_u255": (np.uint8, 255, np.uint8, 255),
    "s-128_s-128": (np.int8, -128, np.int8, -128),
    "s127_s-128": (np.int8, 127, np.int8, -128),
    "s-128_u255": (np.int8, -128, np.uint8, 255),
    "alt_alt": (np.int8, "alt", np.int8, "alt"),
}


def _pattern(shape, dtype, spec, axis):
    if not isinstance(spec, str):
        return _const(shape, dtype, spec)
    info = np.iinfo(dtype)
    idx = np.indices(shape)[axis]
    return np.where(idx % 2 == 0, info.max, info.min).astype(dtype)


@pytest.mark.parametrize("K", [1, 2, 3, 4, 5, 63, 64, 65, 255, 256, 1000, 4096])
@pytest.mark.parametrize("case", list(ADVERSARIAL), ids=list(ADVERSARIAL))
def test_adversarial_extremes(isa, case, K):
    a_dt, a_spec, b_dt, b_spec = ADVERSARIAL[case]
    M, N = 7, 65
    a = _pattern((M, K), a_dt, a_spec, 1)
    b = _pattern((K, N), b_dt, b_spec, 0)
    assert_int_equal(lowbit.matmul_integer(a, b), ref_matmul_integer(a, b))
    # zero points that push every centred product to +-255*255
    za = 0 if a_dt == np.uint8 else 127
    zb = 127 if b_dt == np.int8 else 0
    assert_int_equal(lowbit.matmul_integer(a, b, za, zb), ref_matmul_integer(a, b, za, zb),
                     "with zero points")


def test_vpmaddubsw_trap_values(isa):
    """A=255, B=-128 everywhere: the pair sum 2*255*(-128) overflows int16; must stay exact."""
    for K in (2, 4, 8, 4096):
        a = _const((6, K), np.uint8, 255)
        b = _const((K, 48), np.int8, -128)
        got = lowbit.matmul_integer(a, b)
        assert (got == -255 * 128 * K).all(), (K, got[0, 0])
        b = _const((K, 48), np.int8, 127)
        assert (lowbit.matmul_integer(a, b) == 255 * 127 * K).all()


@pytest.mark.parametrize("M,N", [(1, 1), (7, 65)])
def test_int32_wraparound(isa, M, N):
    K = 70000
    a = _const((M, K), np.uint8, 0)
    b = _const((K, N), np.int8, -128)
    # (0 - 255) * (-128 - 127) = 65025 per term: 70000 terms = 4_551_750_000 > 2**31
    got = lowbit.matmul_integer(a, b, 255, 127)
    exact = 65025 * K
    assert exact > 2**32
    assert (got == wrap_int32(exact)).all(), got.ravel()[:4]
    # A=255, B=-128: -2_284_800_000 < -2**31
    a = _const((M, K), np.uint8, 255)
    got = lowbit.matmul_integer(a, b)
    assert (got == wrap_int32(-255 * 128 * K)).all(), got.ravel()[:4]
    # int8 A=-128 with B=-128 and mixed random-sign zero points
    a = _const((M, K), np.int8, -128)
    got = lowbit.matmul_integer(a, b, 127, 127)
    assert (got == wrap_int32(255 * 255 * K)).all(), got.ravel()[:4]


def test_int32_wraparound_random(isa, rng):
    K = 70000
    a = rng.choice(np.array([0, 255], np.uint8), size=(3, K), p=[0.9, 0.1])
    b = rng.choice(np.array([-128, 127], np.int8), size=(K, 5), p=[0.9, 0.1])
    za = np.array([255, 0, 128], np.uint8)
    zb = np.array([127, -128, 0, 127, -128], np.int8)
    expected = ref_matmul_integer(a, b, za, zb)
    exact = (a.astype(np.int64) - za.astype(np.int64)[:, None]) @ (b.astype(np.int64) - zb.astype(np.int64))
    assert np.abs(exact).max() >= 2**31  # the case really wraps
    assert_int_equal(lowbit.matmul_integer(a, b, za, zb), expected)


# ---- cross-ISA equality ----------------------------------------------------------------------
@pytest.mark.skipif(len(ISAS) < 2, reason="only one ISA path on this CPU")
@pytest.mark.parametrize("a_dt,b_dt", COMBOS, ids=COMBO_IDS)
def test_cross_isa_identical(rng, a_dt, b_dt):
    cases = []
    for M, K, N in [(1, 1000, 129), (5, 63, 200), (25, 257, 47), (100, 128, 64)]:
        a = random_int8(rng, (M, K), a_dt)
        b = random_int8(rng, (K, N), b_dt)
        cases.append((a, b, random_int8(rng, (M,), a_dt), random_int8(rng, (N,), b_dt)))
    results = {}
    for name in ISAS:
        with lowbit.use_isa(name):
            results[name] = [lowbit.matmul_integer(*c) for c in cases]
    first = ISAS[0]
    for name in ISAS[1:]:
        for i, (r0, r1) in enumerate(zip(results[first], results[name])):
            assert_int_equal(r1, r0, f"case {i}: {name} vs {first}")


# ---- random sweep ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(40))
def test_random_problems(isa, seed):
    rng = np.random.default_rng(1000 + seed)
    M, K, N = int(rng.integers(1, 131)), int(rng.integers(1, 600)), int(rng.integers(1, 300))
    a_dt, b_dt = COMBOS[seed % 4]
    a = random_int8(rng, (M, K), a_dt)
    b = random_int8(rng, (K, N), b_dt)
    mode = seed // 4 % 5
    za = None if mode in (0, 3) else (random_int8(rng, (M,), a_dt) if mode == 2 else
                                      int(rng.integers(np.iinfo(a_dt).min, np.iinfo(a_dt).max + 1)))
    zb = None if mode in (0, 2) else random_int8(rng, (N,), b_dt)
    assert_int_equal(lowbit.matmul_integer(a, b, za, zb), ref_matmul_integer(a, b, za, zb),
                     f"M={M} K={K} N={N} mode={mode}")


def test_thread_count_invariance(isa, rng):
    a = random_int8(rng, (130, 512), np.int8)
    b = random_int8(rng, (512, 257), np.uint8)
    za = random_int8(rng, (130,), np.int8)
    expected = ref_matmul_integer(a, b, za, 77)
    for n in (1, 2, 3, 7):
        lowbit.set_num_threads(n)
        assert_int_equal(lowbit.matmul_integer(a, b, za, 77), expected, f"threads={n}")
