"""Issue 15, 16-bit formats: int16 / uint16 quantize_linear and dequantize_linear against ONNX's
opset-21 reference implementation (per tensor, per axis, blocked) and its own node test cases,
saturation and tie edges written out by hand, bad input, lowbit.quantize / QTensor in 16 bits;
then 16-bit floats: float16 and bfloat16 input (widened exactly) and output (rounded once from
the float32 result, to nearest even), checked against ml_dtypes' own conversions."""
from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest

import lowbit
from conftest import F32, QRANGE, STORAGE, assert_bits_equal, assert_int_equal, ref_quantize_linear
from lowbit._core.halfs import bfloat16_bits as _round_to_bfloat16

QTYPES16 = ["int16", "uint16"]
OPSET = 21


# ---- the ONNX reference -------------------------------------------------------------------------
def onnx_run(op, inputs, **attrs):
    """One opset-21 node of `op` run by onnx.reference.ReferenceEvaluator on `inputs` (NumPy
    arrays, None for an absent optional input); returns its output."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = ["x", "scale", "zero_point"][:len(inputs)]
    given = [(n, a) for n, a in zip(names, inputs) if a is not None]
    node = helper.make_node(op, [n if a is not None else "" for n, a in zip(names, inputs)],
                            ["y"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in given],
        [helper.make_tensor_value_info("y", onnx.TensorProto.UNDEFINED, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return ReferenceEvaluator(model).run(None, {n: a for n, a in given})[0]


def _scales(rng, shape):
    """Positive float32 scales over several octaves; a third of them powers of two (then x /
    scale is exact and the data's .5 ties stay ties)."""
    s = rng.uniform(0.5, 2.0, size=shape) * 10.0 ** rng.integers(-3, 2, size=shape)
    pow2 = 2.0 ** rng.integers(-6, 3, size=shape)
    return np.where(rng.random(size=shape) < 1 / 3, pow2, s).astype(F32)


def _zeros(rng, qtype, shape):
    lo, hi = QRANGE[qtype]
    return rng.integers(lo, hi + 1, size=shape).astype(STORAGE[qtype])


def _data(rng, shape, scale_full, qtype):
    """x = t * scale, t across the type's range and 3000 beyond each end (saturation), half of
    them exact halves k + 0.5 (ties), scale broadcast to x's shape."""
    lo, hi = QRANGE[qtype]
    t = rng.uniform(lo - 3000, hi + 3000, size=shape)
    t = np.where(rng.random(size=shape) < 0.5, np.floor(t) + 0.5, t)
    return (t * scale_full.astype(np.float64)).astype(F32)


def _blocked_shape(shape, axis, block):
    s = list(shape)
    s[axis] = -(-shape[axis] // block)
    return tuple(s)


def _expand_blocked(p, shape, axis, block):
    return np.repeat(p, block, axis=axis).take(range(shape[axis]), axis=axis)


# (shape, axis, block) of the three scale forms; blocks that do and do not divide the axis, and
# lengths that leave vector tails (AVX-512: 16 lanes, AVX2: 8, NEON: 4).
FORMS = [((0,), 0, 0), ((1,), 0, 0), ((37,), 0, 0), ((1000,), 0, 0), ((3, 5, 17), 1, 0),
         ("axis", (4, 33), 0), ("axis", (4, 33), 1), ("axis", (3, 5, 7), -1), ("axis", (2, 9, 3), 1),
         ("block", (4, 40), 1, 8), ("block", (4, 41), 1, 16), ("block", (6, 5, 3), 0, 4),
         ("block", (3, 19, 2), 1, 5), ("block", (2, 70), -1, 128)]


def _case(rng, form, qtype):
    """x, scale, zero point and the axis / block_size attributes of one form."""
    if form[0] == "axis":
        _, shape, axis = form
        n = shape[axis]
        scale, zero, block = _scales(rng, (n,)), _zeros(rng, qtype, (n,)), 0
        view = [1] * len(shape)
        view[axis] = n
        full = np.broadcast_to(scale.reshape(view), shape)
    elif form[0] == "block":
        _, shape, axis, block = form
        pshape = _blocked_shape(shape, axis % len(shape), block)
        scale, zero = _scales(rng, pshape), _zeros(rng, qtype, pshape)
        full = _expand_blocked(scale, shape, axis, block)
    else:
        shape, axis, block = form
        scale, zero = _scales(rng, ()), _zeros(rng, qtype, ())
        full = np.broadcast_to(scale, shape)
    return _data(rng, shape, full, qtype), scale, zero, axis, block


def _attrs(axis, block):
    return {"axis": axis, "block_size": block} if block else {"axis": axis}


@pytest.mark.parametrize("qtype", QTYPES16)
@pytest.mark.parametrize("form", FORMS, ids=str)
def test_quantize_linear_matches_onnx_reference(isa, rng, qtype, form):
    x, scale, zero, axis, block = _case(rng, form, qtype)
    want = onnx_run("QuantizeLinear", [x, scale, zero], **_attrs(axis, block))
    assert want.dtype == STORAGE[qtype]
    got = lowbit.quantize_linear(x, scale, zero, axis=axis, block_size=block)
    assert_int_equal(got, want, f"{qtype} {form}")
    # dtype= instead of the zero point's type, and no zero point at all (ONNX: output_dtype)
    assert_int_equal(lowbit.quantize_linear(x, scale, zero.astype(np.int64), axis=axis,
                                            block_size=block, dtype=qtype), want)
    code = 5 if qtype == "int16" else 4   # TensorProto.INT16 / UINT16
    want0 = onnx_run("QuantizeLinear", [x, scale], output_dtype=code, **_attrs(axis, block))
    assert_int_equal(lowbit.quantize_linear(x, scale, axis=axis, block_size=block, dtype=qtype),
                     want0, f"{qtype} {form} no zero point")


@pytest.mark.parametrize("qtype", QTYPES16)
@pytest.mark.parametrize("form", FORMS, ids=str)
def test_dequantize_linear_matches_onnx_reference(isa, rng, qtype, form):
    x, scale, zero, axis, block = _case(rng, form, qtype)
    lo, hi = QRANGE[qtype]
    q = rng.integers(lo, hi + 1, size=x.shape).astype(STORAGE[qtype])
    want = onnx_run("DequantizeLinear", [q, scale, zero], **_attrs(axis, block))
    assert_bits_equal(lowbit.dequantize_linear(q, scale, zero, axis=axis, block_size=block),
                      want, f"{qtype} {form}")
    want0 = onnx_run("DequantizeLinear", [q, scale], **_attrs(axis, block))
    assert_bits_equal(lowbit.dequantize_linear(q, scale, axis=axis, block_size=block), want0)


def _onnx_node_cases(monkeypatch, module, cls, wanted):
    """The cases ONNX's node tests export (onnx/backend/test/case/node/<module>.py, the inputs
    and outputs of test_<op>_int16 etc.) whose `wanted(node, inputs, outputs)` holds: each
    export_* run with `expect` capturing instead of writing .pb files (the wheel ships the
    generators, not the generated data)."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    mod = importlib.import_module(f"onnx.backend.test.case.node.{module}")
    cases = {}

    def capture(node, inputs, outputs, name, **kwargs):
        outs = [numpy_helper.to_array(o) if isinstance(o, onnx.TensorProto) else np.asarray(o)
                for o in outputs]
        ins = [np.asarray(i) for i in inputs]
        if wanted(node, ins, outs):
            cases[name] = (node, ins, outs)

    monkeypatch.setattr(mod, "expect", capture)
    for name, fn in inspect.getmembers(getattr(mod, cls), inspect.isfunction):
        if name.startswith("export"):
            try:
                fn()
            except Exception:   # noqa: BLE001 - a case for types lowbit has nothing to do with
                continue
    return cases


def _attributes(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def test_onnx_quantizelinear_node_cases(isa, monkeypatch):
    cases = _onnx_node_cases(monkeypatch, "quantizelinear", "QuantizeLinear",
                             lambda node, ins, outs: outs[0].dtype in (np.int16, np.uint16))
    assert {"test_quantizelinear_int16", "test_quantizelinear_uint16",
            "test_quantizelinear_blocked_symmetric"} <= set(cases), sorted(cases)
    for name, (node, ins, outs) in cases.items():
        attrs = _attributes(node)
        x, scale = ins[0], ins[1]
        zero = ins[2] if len(ins) > 2 else None
        dtype = outs[0].dtype.name if zero is None else None   # else the zero point's type
        got = lowbit.quantize_linear(x, scale, zero, axis=attrs.get("axis", 1),
                                     block_size=attrs.get("block_size", 0), dtype=dtype)
        assert_int_equal(got, outs[0], name)


def test_onnx_dequantizelinear_node_cases(isa, monkeypatch):
    cases = _onnx_node_cases(monkeypatch, "dequantizelinear", "DequantizeLinear",
                             lambda node, ins, outs: ins[0].dtype in (np.int16, np.uint16))
    assert {"test_dequantizelinear_int16", "test_dequantizelinear_uint16"} <= set(cases)
    for name, (node, ins, outs) in cases.items():
        attrs = _attributes(node)
        got = lowbit.dequantize_linear(*ins, axis=attrs.get("axis", 1),
                                       block_size=attrs.get("block_size", 0))
        assert_bits_equal(got, outs[0], name)


# ---- edges written out ----------------------------------------------------------------------------
def test_saturation_and_ties_int16(isa):
    # x / 1 exactly: ties go to the even neighbour, then the zero point, then the clamp
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 32766.5, 32767.5, 32768.0, -32767.5,
                  -32768.5, -32769.5, 1e30, -1e30, 65535.0], F32)
    want = [0, 2, 2, 0, -2, -2, 32766, 32767, 32767, -32768, -32768, -32768, 32767, -32768,
            32767]
    assert_int_equal(lowbit.quantize_linear(x, 1.0, np.int16(0)), np.array(want, np.int16))
    # with a zero point: round first, then add (1.5 -> 2, + 100)
    rounded = np.array([0, 2, 2, 0, -2, -2, 32766, 32768, 32768, -32768, -32768, -32770,
                        10 ** 9, -10 ** 9, 65535])
    want_z = np.clip(rounded + 100, -32768, 32767)
    assert_int_equal(lowbit.quantize_linear(x, 1.0, np.int16(100)), want_z.astype(np.int16))


def test_saturation_and_ties_uint16(isa):
    x = np.array([-0.5, -1.0, 0.5, 1.5, 65534.5, 65535.5, 65536.0, 1e30, -1e30, 32767.5], F32)
    want = [0, 0, 0, 2, 65534, 65535, 65535, 65535, 0, 32768]
    assert_int_equal(lowbit.quantize_linear(x, 1.0, np.uint16(0)), np.array(want, np.uint16))
    # the zero point moves the window: 32767.5 -> 32768 + 32768 = 65536 saturates
    rounded = np.array([0, -1, 0, 2, 65534, 65536, 65536, 10 ** 9, -10 ** 9, 32768])
    want_z = np.clip(rounded + 32768, 0, 65535)
    assert_int_equal(lowbit.quantize_linear(x, 1.0, np.uint16(32768)), want_z.astype(np.uint16))


def test_dequantize_16bit_extremes(isa):
    q = np.array([-32768, -1, 0, 1, 32767], np.int16)
    assert_bits_equal(lowbit.dequantize_linear(q, 0.5, np.int16(32767)),
                      np.array([-32767.5, -16384, -16383.5, -16383, 0], F32))
    assert_bits_equal(lowbit.dequantize_linear(q, 0.5, np.int16(-32768)),
                      np.array([0, 16383.5, 16384, 16384.5, 32767.5], F32))
    u = np.array([0, 1, 32768, 65535], np.uint16)
    assert_bits_equal(lowbit.dequantize_linear(u, 2.0, np.uint16(65535)),
                      np.array([-131070, -131068, -65534, 0], F32))
    # 0-d: a NumPy scalar
    assert lowbit.dequantize_linear(np.uint16(7), 1.0).shape == ()


def test_16bit_and_8bit_share_the_kernels_formula(isa, rng):
    """Values that fit both types quantize to the same numbers in 8 and 16 bits: one formula,
    two storage widths."""
    x = (rng.integers(-100, 100, 500) + rng.choice([0.0, 0.5, 0.25], 500)).astype(F32)
    q8 = lowbit.quantize_linear(x, 1.0, np.int8(3))
    q16 = lowbit.quantize_linear(x, 1.0, np.int16(3))
    assert q16.dtype == np.int16
    assert_int_equal(q16, q8.astype(np.int16))


# ---- bad input --------------------------------------------------------------------------------
def test_bad_zero_points_and_dtypes():
    x = np.ones(4, F32)
    with pytest.raises(ValueError, match=r"zero_point must lie in \[-32768, 32767\]"):
        lowbit.quantize_linear(x, 1.0, 40000, dtype="int16")
    with pytest.raises(ValueError, match=r"zero_point must lie in \[0, 65535\]"):
        lowbit.quantize_linear(x, 1.0, np.int16(-5), dtype="uint16")
    with pytest.raises(ValueError, match=r"zero_point must lie in \[0, 65535\]"):
        lowbit.quantize_linear(x, 1.0, np.array([70000]), dtype=np.uint16)
    with pytest.raises(TypeError, match="zero_point must hold integers"):
        lowbit.quantize_linear(x, 1.0, np.float32(1.5), dtype="int16")
    for wide in (np.int32(1), np.uint32(1), np.array([1], np.int32)):
        with pytest.raises(TypeError, match="zero_point has dtype u?int32.*no u?int32 output"):
            lowbit.quantize_linear(x, 1.0, wide)
    for bad in ("int12", "float16", "int32", "bfloat16", "int16x"):
        with pytest.raises(ValueError, match="dtype"):
            lowbit.quantize_linear(x, 1.0, dtype=bad)
    for bad in (3.5, object()):
        with pytest.raises(TypeError, match="dtype"):
            lowbit.quantize_linear(x, 1.0, dtype=bad)
    for special in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="x holds NaN or Inf"):
            lowbit.quantize_linear(np.array([1, special, 2], F32), 1.0, np.int16(0))
        with pytest.raises(ValueError, match="scale must be finite"):
            lowbit.quantize_linear(x, special, np.int16(0))
    # dequantize_linear
    q = np.ones(4, np.int16)
    with pytest.raises(ValueError, match=r"zero_point must lie in \[-32768, 32767\]"):
        lowbit.dequantize_linear(q, 1.0, 32768)
    with pytest.raises(ValueError, match=r"zero_point must lie in \[0, 65535\]"):
        lowbit.dequantize_linear(q.astype(np.uint16), 1.0, -1)
    with pytest.raises(TypeError, match="q must have dtype"):
        lowbit.dequantize_linear(np.ones(4, np.uint32), 1.0)
    with pytest.raises(TypeError, match="q must have dtype"):
        lowbit.dequantize_linear(np.ones(4, np.int64), 1.0)
    for bad in ("float64", "int16", np.int16, np.float64):
        with pytest.raises(ValueError, match="dtype="):
            lowbit.dequantize_linear(q, 1.0, dtype=bad)
    for bad in ("bogus", 3.5):
        with pytest.raises(TypeError, match="dtype must be"):
            lowbit.dequantize_linear(q, 1.0, dtype=bad)


def test_requantize_and_qlinear_matmul_stay_eight_bit():
    acc = np.arange(6, dtype=np.int32).reshape(2, 3)
    with pytest.raises(ValueError, match="unsupported quantized dtype 'int16'"):
        lowbit.requantize(acc, 0.5, dtype="int16")
    with pytest.raises(TypeError, match="zero_point has dtype uint16.*requantize has no uint16"):
        lowbit.requantize(acc, 0.5, np.uint16(1))
    a, b = np.ones((2, 4), np.uint8), np.ones((4, 3), np.int8)
    with pytest.raises(TypeError, match="y_zero_point has dtype int16"):
        lowbit.qlinear_matmul(a, 0.1, np.uint8(0), b, 0.1, np.int8(0), 0.2, np.int16(0))


def test_16bit_qtensors_are_refused_past_the_primitives(rng):
    w = rng.standard_normal((8, 16)).astype(F32)
    for name in QTYPES16:
        qt = lowbit.quantize(w, name, axis=0)
        for bits in (8, 4):
            with pytest.raises(ValueError, match=name):
                lowbit.pack_weight(qt, bits=bits)
        with pytest.raises(ValueError, match=name):
            lowbit.nn.QuantizedConv2d(lowbit.quantize(w.reshape(8, 16, 1, 1), name, axis=0))
        with pytest.raises(ValueError, match="unsupported quantized dtype"):
            lowbit.observers.MinMaxObserver(dtype=name)


# ---- lowbit.quantize / QTensor --------------------------------------------------------------
def _rule(lo, hi, qtype, symmetric):
    """The range -> (scale, zero point) rule of docs/numeric_contract.md in float32, for the
    16-bit types: symmetric max|x| / 32767 around 0 / 32768, asymmetric over 65535 levels."""
    qmin, qmax = QRANGE[qtype]
    lo, hi = np.minimum(lo, F32(0)), np.maximum(hi, F32(0))
    if symmetric:
        scale = (np.maximum(np.abs(lo), np.abs(hi)) / F32(32767)).astype(F32)
        zero = np.full(scale.shape, 0 if qmin < 0 else 32768)
    else:
        scale = ((hi - lo) / F32(65535)).astype(F32)
        safe = np.where(scale == 0, F32(1), scale)
        zero = np.clip(np.rint(F32(qmin) - lo / safe), qmin, qmax)
    return np.where(scale == 0, F32(1), scale).astype(F32), zero.astype(STORAGE[qtype])


@pytest.mark.parametrize("qtype", QTYPES16)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("how", ["tensor", "axis0", "axis1", "rows", "group"])
def test_quantize_qtensor_16bit(isa, rng, qtype, symmetric, how):
    x = (rng.standard_normal((6, 40)) * rng.uniform(0.1, 10, (6, 1)) + 0.7).astype(F32)
    x[2] = 0   # an all-zero channel: scale 1
    if how == "tensor":
        qt = lowbit.quantize(x, qtype, symmetric=symmetric)
        scale, zero = _rule(x.min(), x.max(), qtype, symmetric)
        full_s, full_z = scale, zero
    elif how in ("axis0", "rows"):   # "rows": the C++ row-range pass of a 2-D axis-0 weight
        qt = lowbit.quantize(x if how == "rows" else x[None], qtype, symmetric=symmetric,
                             axis=0 if how == "rows" else 1)
        scale, zero = _rule(x.min(axis=1), x.max(axis=1), qtype, symmetric)
        full_s, full_z = scale[:, None], zero[:, None]
        if how == "axis0":
            full_s, full_z = full_s[None], full_z[None]
    elif how == "axis1":
        qt = lowbit.quantize(x, qtype, symmetric=symmetric, axis=1)
        scale, zero = _rule(x.min(axis=0), x.max(axis=0), qtype, symmetric)
        full_s, full_z = scale[None], zero[None]
    else:
        qt = lowbit.quantize(x, qtype, symmetric=symmetric, group_size=16)   # 16 + 16 + 8
        g = [x[:, i:i + 16] for i in range(0, 40, 16)]
        scale, zero = _rule(np.stack([b.min(axis=1) for b in g], 1),
                            np.stack([b.max(axis=1) for b in g], 1), qtype, symmetric)
        full_s = _expand_blocked(scale, x.shape, 1, 16)
        full_z = _expand_blocked(zero, x.shape, 1, 16)
    assert qt.dtype == qtype and qt.data.dtype == STORAGE[qtype]
    assert qt.zero_point.dtype == STORAGE[qtype]
    assert_bits_equal(qt.scale, scale)
    assert_int_equal(qt.zero_point, zero)
    xs = x if how != "axis0" else x[None]
    assert_int_equal(qt.data, ref_quantize_linear(xs, full_s, full_z.astype(np.int64), qtype))
    want = ((qt.data.astype(np.int64) - full_z.astype(np.int64)).astype(F32) * full_s)
    assert_bits_equal(qt.dequantize(), want.astype(F32))
    if symmetric:
        assert qt.symmetric
    assert qt.nbytes == qt.data.size * 2 + qt.scale.nbytes + (0 if qt.symmetric
                                                               else qt.zero_point.size * 2)
    # within half a step everywhere (and a little float32 rounding)
    assert np.all(np.abs(qt.dequantize() - xs) <= np.broadcast_to(full_s, xs.shape) * 0.51)


def test_quantize_16bit_much_finer_than_8bit(rng):
    x = rng.standard_normal(4096).astype(F32)
    e8 = np.abs(lowbit.quantize(x, "int8").dequantize() - x).max()
    e16 = np.abs(lowbit.quantize(x, "int16").dequantize() - x).max()
    assert e16 < e8 / 200   # 32767 / 127 = 258 times finer steps


# ---- 16-bit float input ---------------------------------------------------------------------
def test_float16_input_widened_exactly(isa, rng):
    x = (rng.standard_normal(300) * 3000).astype(np.float16)
    s = F32(0.37)
    want = onnx_run("QuantizeLinear", [x.astype(F32), s, np.int16(-7)])
    assert_int_equal(lowbit.quantize_linear(x, s, np.int16(-7)), want)
    # a float16 scale is widened too: the division stays float32
    s16 = np.float16(0.37)
    assert_int_equal(lowbit.quantize_linear(x, s16, np.int16(-7)),
                     ref_quantize_linear(x.astype(F32), F32(s16), -7, "int16"))


def _all_bfloat16(ml_dtypes):
    """Every bfloat16 bit pattern, NaNs included."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(ml_dtypes.bfloat16)


def test_bfloat16_input_widened_exactly(isa, rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from lowbit._core.checks import float_array
    from lowbit._core.halfs import widen_bfloat16

    every = _all_bfloat16(ml_dtypes)
    wide = widen_bfloat16(every)
    theirs = every.astype(F32)
    assert wide.dtype == F32
    nan = np.isnan(theirs)
    assert np.array_equal(np.isnan(wide), nan)
    np.testing.assert_array_equal(wide.view(np.uint32)[~nan], theirs.view(np.uint32)[~nan])
    np.testing.assert_array_equal(wide.view(np.uint32), np.arange(1 << 16, dtype=np.uint32) << 16)
    # strided, transposed and 0-d arrays widen by value
    m = every[:4096].reshape(64, 64)
    np.testing.assert_array_equal(float_array(m.T[::2], "x"), m.T[::2].astype(F32))
    assert float_array(np.array(1.5, ml_dtypes.bfloat16), "x").shape == ()
    # quantize_linear of bfloat16 x (and a bfloat16 scale) is that of the widened values
    x = (rng.standard_normal((5, 77)) * 400).astype(ml_dtypes.bfloat16)
    s = np.array([0.03125, 0.3, 1.7, 0.011, 5.0], ml_dtypes.bfloat16)
    z = rng.integers(-300, 300, 5).astype(np.int16)
    want = onnx_run("QuantizeLinear", [x.astype(F32), s.astype(F32), z], axis=0)
    assert_int_equal(lowbit.quantize_linear(x, s, z, axis=0), want)
    qt = lowbit.quantize(x, "int16", axis=0)
    assert_int_equal(qt.data, lowbit.quantize(x.astype(F32), "int16", axis=0).data)


def test_bfloat16_nan_and_inf_input_raise():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for special in (np.nan, np.inf, -np.inf):
        x = np.array([1.0, special], ml_dtypes.bfloat16)
        with pytest.raises(ValueError, match="x holds NaN or Inf"):
            lowbit.quantize_linear(x, 1.0, np.int16(0))
        with pytest.raises(ValueError, match="scale must be finite"):
            lowbit.quantize_linear(np.ones(2, F32), x[1:])


# ---- 16-bit float output --------------------------------------------------------------------
def _float32_bits(values):
    return np.asarray(values, np.uint32).view(F32)


def test_round_to_bfloat16_matches_ml_dtypes_on_every_kind_of_value(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    hi = rng.integers(0, 1 << 16, 64, dtype=np.uint32)
    special_hi = np.array([0x0000, 0x0001, 0x007F, 0x0080, 0x3F80, 0x3F81, 0x7F7F, 0x7F80,
                           0x7FC0, 0x8000, 0x807F, 0xBF80, 0xFF7F, 0xFF80, 0xFFC0, 0xFFFF],
                          np.uint32)
    lows = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)   # below, at, above ties
    grid = ((np.concatenate([hi, special_hi])[:, None] << 16) | lows[None]).reshape(-1)
    bits = np.concatenate([grid, rng.integers(0, 1 << 32, 200000, dtype=np.uint64)
                           .astype(np.uint32)])
    y = bits.view(F32)
    with np.errstate(over="ignore", invalid="ignore"):
        theirs = y.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(_round_to_bfloat16(y), theirs)
    # the rules spelled out: ties to even, up past the tie, subnormals alike, overflow to Inf
    tie_even, tie_odd = 0x3F808000, 0x3F818000
    got = _round_to_bfloat16(_float32_bits([tie_even, tie_odd, 0x3F808001, 0x00008000,
                                            0x00018000, 0x7F7FFFFF, 0xFF7F8000, 0x7F800001,
                                            0xFFFFFFFF]))
    np.testing.assert_array_equal(got, [0x3F80, 0x3F82, 0x3F81, 0x0000, 0x0002, 0x7F80, 0xFF80,
                                        0x7FC0, 0xFFC0])


def test_dequantize_bfloat16_output(isa, rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q = rng.integers(-32768, 32768, (7, 129)).astype(np.int16)
    z = rng.integers(-1000, 1000, 129).astype(np.int16)
    s = _scales(rng, (129,))
    f32 = lowbit.dequantize_linear(q, s, z, axis=1)
    for dtype in ("bfloat16", ml_dtypes.bfloat16, np.dtype(ml_dtypes.bfloat16)):
        got = lowbit.dequantize_linear(q, s, z, axis=1, dtype=dtype)
        assert got.dtype == np.dtype(ml_dtypes.bfloat16) and got.shape == q.shape
        np.testing.assert_array_equal(got.view(np.uint16),
                                      f32.astype(ml_dtypes.bfloat16).view(np.uint16))
    # ONNX: a bfloat16 scale gives bfloat16 output, (q - zp) * scale in float32, rounded once
    sb = s.astype(ml_dtypes.bfloat16)
    want = onnx_run("DequantizeLinear", [q, sb, z], axis=1)
    assert want.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(
        lowbit.dequantize_linear(q, sb, z, axis=1, dtype="bfloat16").view(np.uint16),
        want.view(np.uint16))


def test_dequantize_16bit_float_ties_subnormals_and_overflow(isa):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q = np.array([2049, 2051, 2050, -2049, 1, 3, 32767], np.int16)
    # float16: ulp 2^-10 at 1: 1 + 2^-11 ties to 1 (even), 1 + 3 * 2^-11 to 1 + 2^-9 (even)
    got = lowbit.dequantize_linear(q, F32(2.0 ** -11), dtype=np.float16)
    np.testing.assert_array_equal(got, np.array([1, 1 + 2 ** -9, 1 + 2 ** -10, -1, 2 ** -11,
                                                 3 * 2 ** -11, 32767 * 2 ** -11], np.float16))
    # overflow to Inf (no warning), and a subnormal float16 result
    assert lowbit.dequantize_linear(q[-1:], F32(4.0), np.int16(-32768),
                                    dtype="float16")[0] == np.inf
    tiny = lowbit.dequantize_linear(np.array([3], np.int16), F32(2.0 ** -25), dtype="float16")
    assert tiny[0] == np.float16(2.0 ** -24) * 2   # 3 * 2^-25 = 1.5 ulp of the subnormals: even
    # bfloat16: ulp 2^-7 at 1; scale 2^-8 makes (q - zp) * scale = k * 2^-8, ties at odd k
    got = lowbit.dequantize_linear(np.array([257, 259, 258, -257], np.int16), F32(2.0 ** -8),
                                   dtype="bfloat16")
    np.testing.assert_array_equal(got.astype(F32), [1, 1 + 2 ** -6, 1 + 2 ** -7, -1])
    # a subnormal scale: subnormal float32 results round like any other bit pattern
    sub = F32(np.finfo(F32).smallest_subnormal * 3)
    q2 = np.array([1, 2, 3, 100, 32767], np.int16)
    got = lowbit.dequantize_linear(q2, sub, dtype="bfloat16")
    f32 = lowbit.dequantize_linear(q2, sub)
    np.testing.assert_array_equal(got.view(np.uint16),
                                  f32.astype(ml_dtypes.bfloat16).view(np.uint16))
    # overflow to Inf
    big = lowbit.dequantize_linear(np.array([32767, -32768], np.int16), F32(3e38),
                                   np.int16(-32768), dtype="bfloat16")
    assert big.astype(F32)[0] == np.inf and big.astype(F32)[1] == 0


def test_16bit_float_output_rounds_once_from_float32(isa):
    """The order is (q - zp) * scale in float32, then one rounding to the 16-bit type: a
    float32 product that rounds onto a float16 tie goes to the even neighbour, where rounding
    the exact product would have gone up."""
    tie = 1 + 2.0 ** -11                       # halfway between float16 1 and 1 + 2^-10
    candidates = [F32(tie / 5)]
    for _ in range(8):
        candidates += [np.nextafter(candidates[-1], F32(np.inf))]
    found = [s for s in candidates if F32(5) * s == F32(tie) and 5 * np.float64(s) > tie]
    assert found
    got = lowbit.dequantize_linear(np.array([5], np.int16), found[0], dtype="float16")
    assert got[0] == np.float16(1.0)                                  # float32 first, then even
    assert np.float16(5 * np.float64(found[0])) == np.float16(1 + 2 ** -10)   # the exact one


def test_bfloat16_output_without_ml_dtypes_names_dtype(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)   # import ml_dtypes now fails
    q = np.ones(3, np.int16)
    with pytest.raises(ImportError, match="dtype='bfloat16'.*needs ml_dtypes"):
        lowbit.dequantize_linear(q, 1.0, dtype="bfloat16")
    assert lowbit.dequantize_linear(q, 1.0, dtype="float16").dtype == np.float16


def test_import_lowbit_does_not_import_ml_dtypes():
    code = ("import sys, numpy as np, lowbit\n"
            "q = lowbit.quantize_linear(np.ones(4, np.float32), 0.5, np.int16(0))\n"
            "lowbit.dequantize_linear(q, 0.5, dtype='float16')\n"
            "assert 'ml_dtypes' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
