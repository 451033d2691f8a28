"""ONNX's per-tensor forms (issue 11, item 6): a scale and a zero point given as a scalar, a 0-d
array or a 1-element 1-D array, in any mix, are per tensor in every primitive. The fixed cases
are ONNX's own node tests (onnx/backend/test/case/node: quantizelinear, dequantizelinear,
matmulinteger, qlinearmatmul), with their inputs and expected outputs copied from there."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import lowbit
from conftest import (F32, assert_bits_equal, assert_int_equal, random_int8, ref_matmul_integer,
                      ref_quantize_linear)


def scale_forms(value):
    """A scale as ONNX's tests and users give it: Python float, NumPy scalar, 0-d, shape (1,)."""
    return {"float": float(value), "np.float32": F32(value), "0-d": np.array(value, F32),
            "(1,)": np.array([value], F32)}


def zero_forms(value, dtype):
    return {"scalar": dtype(value), "0-d": np.array(value, dtype), "(1,)": np.array([value], dtype)}


def _mixes(scale, zero, dtype):
    return list(itertools.product(scale_forms(scale).items(), zero_forms(zero, dtype).items()))


# ---- QuantizeLinear / DequantizeLinear --------------------------------------------------------
def test_quantize_linear_onnx_node_case_in_every_form(isa):
    x = np.array([0, 2, 3, 1000, -254, -1000], F32)          # test_quantizelinear
    expected = np.array([128, 129, 130, 255, 1, 0], np.uint8)
    for (sname, s), (zname, z) in _mixes(2, 128, np.uint8):
        got = lowbit.quantize_linear(x, s, z)
        assert_int_equal(got, expected, f"scale {sname}, zero point {zname}")


@pytest.mark.parametrize("qtype", ["int8", "uint8"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), ()])
def test_quantize_linear_per_tensor_forms_any_rank(isa, rng, qtype, shape):
    x = (rng.standard_normal(shape) * 4).astype(F32)
    dtype = np.int8 if qtype == "int8" else np.uint8
    zero = -3 if qtype == "int8" else 100
    expected = ref_quantize_linear(x, F32(0.05), zero, qtype)
    for axis in (0, 1, -1):   # axis is ignored for a per-tensor scale, as in ONNX
        for (sname, s), (zname, z) in _mixes(0.05, zero, dtype):
            got = lowbit.quantize_linear(x, s, z, axis=axis)
            assert_int_equal(got, expected, f"scale {sname}, zero point {zname}, axis {axis}")
        got = lowbit.quantize_linear(x, np.array([0.05], F32), axis=axis, dtype=qtype)
        assert_int_equal(got, ref_quantize_linear(x, F32(0.05), 0, qtype))


def test_dequantize_linear_onnx_node_case_in_every_form(isa):
    q = np.array([0, 3, 128, 255], np.uint8)                  # test_dequantizelinear
    expected = np.array([-256, -250, 0, 254], F32)
    for (sname, s), (zname, z) in _mixes(2, 128, np.uint8):
        assert_bits_equal(lowbit.dequantize_linear(q, s, z), expected,
                          f"scale {sname}, zero point {zname}")


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_dequantize_linear_per_tensor_forms_2d(isa, rng, dtype):
    q = random_int8(rng, (4, 6), dtype)
    zero = 5
    expected = (q.astype(np.int32) - zero).astype(F32) * F32(0.25)
    for (sname, s), (zname, z) in _mixes(0.25, zero, dtype):
        assert_bits_equal(lowbit.dequantize_linear(q, s, z), expected,
                          f"scale {sname}, zero point {zname}")
    assert_bits_equal(lowbit.dequantize_linear(q.astype(np.int32), np.array([0.25], F32),
                                               np.array([0], np.int32)),
                      q.astype(F32) * F32(0.25))


def test_per_axis_and_blocked_keep_their_shapes(rng):
    """Only one-element scales collapse: a per-axis scale of an axis of length 1 means the same,
    and blocked scales keep the blocked shape rule."""
    x = rng.standard_normal((3, 1)).astype(F32)
    per_axis = lowbit.quantize_linear(x, np.array([0.1], F32), np.array([3], np.uint8), axis=1)
    assert_int_equal(per_axis, ref_quantize_linear(x, F32(0.1), 3, "uint8"))
    x = rng.standard_normal((2, 4)).astype(F32)
    s = np.array([[0.1], [0.2]], F32)
    blocked = lowbit.quantize_linear(x, s, np.array([[1], [2]], np.uint8), axis=1, block_size=4)
    assert_int_equal(blocked, ref_quantize_linear(x, s, np.array([[1], [2]]), "uint8"))
    with pytest.raises(ValueError, match="zero_point shape"):
        lowbit.quantize_linear(x, s, np.uint8(1), axis=1, block_size=4)
    with pytest.raises(ValueError, match="per-axis scale"):
        lowbit.quantize_linear(x, np.array([0.1, 0.2], F32), axis=1)


