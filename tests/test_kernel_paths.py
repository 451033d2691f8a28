"""Issue 11 at the Python surface: the AMX path (and its software model amx_emu) gives the bits
of every other path, a plain B gives the bits of a packed one, per-row ranges follow NumPy's,
and the dispatch rows say why a path is missing."""
from __future__ import annotations

import numpy as np
import pytest

import lowbit
from conftest import ISAS, assert_bits_equal, assert_int_equal, random_int8, ref_matmul_integer

AMX_PATHS = [n for n in ("amx", "amx_emu") if n in ISAS]


@pytest.mark.parametrize("a_dt", [np.uint8, np.int8], ids=["a_u8", "a_s8"])
@pytest.mark.parametrize("b_dt", [np.uint8, np.int8], ids=["b_u8", "b_s8"])
@pytest.mark.parametrize("zp", ["none", "scalar", "per_row_col"])
@pytest.mark.parametrize("M", [1, 7, 8, 16, 33, 64, 65, 130])
def test_plain_b_gives_the_packed_bits(isa, a_dt, b_dt, zp, M):
    rng = np.random.default_rng([M, len(zp), np.dtype(a_dt).num, np.dtype(b_dt).num])
    K, N = 131, 200
    a, b = random_int8(rng, (M, K), a_dt), random_int8(rng, (K, N), b_dt)
    ia, ib = np.iinfo(a_dt), np.iinfo(b_dt)
    za = zb = None
    if zp == "scalar":
        za, zb = a_dt(rng.integers(ia.min, ia.max + 1)), b_dt(rng.integers(ib.min, ib.max + 1))
    elif zp == "per_row_col":
        za, zb = random_int8(rng, (M,), a_dt), random_int8(rng, (N,), b_dt)
    want = ref_matmul_integer(a, b, za, zb)
    plain = lowbit.matmul_integer(a, b, za, zb)
    assert_int_equal(plain, want, f"plain B on {isa}")
    # A B that is a view (rows strided, columns reversed) is the same operand.
    b_view = np.ascontiguousarray(b[:, ::-1])[:, ::-1]
    assert_int_equal(lowbit.matmul_integer(a, b_view, za, zb), want, "strided B view")


# The software tile model computes every product in C++ (slow under ASan): small shapes for it.
SMALL = [(16, 64, 64), (40, 260, 129), (33, 130, 70)]
LARGE = [(64, 4096, 96), (100, 200, 129), (256, 384, 1536)]


@pytest.mark.parametrize("shape", SMALL + LARGE)
def test_amx_paths_give_the_bits_of_avx512vnni(shape):
    paths = [p for p in AMX_PATHS if p == "amx" or shape in SMALL]
    if not paths or "avx512vnni" not in ISAS:
        pytest.skip("no AMX path for this shape on this machine (amx_emu needs AVX-512)")
    M, K, N = shape
    rng = np.random.default_rng(list(shape))
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    packs = {"int8": lowbit.pack_weight(w), "int8_asym": lowbit.pack_weight(w, symmetric=False),
             "w4a8_g32": lowbit.pack_weight(w, bits=4, group_size=32),
             "w4a8_g128_asym": lowbit.pack_weight(w, bits=4, group_size=128, symmetric=False)}
    for name, pw in packs.items():
        with lowbit.use_isa("avx512vnni"):
            want = lowbit.linear(x, pw, bias)
        for path in paths:
            with lowbit.use_isa(path):
                for threads in (1, 2, 3):
                    lowbit.set_num_threads(threads)
                    assert_bits_equal(lowbit.linear(x, pw, bias), want, f"{name} on {path}, {threads} threads")


def test_row_ranges_follow_numpy():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((37, 131)).astype(np.float32)
    w[3] = 0.0
    w[4] = -0.0
    w[5] = np.abs(w[5])   # no negative value: the range still includes 0
    w[6] = -np.abs(w[6])
    lo, hi = lowbit._C.row_ranges(w, "weight")
    np.testing.assert_array_equal(lo, w.min(axis=1, initial=0))
    np.testing.assert_array_equal(hi, w.max(axis=1, initial=0))
    qt = lowbit.quantize(w, "int8", axis=0)
    scale = np.maximum(np.abs(w.min(axis=1, initial=0)), w.max(axis=1, initial=0)) / np.float32(127)
    np.testing.assert_array_equal(np.asarray(qt.scale)[[0, 1, 2, 5, 6]], scale[[0, 1, 2, 5, 6]])
    for bad in (np.nan, np.inf, -np.inf):
        w2 = w.copy()
        w2[20, 7] = bad
        with pytest.raises(ValueError, match="weight holds NaN or Inf"):
            lowbit.pack_weight(w2)
        np.testing.assert_array_equal(w2[20, 7], np.float32(bad))  # the input is not modified


def test_dispatch_rows_in_cpu_info():
    info = lowbit.cpu_info()
    names = info["available"] + list(info["unavailable"])
    assert {"scalar", "avx2", "avxvnni", "avx512vnni", "amx", "amx_emu", "neon", "neondot"} <= set(names)
    if "amx" in info["available"]:
        assert info["isa"] == "amx"          # preferred when present
        assert {"amx_tile", "amx_int8"} <= set(info["features"])
    assert "amx_emu" not in (info["isa"],)   # test-only: never the default
