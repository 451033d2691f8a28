"""The fused dynamic-quantization linear (lowbit.linear, nn.QuantizedLinear): bit-exact against an
operation-by-operation NumPy reproduction, close to the float layer, independent of thread count,
ISA and concurrent callers."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import lowbit
from conftest import ISAS, assert_bits_equal, fma_f32, random_int8, ref_linear, ref_matmul_integer


def _layer(rng, n, k, symmetric=True, with_bias=True):
    w = (rng.standard_normal((n, k)) / np.sqrt(max(k, 1))).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if with_bias else None
    return w, b, lowbit.pack_weight(w, symmetric=symmetric)


def _x(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    if x.size:
        x.reshape(-1, shape[-1])[::3] += 0.75  # some rows with an asymmetric range
    return x


def _rel_err(y, ref):
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-30))


def test_fma_emulation_is_single_rounding():
    """Self-check of the oracle's fma against hand-computed single roundings, including the
    double-rounding trap (float64 sum lands exactly on a float32 midpoint)."""
    a = b = np.float32(1 + 2**-12)  # a*b = 1 + 2**-11 + 2**-24: exactly a float32 midpoint
    lo, hi = np.float32(1 + 2**-11), np.float32(1 + 2**-11 + 2**-23)
    assert fma_f32(a, b, np.float32(0)) == lo  # true tie: to even
    assert fma_f32(a, b, np.float32(2**-60)) == hi  # just above the midpoint
    assert fma_f32(a, b, np.float32(-(2**-60))) == lo  # just below
    # the naive float64-then-float32 rounding gets the second case wrong
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(2**-60)) == lo
    assert fma_f32(a, b, np.float32(-(2**-24))) == lo  # exact result, representable
    # signed zeros: -0 * 1 + 0 = +0
    assert fma_f32(np.float32(-0.0), np.float32(1), np.float32(0)).view(np.uint32) == 0
    # vectorized form
    got = fma_f32(np.array([a, a]), np.array([b, b]), np.array([2**-60, -(2**-60)], np.float32))
    np.testing.assert_array_equal(got, [hi, lo])


# ---- bit-exact against the reference ---------------------------------------------------------
KS = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 257, 1000]
NS = [1, 3, 15, 16, 17, 47, 63, 64, 65, 129]


@pytest.mark.parametrize("K", KS)
def test_linear_bit_exact_k_n_tails(isa, rng, K):
    for N in NS:
        w, b, pw = _layer(rng, N, K)
        for M in (1, 2, 5, 7):
            x = _x(rng, (M, K))
            assert_bits_equal(lowbit.linear(x, pw, b), ref_linear(x, pw, b), f"M={M} K={K} N={N}")


@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 6, 7, 8, 13, 24, 25, 100])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_linear_bit_exact_m_tails(isa, rng, M, symmetric):
    for K, N in ((64, 65), (129, 17), (300, 200)):
        w, b, pw = _layer(rng, N, K, symmetric=symmetric)
        x = _x(rng, (M, K))
        assert_bits_equal(lowbit.linear(x, pw, b), ref_linear(x, pw, b), f"M={M} K={K} N={N}")
        assert_bits_equal(lowbit.linear(x, pw), ref_linear(x, pw, None), "no bias")


@pytest.mark.parametrize("shape", [(33,), (1, 33), (2, 3, 33), (4, 1, 5, 33), (0, 33), (2, 0, 33)])
def test_linear_leading_dims(isa, rng, shape):
    w, b, pw = _layer(rng, 19, 33)
    x = _x(rng, shape)
    y = lowbit.linear(x, pw, b)
    assert y.shape == shape[:-1] + (19,) and y.dtype == np.float32
    assert_bits_equal(y, ref_linear(x, pw, b))
    if x.size:
        np.testing.assert_array_equal(y.reshape(-1, 19), lowbit.linear(x.reshape(-1, 33), pw, b))


def test_linear_special_rows(isa, rng):
    """Rows that are all zero, constant, one-signed, or hold one huge value."""
    K, N = 70, 33
    w, b, pw = _layer(rng, N, K)
    x = _x(rng, (9, K))
    x[8, :2] = (3e38, -3e38)  # max - min overflows float32: scale = max/255 - min/255
    x[0] = 0
    x[1] = 2.5
    x[2] = -2.5
    x[3] = np.abs(x[3]) + 0.1
    x[4] = -np.abs(x[4]) - 0.1
    x[5, 17] = 1e30
    x[6] = -0.0
    x[7, -1] = -3e38
    y = lowbit.linear(x, pw, b)
    assert np.isfinite(y[:8]).all()
    assert_bits_equal(y, ref_linear(x, pw, b))
    assert_bits_equal(y[0], b)  # zero row -> bias exactly


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_linear_close_to_float(isa, rng, symmetric):
    for M, K, N in ((1, 256, 64), (16, 512, 129), (50, 1000, 200)):
        w, b, pw = _layer(rng, N, K, symmetric=symmetric)
        x = _x(rng, (M, K))
        ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
        y = lowbit.linear(x, pw, b)
        assert _rel_err(y, ref) < 0.02, (M, K, N, _rel_err(y, ref))
        yb = lowbit.linear(x, pw)
        assert _rel_err(yb, ref - b) < 0.02


def test_quantized_linear_layer(isa, rng):
    K, N = 96, 40
    w = rng.standard_normal((N, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    layer = lowbit.nn.QuantizedLinear.from_float(w, b)
    assert layer.in_features == K and layer.out_features == N
    x = _x(rng, (3, 7, K))
    y = layer(x)
    assert y.shape == (3, 7, N)
    assert_bits_equal(y, ref_linear(x, layer.weight, b))
    assert_bits_equal(y, lowbit.linear(x, lowbit.pack_weight(w), b))
    np.testing.assert_array_equal(layer.weight.qtensor().data,
                                  lowbit.quantize(w, "int8", axis=0).data)
    assert _rel_err(y, x @ w.T + b) < 0.02
    nobias = lowbit.nn.QuantizedLinear.from_float(w)
    assert_bits_equal(nobias(x), ref_linear(x, nobias.weight, None))
    asym = lowbit.nn.QuantizedLinear.from_float(w, b, symmetric=False)
    assert not asym.weight.symmetric
    assert_bits_equal(asym(x), ref_linear(x, asym.weight, b))
    # the layer keeps its own copy of the bias
    b[:] = 0
    assert_bits_equal(layer(x), y)
    assert layer.weight_nbytes > 0 and np.all(np.isfinite(layer.dequantized_weight()))


@pytest.mark.parametrize("qtype,symmetric,axis", [("int8", True, None), ("int8", False, None),
                                                  ("uint8", True, 0), ("uint8", False, 0),
                                                  ("int8", False, 0)])
def test_linear_from_qtensor(isa, rng, qtype, symmetric, axis):
    w = rng.standard_normal((37, 90)).astype(np.float32)
    w[5] += 1.5  # an offset channel
    qt = lowbit.quantize(w, qtype, symmetric=symmetric, axis=axis)
    pw = lowbit.pack_weight(qt)
    assert pw.shape == (37, 90)
    np.testing.assert_array_equal(pw.qtensor().data, qt.data)
    b = rng.standard_normal(37).astype(np.float32)
    x = _x(rng, (6, 90))
    y = lowbit.linear(x, pw, b)
    assert_bits_equal(y, ref_linear(x, pw, b))
    assert _rel_err(y, x @ w.T + b) < 0.03


# ---- accumulator range -----------------------------------------------------------------------
def test_linear_deepest_exact_k_symmetric(isa):
    """K = 65536 (LINEAR_MAX_DEPTH), extreme data: x all 1 (q = 255), w all -1 (q = -127):
    the accumulator -255 * 127 * 65536 still fits int32."""
    K = 65536
    x = np.ones((1, K), np.float32)
    pw = lowbit.pack_weight(-np.ones((1, K), np.float32))
    y = lowbit.linear(x, pw)
    assert_bits_equal(y, ref_linear(x, pw))
    np.testing.assert_allclose(y, [[-K]], rtol=1e-6)


def test_linear_depth_limit(isa):
    """in_features > 65536 (LINEAR_MAX_DEPTH) is refused with ValueError (documented)."""
    pw = lowbit.pack_weight(np.ones((1, 65537), np.float32))
    with pytest.raises(ValueError):
        lowbit.linear(np.ones((1, 65537), np.float32), pw)


@pytest.mark.parametrize("K", [33_025, 33_026, 40_000, 65_536])
def test_linear_deep_k_asymmetric_weight(isa, K):
    """Asymmetric weights can centre to -255, so |acc| can reach 255 * 255 * K: the documented
    limit is K <= 33025 (LINEAR_MAX_DEPTH_ASYMMETRIC), exact up to it, ValueError beyond."""
    x = np.ones((1, K), np.float32)
    w = -np.ones((1, K), np.float32)
    pw = lowbit.pack_weight(w, symmetric=False)
    if K <= lowbit._C.LINEAR_MAX_DEPTH_ASYMMETRIC:
        y = lowbit.linear(x, pw)
        np.testing.assert_allclose(y, x @ w.T, rtol=1e-3)
    else:
        with pytest.raises(ValueError, match="asymmetric"):
            lowbit.linear(x, pw)


# ---- thread count, concurrency, ISA ----------------------------------------------------------
def test_linear_thread_count_invariance(isa, rng):
    w, b, pw = _layer(rng, 256, 512)
    x = _x(rng, (130, 512))  # 17M MACs: split over threads (by rows and columns)
    a = random_int8(rng, (130, 512), np.uint8)
    results, ints = {}, {}
    for n in (1, 2, 3, 7):
        lowbit.set_num_threads(n)
        assert lowbit.get_num_threads() == n
        results[n] = lowbit.linear(x, pw, b)
        ints[n] = lowbit.matmul_integer(a, pw, 3)
    for n in (2, 3, 7):
        assert_bits_equal(results[n], results[1], f"threads={n}")
        np.testing.assert_array_equal(ints[n], ints[1])
    assert_bits_equal(results[1], ref_linear(x, pw, b))


def test_concurrent_python_threads(isa, rng):
    """Two Python threads share one PackedWeight (the GIL is released inside the kernels)."""
    w, b, pw = _layer(rng, 256, 384)
    xs = [_x(rng, (m, 384)) for m in (1, 9, 64, 128)]
    as_ = [random_int8(rng, (m, 384), np.int8) for m in (1, 9, 64, 128)]
    serial_y = [lowbit.linear(x, pw, b) for x in xs]
    serial_c = [lowbit.matmul_integer(a, pw, -3) for a in as_]
    errors = []
    barrier = threading.Barrier(2)

    def run_linear():
        try:
            barrier.wait()
            for _ in range(15):
                for x, ref in zip(xs, serial_y):
                    assert_bits_equal(lowbit.linear(x, pw, b), ref, "concurrent linear")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def run_matmul():
        try:
            barrier.wait()
            for _ in range(15):
                for a, ref in zip(as_, serial_c):
                    np.testing.assert_array_equal(lowbit.matmul_integer(a, pw, -3), ref)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run_linear), threading.Thread(target=run_matmul)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[0]
    c_ref = ref_matmul_integer(as_[2], pw.qtensor().data.T, -3, None)
    np.testing.assert_array_equal(serial_c[2], c_ref)


@pytest.mark.skipif(len(ISAS) < 2, reason="only one ISA path on this CPU")
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_linear_cross_isa_bit_identical(rng, symmetric):
    cases = []
    for M, K, N in ((1, 1000, 129), (7, 63, 200), (25, 257, 47), (100, 128, 64)):
        w, b, pw = _layer(rng, N, K, symmetric=symmetric)
        cases.append((_x(rng, (M, K)), pw, b))
    out = {}
    for name in ISAS:
        with lowbit.use_isa(name):
            out[name] = [lowbit.linear(*c) for c in cases]
    for name in ISAS[1:]:
        for i, (y0, y1) in enumerate(zip(out[ISAS[0]], out[name])):
            assert_bits_equal(y1, y0, f"case {i}: {name} vs {ISAS[0]}")


@pytest.mark.parametrize("seed", range(30))
def test_linear_random_problems(isa, seed):
    rng = np.random.default_rng(2000 + seed)
    M, K, N = int(rng.integers(1, 71)), int(rng.integers(1, 700)), int(rng.integers(1, 260))
    w, b, pw = _layer(rng, N, K, symmetric=bool(seed % 2), with_bias=seed % 3 != 0)
    x = _x(rng, (M, K)) * np.float32(10.0 ** rng.integers(-3, 4))
    x += np.float32(rng.standard_normal() * np.abs(x).mean())  # shifted rows
    assert_bits_equal(lowbit.linear(x, pw, b), ref_linear(x, pw, b), f"M={M} K={K} N={N}")


def test_linear_accepts_float16_and_lists(isa, rng):
    w, b, pw = _layer(rng, 7, 12)
    x16 = rng.standard_normal((3, 12)).astype(np.float16)
    x32 = x16.astype(np.float32)
    assert_bits_equal(lowbit.linear(x16, pw, b), ref_linear(x32, pw, b))
    assert_bits_equal(lowbit.linear(x32.tolist(), pw, b.tolist()), ref_linear(x32, pw, b))


def test_elementwise_thread_count_invariance(isa, rng):
    x = (rng.standard_normal((3, 150_001)) * 5).astype(np.float32)
    acc = rng.integers(-10**6, 10**6, size=(300, 1001)).astype(np.int32)
    outs = []
    for n in (1, 2, 3, 7):
        lowbit.set_num_threads(n)
        outs.append((lowbit.quantize_linear(x, np.float32(0.03), np.int8(-2)),
                     lowbit.quantize_linear(x, np.float32([0.1, 0.2, 0.3]), axis=0),
                     lowbit.dynamic_quantize_linear(x),
                     lowbit.dequantize_linear(acc, np.float32(1e-3)),
                     lowbit.requantize(acc, np.float32(1e-4), np.int8(3))))
    for o in outs[1:]:
        np.testing.assert_array_equal(o[0], outs[0][0])
        np.testing.assert_array_equal(o[1], outs[0][1])
        np.testing.assert_array_equal(o[2][0], outs[0][2][0])
        assert o[2][1] == outs[0][2][1] and o[2][2] == outs[0][2][2]
        assert_bits_equal(o[3], outs[0][3])
        np.testing.assert_array_equal(o[4], outs[0][4])
