"""Arrays that went through pickle (copy.deepcopy, multiprocessing) carry an equal but distinct
dtype object; every entry point must accept them. PackedWeight pickles by re-packing."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import lowbit
from conftest import F32, assert_bits_equal, assert_int_equal


def _round_trip(a):
    b = pickle.loads(pickle.dumps(a))
    assert b.dtype == a.dtype and b.dtype is not np.dtype(a.dtype.type)   # the case under test
    return b


def test_unpickled_arrays_are_accepted(rng):
    x = rng.standard_normal((5, 64)).astype(F32)
    w = rng.standard_normal((24, 64)).astype(F32)
    b = rng.standard_normal(24).astype(F32)
    xp, wp, bp = _round_trip(x), _round_trip(w), _round_trip(b)
    pw = lowbit.pack_weight(w)
    assert_bits_equal(lowbit.linear(xp, pw, bp), lowbit.linear(x, pw, b))
    assert_bits_equal(lowbit.linear(x, lowbit.pack_weight(wp)), lowbit.linear(x, pw))
    q = lowbit.quantize_linear(x, 0.05, np.uint8(128))
    assert_int_equal(lowbit.quantize_linear(xp, 0.05, np.uint8(128)), q)
    assert_bits_equal(lowbit.dequantize_linear(_round_trip(q), 0.05, np.uint8(128)),
                      lowbit.dequantize_linear(q, 0.05, np.uint8(128)))
    a = rng.integers(0, 256, (6, 64)).astype(np.uint8)
    bm = rng.integers(-128, 128, (64, 8)).astype(np.int8)
    assert_int_equal(lowbit.matmul_integer(_round_trip(a), _round_trip(bm)),
                     lowbit.matmul_integer(a, bm))
    pw4 = lowbit.pack_weight(wp, bits=4, group_size=16)
    assert_bits_equal(lowbit.linear(xp, pw4), lowbit.linear(x, lowbit.pack_weight(w, bits=4,
                                                                                   group_size=16)))


@pytest.mark.parametrize("kw", [{}, {"symmetric": False}, {"bits": 4, "group_size": 32},
                                {"bits": 4, "group_size": 20, "symmetric": False,
                                 "mode": "weight_only"}])
def test_packed_weight_pickles_and_deepcopies(rng, kw):
    w = rng.standard_normal((70, 100)).astype(F32)
    x = rng.standard_normal((3, 100)).astype(F32)
    pw = lowbit.pack_weight(w, **kw)
    for clone in (pickle.loads(pickle.dumps(pw)), copy.deepcopy(pw)):
        assert repr(clone) == repr(pw)
        assert_bits_equal(lowbit.linear(x, clone), lowbit.linear(x, pw))


def test_extension_compares_dtypes_by_value(rng):
    """The C++ bindings themselves (not only the Python layer) take an equal but distinct dtype
    object, and refuse a byte-swapped one with a TypeError."""
    from lowbit import _C
    x = _round_trip(rng.standard_normal((3, 32)).astype(F32))
    q = _C.dynamic_quantize_linear(x)
    want = _C.dynamic_quantize_linear(x.view(np.float32))   # the canonical dtype object
    assert_int_equal(q[0], want[0])
    swapped = x.astype(x.dtype.newbyteorder())
    with pytest.raises(TypeError, match="float32"):
        _C.dynamic_quantize_linear(swapped)