# ---- MatMulInteger ------------------------------------------------------------------------------
def test_matmul_integer_onnx_node_case_in_every_form(isa):
    a = np.array([[11, 7, 3], [10, 6, 2], [9, 5, 1], [8, 4, 0]], np.uint8)   # test_matmulinteger
    b = np.array([[1, 4], [2, 5], [3, 6]], np.uint8)
    expected = np.array([[-38, -83], [-44, -98], [-50, -113], [-56, -128]], np.int32)
    for (an, za), (bn, zb) in itertools.product(zero_forms(12, np.uint8).items(),
                                                zero_forms(0, np.uint8).items()):
        assert_int_equal(lowbit.matmul_integer(a, b, za, zb), expected, f"{an}, {bn}")


@pytest.mark.parametrize("a_dtype,b_dtype", [(np.uint8, np.int8), (np.int8, np.uint8)])
@pytest.mark.parametrize("a_shape,b_shape", [((5, 9), (9, 3)), ((2, 5, 9), (9, 3)),
                                             ((2, 5, 9), (2, 9, 3)), ((9,), (9, 3))])
def test_matmul_integer_per_tensor_zero_point_forms(isa, rng, a_dtype, b_dtype, a_shape, b_shape):
    a, b = random_int8(rng, a_shape, a_dtype), random_int8(rng, b_shape, b_dtype)
    expected = ref_matmul_integer(a, b, 7, -3 if b_dtype == np.int8 else 3)
    zb_value = -3 if b_dtype == np.int8 else 3
    for (an, za), (bn, zb) in itertools.product(zero_forms(7, a_dtype).items(),
                                                zero_forms(zb_value, b_dtype).items()):
        assert_int_equal(lowbit.matmul_integer(a, b, za, zb), expected, f"{an}, {bn}")
    if b.ndim == 2:   # B packed as a weight (N, K): only A's zero point is given
        qt = lowbit.QTensor(np.ascontiguousarray(b.T), np.float32(1), np.array(0, b_dtype),
                            np.dtype(b_dtype).name)
        pw = lowbit.pack_weight(qt)
        for an, za in zero_forms(7, a_dtype).items():
            assert_int_equal(lowbit.matmul_integer(a, pw, za), ref_matmul_integer(a, b, 7, 0),
                             f"packed, {an}")


# ---- QLinearMatMul ------------------------------------------------------------------------------
QLMM_A = [[208, 236, 0, 238], [3, 214, 255, 29]]
QLMM_B = [[152, 51, 244], [60, 26, 255], [0, 127, 246], [127, 254, 247]]
QLMM_Y = {"uint8": [[168, 115, 255], [1, 66, 151]], "int8": [[41, -12, -9], [1, -75, -128]]}


@pytest.mark.parametrize("qtype", ["uint8", "int8"])
@pytest.mark.parametrize("batched", [False, True])
def test_qlinear_matmul_onnx_node_cases_in_every_form(isa, qtype, batched):
    """test_qlinearmatmul_2D / _3D, uint8 and int8, float32 scales: ONNX gives every scale and
    zero point as a 1-element array; the scalar forms, in any mix, give the same bits."""
    dtype = np.dtype(qtype).type
    shift = 127 if qtype == "int8" else 0
    a = (np.array(QLMM_A) - shift).astype(dtype)
    b = (np.array(QLMM_B) - shift).astype(dtype)
    y = np.array(QLMM_Y[qtype]).astype(dtype)
    if batched:
        a, b, y = np.stack([a, a]), np.stack([b, b]), np.stack([y, y])
    forms = itertools.product(scale_forms(0.0066).items(), zero_forms(113 - shift, dtype).items(),
                              scale_forms(0.00705).items(), zero_forms(114 - shift, dtype).items(),
                              scale_forms(0.0107).items(), zero_forms(118 - shift, dtype).items())
    for n, ((_, sa), (_, za), (_, sb), (_, zb), (_, sy), (_, zy)) in enumerate(forms):
        got = lowbit.qlinear_matmul(a, sa, za, b, sb, zb, sy, zy)
        assert_int_equal(got, y, f"form combination {n}")


def test_requantize_per_tensor_forms(isa, rng):
    acc = rng.integers(-5000, 5000, (4, 6)).astype(np.int32)
    expected = lowbit.requantize(acc, F32(0.01), np.int8(3))
    for (sname, m), (zname, z) in _mixes(0.01, 3, np.int8):
        assert_int_equal(lowbit.requantize(acc, m, z), expected, f"{sname}, {zname}")
