"""Convolutions (ONNX ConvInteger / QLinearConv and the float conv kernel): every ISA path against
an int64 NumPy reference and the ONNX reference implementation, float outputs bit-identical
across paths, bad input."""
import numpy as np
import pytest

import lowbit
from lowbit._core import _C
from conftest import fma_f32, importorskip, wrap_int32


def ref_conv_i64(x, xz, w, wz, group, strides, dil, pads):
    """int64 conv of (x - xz) and (w - wz[m]) over NCHW, pads [top, left, bottom, right]."""
    n, c, h, wd = x.shape
    xp = np.full((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), xz, np.int64)
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    xp -= xz
    wc = w.astype(np.int64) - np.asarray(wz, np.int64).reshape(-1, 1, 1, 1)
    return conv_padded(xp, wc, group, strides, dil)


def conv_padded(xp, wc, group, strides, dil):
    """The convolution of an already padded NCHW xp with wc (M, C / group, kh, kw), in their
    dtype (int64: exact; float64: the float reference of tests/test_conv_layers.py)."""
    n = xp.shape[0]
    m, cg, kh, kw = wc.shape
    oh = (xp.shape[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (xp.shape[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    y = np.zeros((n, m, oh, ow), np.result_type(xp, wc))
    mg = m // group
    for g in range(group):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * dil[0]:i * dil[0] + strides[0] * (oh - 1) + 1:strides[0],
                           j * dil[1]:j * dil[1] + strides[1] * (ow - 1) + 1:strides[1]]
                y[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, wc[g * mg:(g + 1) * mg, :, i, j])
    return y


def random_case(rng, depthwise=None):
    if depthwise is None:
        depthwise = rng.random() < 0.4
    if depthwise:
        c = int(rng.integers(2, 40))
        group, m = c, c * int(rng.integers(1, 3))
    else:
        group = int(rng.choice([1, 1, 2, 3]))
        c = group * int(rng.integers(1, 7))
        m = group * int(rng.integers(1, 6))
    kh, kw = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    strides = [int(v) for v in rng.integers(1, 4, 2)]
    dil = [int(v) for v in rng.integers(1, 3, 2)]
    pads = [int(v) for v in rng.integers(0, 3, 4)]
    h = max(1, dil[0] * (kh - 1) + 1 - pads[0] - pads[2] + int(rng.integers(0, 6)))
    w = max(1, dil[1] * (kw - 1) + 1 - pads[1] - pads[3] + int(rng.integers(0, 6)))
    return dict(n=int(rng.integers(0, 3)), c=c, h=h, w=w, m=m, group=group, k=(kh, kw),
                strides=strides, dil=dil, pads=pads)


def ints(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


@pytest.mark.parametrize("seed", range(6))
def test_conv_integer_matches_int64_reference(isa, seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        cs = random_case(rng)
        xt, wt = rng.choice([np.uint8, np.int8]), rng.choice([np.uint8, np.int8])
        x = ints(rng, (cs["n"], cs["c"], cs["h"], cs["w"]), xt)
        w = ints(rng, (cs["m"], cs["c"] // cs["group"]) + cs["k"], wt)
        xz = ints(rng, (), xt)
        wz = ints(rng, (cs["m"],), wt) if rng.random() < 0.5 else ints(rng, (), wt)
        y = lowbit.conv_integer(x, w, xz, wz, group=cs["group"], strides=cs["strides"],
                                dilations=cs["dil"], pads=cs["pads"])
        ref = ref_conv_i64(x, int(xz), w, np.broadcast_to(wz, (cs["m"],)), cs["group"],
                           cs["strides"], cs["dil"], cs["pads"])
        assert y.dtype == np.int32 and y.shape == ref.shape, cs
        np.testing.assert_array_equal(y, wrap_int32(ref), err_msg=f"{cs} isa={isa}")


def test_conv_integer_adversarial_extremes(isa):
    # uint8 255 against int8 -128 everywhere with zero points at the other end: the largest
    # products a tap pair (vpmaddwd) and the GEMM see.
    for group, c, m in [(1, 8, 16), (8, 8, 8), (8, 8, 16)]:
        x = np.full((1, c, 9, 9), 255, np.uint8)
        w = np.full((m, c // group, 7, 7), -128, np.int8)
        y = lowbit.conv_integer(x, w, np.uint8(0), np.int8(127), group=group, pads=[3, 3, 3, 3])
        ref = ref_conv_i64(x, 0, w, np.full(m, 127), group, [1, 1], [1, 1], [3, 3, 3, 3])
        np.testing.assert_array_equal(y, ref)


def test_conv_1d_and_auto_pad(isa, rng):
    x = ints(rng, (2, 6, 17), np.uint8)
    w = ints(rng, (4, 3, 5), np.int8)
    y = lowbit.conv_integer(x, w, np.uint8(7), group=2, strides=[2], dilations=[2], pads=[1, 3])
    ref = ref_conv_i64(x[:, :, None, :], 7, w[:, :, None, :], np.zeros(4), 2, [1, 2], [1, 2], [0, 1, 0, 3])
    np.testing.assert_array_equal(y, ref[:, :, 0, :])
    x2 = ints(rng, (1, 3, 10, 7), np.int8)
    w2 = ints(rng, (5, 3, 3, 4), np.int8)
    for auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        y = lowbit.conv_integer(x2, w2, auto_pad=auto_pad, strides=[2, 3])
        if auto_pad == "VALID":
            pads = [0, 0, 0, 0]
        else:
            th = max(0, (5 - 1) * 2 + 3 - 10)
            tw = max(0, (3 - 1) * 3 + 4 - 7)
            lo_h, lo_w = (th // 2, tw // 2) if auto_pad == "SAME_UPPER" else (th - th // 2, tw - tw // 2)
            pads = [lo_h, lo_w, th - lo_h, tw - lo_w]
            assert y.shape[2:] == (5, 3)
        ref = ref_conv_i64(x2, 0, w2, np.zeros(5), 1, [2, 3], [1, 1], pads)
        np.testing.assert_array_equal(y, ref)


def test_onnx_reference_conv_integer_and_qlinear_conv(isa, rng):
    importorskip("onnx")
    from onnx.reference.ops.op_conv_integer import ConvInteger
    from onnx.reference.ops.op_qlinear_conv import QLinearConv
    for depthwise in (False, True, False, True):
        cs = random_case(rng, depthwise)
        cs["n"] = max(cs["n"], 1)
        attrs = dict(group=cs["group"], kernel_shape=list(cs["k"]), strides=cs["strides"],
                     dilations=cs["dil"], pads=cs["pads"])
        x = ints(rng, (cs["n"], cs["c"], cs["h"], cs["w"]), np.uint8)
        w = ints(rng, (cs["m"], cs["c"] // cs["group"]) + cs["k"], np.uint8)
        xz, wz = np.uint8(rng.integers(0, 256)), np.uint8(rng.integers(0, 256))
        np.testing.assert_array_equal(lowbit.conv_integer(x, w, xz, wz, **attrs),
                                      ConvInteger.eval(x, w, xz, wz, **attrs))
        ws = (rng.random(cs["m"]) * 0.02 + 1e-3).astype(np.float32)
        wi = ints(rng, (cs["m"], cs["c"] // cs["group"]) + cs["k"], np.int8)
        wzi = np.zeros(cs["m"], np.int8)
        xs, ys = np.float32(0.05), np.float32(rng.random() * 3 + 0.2)
        b = rng.integers(-3000, 3000, cs["m"]).astype(np.int32)
        for yz in (np.uint8(rng.integers(0, 256)), np.int8(rng.integers(-128, 128))):
            got = lowbit.qlinear_conv(x, xs, xz, wi, ws, wzi, ys, yz, b, **attrs)
            ref = QLinearConv.eval(x, xs, xz, wi, ws, wzi, ys, yz, b, **attrs)
            assert got.dtype == ref.dtype
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_float_same_bits_on_every_path(depthwise):
    rng = np.random.default_rng(5)
    for _ in range(8):
        cs = random_case(rng, depthwise)
        cs["n"] = 2
        x = rng.standard_normal((2, cs["c"], cs["h"], cs["w"])).astype(np.float32)
        w = ints(rng, (cs["m"], cs["c"] // cs["group"]) + cs["k"], np.int8)
        w[w == -128] = -127
        scale = (rng.random(cs["m"]) * 0.01 + 1e-3).astype(np.float32)
        bias = rng.standard_normal(cs["m"]).astype(np.float32)
        pw = _C.pack_conv(w, cs["group"], None)
        assert pw.depthwise == depthwise
        params = cs["strides"] + cs["dil"] + cs["pads"]
        outs = {}
        for isa in lowbit.cpu_info()["available"] + ["scalar"]:
            with lowbit.use_isa(isa):
                outs[isa] = (_C.conv_float(x, pw, params, True, 1.0, 0, _C.QType.uint8, scale, bias, 0.0, 6.0),
                             _C.conv_float(x, pw, params, False, 0.02, -3, _C.QType.int8, scale, None,
                                           -np.inf, np.inf))
        for isa, (dyn, sta) in outs.items():
            np.testing.assert_array_equal(dyn.view(np.int32), outs["scalar"][0].view(np.int32), err_msg=isa)
            np.testing.assert_array_equal(sta.view(np.int32), outs["scalar"][1].view(np.int32), err_msg=isa)
        # The documented epilogue: static input quantized with (0.02, -3), exact acc, then
        # fma(float(acc), s_x * s_w, 0) (no bias), per image.
        q = np.clip(np.round(x / np.float32(0.02)) - 3, -128, 127).astype(np.int8)
        acc = ref_conv_i64(q, -3, w, np.zeros(cs["m"]), cs["group"], cs["strides"], cs["dil"], cs["pads"])
        s = (np.float32(0.02) * scale).astype(np.float32).reshape(1, -1, 1, 1)
        expect = fma_f32(acc.astype(np.float32), np.broadcast_to(s, acc.shape), np.zeros(acc.shape, np.float32))
        np.testing.assert_array_equal(outs["scalar"][1].view(np.int32), expect.view(np.int32))


def test_bad_input_names_the_argument():
    x = np.zeros((1, 4, 5, 5), np.uint8)
    w = np.zeros((4, 2, 3, 3), np.int8)
    before = (x.copy(), w.copy())
    with pytest.raises(ValueError, match="group"):
        lowbit.conv_integer(x, w, group=3)
    with pytest.raises(ValueError, match="pads"):
        lowbit.conv_integer(x, w, group=2, pads=[-1, 0, 0, 0])
    with pytest.raises(ValueError, match="larger than the padded input"):
        lowbit.conv_integer(x, np.zeros((4, 2, 7, 7), np.int8), group=2)
    with pytest.raises(ValueError, match="rank"):
        lowbit.conv_integer(x, np.zeros((4, 2, 3), np.int8), group=2)
    with pytest.raises(ValueError, match="strides"):
        lowbit.conv_integer(x, w, group=2, strides=[0, 1])
    with pytest.raises(ValueError, match="auto_pad"):
        lowbit.conv_integer(x, w, group=2, auto_pad="SAME")
    with pytest.raises(TypeError, match="w must"):
        lowbit.conv_integer(x, w.astype(np.float32), group=2)
    with pytest.raises(ValueError, match="x_scale"):
        lowbit.qlinear_conv(x, np.float32(np.nan), None, w, np.float32(1), None, np.float32(1),
                            np.uint8(0), group=2)
    with pytest.raises(ValueError, match="w_zero_point"):
        lowbit.conv_integer(x, w, None, np.zeros(3, np.int8), group=2)
    with pytest.raises(ValueError, match="x_zero_point"):
        lowbit.conv_integer(x, w, 300, group=2)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])
    xf = np.zeros((1, 4, 5, 5), np.float32)
    xf[0, 1, 2, 2] = np.nan
    pw = _C.pack_conv(w, 2, None)
    with pytest.raises(ValueError, match="NaN"):
        _C.conv_float(xf, pw, [1, 1, 1, 1, 0, 0, 0, 0], True, 1.0, 0, _C.QType.uint8,
                      np.ones(4, np.float32), None, -np.inf, np.inf)


def test_packed_conv_weight_round_trip_and_view(rng):
    for group, c, m in [(1, 5, 7), (6, 6, 12), (2, 4, 6)]:
        w = ints(rng, (m, c // group, 3, 2), np.uint8)
        wz = ints(rng, (m,), np.uint8).astype(np.int32)
        pw = _C.pack_conv(w, group, wz)
        np.testing.assert_array_equal(pw.unpack(), w)
        np.testing.assert_array_equal(pw.zero_points(), wz)
        storage = pw.storage()
        copy = np.empty(storage.size + 64, np.uint8)
        off = (-copy.ctypes.data) % 64
        aligned = copy[off:off + storage.size]
        aligned[:] = storage
        view = _C.conv_weight_view(aligned, _C.ElemType.uint8, m, c // group, group, 3, 2)
        np.testing.assert_array_equal(view.unpack(), w)
        x = ints(rng, (2, c, 6, 5), np.uint8)
        p = [1, 1, 1, 1, 1, 0, 1, 0]
        np.testing.assert_array_equal(_C.conv_integer(x, 3, view, p), _C.conv_integer(x, 3, pw, p))
        with pytest.raises(ValueError, match="packed bytes"):
            _C.conv_weight_view(aligned[:-1], _C.ElemType.uint8, m, c // group, group, 3, 2)
