"""The quantized convolution layers: lowbit.nn.QuantizedConv2d / Conv1d against the documented
computation operation by operation (per-image DynamicQuantizeLinear or the frozen static
parameters, the exact int64 convolution, fma(float(acc), s_x * s_w, bias), the activation's
clamp), lowbit.torch's drop-ins (compile, export, deepcopy, pickle, state_dict, save/load,
half precision), quantize_ / prepare / prepare_qat on CNNs with Conv+BatchNorm(+ReLU) fusion,
skip reasons, bad input, and a CNN trained on scikit-learn's digits."""
import copy
import io
import math
import pickle

import numpy as np
import pytest

import lowbit
from lowbit.nn import QuantizedConv1d, QuantizedConv2d
from conftest import (assert_bits_equal, export_onnx, fma_f32, importorskip, ref_dynamic_params,
                      ref_quantize_linear)
from test_conv import conv_padded, ref_conv_i64

F32 = np.float32
CLAMPS = {None: (-np.inf, np.inf), "relu": (0.0, np.inf), "relu6": (0.0, 6.0)}


def ref_layer(layer, x):
    """The layer's computation, step by step, from its own quantized weight (NCHW, 2-D)."""
    qt = layer.qtensor()
    w = qt.data if layer.spatial == 2 else qt.data[:, :, None, :]
    x4 = x if layer.spatial == 2 else x[:, :, None, :]
    if layer.spatial == 2:
        strides, dil, pads = list(layer.stride), list(layer.dilation), [
            layer.pads[0], layer.pads[1], layer.pads[2], layer.pads[3]]
    else:
        strides, dil, pads = [1, layer.stride[0]], [1, layer.dilation[0]], [
            0, layer.pads[0], 0, layer.pads[1]]
    out = []
    for n in range(x4.shape[0]):
        img = x4[n:n + 1]
        if layer.scheme == "dynamic":
            sx, zx = ref_dynamic_params(img)
            q = ref_quantize_linear(img, sx, zx, "uint8").astype(np.int64)
        else:
            sx = F32(layer.input_scale)
            zx = int(layer.input_zero_point)
            qtype = "int8" if layer.input_zero_point.dtype == np.int8 else "uint8"
            q = ref_quantize_linear(img, sx, zx, qtype).astype(np.int64)
        acc = ref_conv_i64(q, zx, w, qt.zero_point.astype(np.int64), layer.groups, strides, dil,
                           pads)
        assert np.abs(acc).max(initial=0) < 2**31
        s = (F32(sx) * layer.scale.astype(F32)).astype(F32).reshape(1, -1, 1, 1)
        b = np.zeros(layer.out_channels, F32) if layer.bias is None else layer.bias
        y = fma_f32(acc.astype(F32), np.broadcast_to(s, acc.shape),
                    np.broadcast_to(b.reshape(1, -1, 1, 1), acc.shape))
        lo, hi = CLAMPS[layer.activation]
        out.append(np.minimum(np.maximum(y, F32(lo)), F32(hi)).astype(F32))
    y = np.concatenate(out) if out else np.zeros(layer.output_shape(x4.shape), F32)
    return y if layer.spatial == 2 else y[:, :, 0, :]


def conv_f64(x, w, b, stride, pads, dilation, groups):
    """float64 convolution (2-D) as a float reference for accuracy checks."""
    n, c, h, wd = x.shape
    xp = np.zeros((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]))
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    y = conv_padded(xp, np.asarray(w, np.float64), groups, stride, dilation)
    return y + (0 if b is None else b.reshape(1, -1, 1, 1))


CASES = [
    # (C, M, H, W, k, stride, padding, dilation, groups, activation)
    (3, 8, 9, 11, 3, 1, 1, 1, 1, None),
    (4, 6, 10, 7, (3, 2), (2, 1), (1, 0, 2, 1), 1, 2, "relu"),
    (8, 8, 9, 9, 3, 2, "valid", 1, 8, "relu6"),            # depthwise
    (5, 10, 8, 8, 3, 1, "same", 2, 5, None),               # depthwise, multiplier 2, dilation
    (16, 7, 6, 5, 1, 1, 0, 1, 1, "relu"),                  # 1x1 on the GEMM directly
    (6, 9, 12, 12, 5, 3, 2, 1, 3, None),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("static", [False, True])
def test_numpy_conv2d_is_the_documented_computation(isa, rng, case, static):
    c, m, h, wd, k, stride, padding, dilation, groups, act = CASES[case]
    kk = (k, k) if isinstance(k, int) else k
    w = rng.standard_normal((m, c // groups) + kk).astype(F32)
    b = rng.standard_normal(m).astype(F32)
    x = rng.standard_normal((3, c, h, wd)).astype(F32) * np.array([1, 4, 0.1], F32).reshape(-1, 1, 1, 1)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, activation=act)
    if static:
        layer = QuantizedConv2d.from_config(w, b, lowbit.Int8StaticConfig(),
                                            input_qparams=(0.03, np.int8(-5)), **kw)
        assert layer.scheme == "static"
    else:
        layer = QuantizedConv2d.from_float(w, b, **kw)
    x_before = x.copy()
    y = layer(x)
    np.testing.assert_array_equal(x, x_before)
    assert y.shape == layer.output_shape(x.shape)
    assert_bits_equal(y, ref_layer(layer, x), f"case {case} static={static} isa={isa}")
    # unbatched input: the same as a batch of one
    assert_bits_equal(layer(x[1]), y[1])
    # accuracy against the float64 convolution (dynamic per image; static clips the big image)
    if not static:
        ref = conv_f64(x.astype(np.float64), w.astype(np.float64), b, layer.stride, layer.pads,
                       layer.dilation, groups)
        lo, hi = CLAMPS[act]
        ref = np.clip(ref, lo, hi)
        err = np.sqrt(np.mean((y - ref) ** 2) / np.mean(ref ** 2))
        assert err < 0.03, err


def test_numpy_conv1d_and_batch_zero(isa, rng):
    w = rng.standard_normal((6, 2, 4)).astype(F32)
    layer = QuantizedConv1d.from_float(w, None, stride=2, padding=(2, 1), dilation=1, groups=2,
                                       activation="relu")
    x = rng.standard_normal((2, 4, 19)).astype(F32)
    y = layer(x)
    assert y.shape == (2, 6, 10) == layer.output_shape(x.shape)
    assert_bits_equal(y, ref_layer(layer, x))
    assert layer(np.zeros((0, 4, 19), F32)).shape == (0, 6, 10)
    assert layer(x[0]).shape == (6, 10)


def test_the_same_bits_on_every_path_and_thread_count(rng):
    w = rng.standard_normal((12, 12, 3, 3)).astype(F32)
    layers = [QuantizedConv2d.from_float(w, None, padding=1),
              QuantizedConv2d.from_float(w[:, :1], None, padding=1, groups=12, stride=2)]
    x = rng.standard_normal((2, 12, 15, 13)).astype(F32)
    for layer in layers:
        expect = None
        for isa in lowbit.cpu_info()["available"] + ["scalar"]:
            for threads in (1, 2):
                with lowbit.use_isa(isa):
                    old = lowbit.get_num_threads()
                    lowbit.set_num_threads(threads)
                    try:
                        y = layer(x)
                    finally:
                        lowbit.set_num_threads(old)
                if expect is None:
                    expect = y
                assert_bits_equal(y, expect, f"{isa} threads={threads}")


def test_dynamic_images_are_quantized_one_by_one(rng):
    """An image's result does not depend on the rest of the batch."""
    layer = QuantizedConv2d.from_float(rng.standard_normal((4, 3, 3, 3)).astype(F32), None)
    x = rng.standard_normal((3, 3, 8, 8)).astype(F32)
    x[2] *= 100
    y = layer(x)
    for n in range(3):
        assert_bits_equal(layer(x[n:n + 1])[0], y[n])


def test_int4_conv_weights(rng):
    w = rng.standard_normal((8, 4, 3, 3)).astype(F32)
    layer = QuantizedConv2d.from_config(w, None, lowbit.Int4DynamicConfig(group_size=32),
                                        padding=1)
    assert layer.bits == 4 and layer.weight_dtype in ("int4", "uint4")
    qt = layer.qtensor()
    assert qt.data.min() >= -8 and qt.data.max() <= 15
    x = rng.standard_normal((2, 4, 6, 6)).astype(F32)
    assert_bits_equal(layer(x), ref_layer(layer, x))


@pytest.mark.parametrize("bad, match", [
    (dict(stride=0), "stride"), (dict(padding=-1), "padding"), (dict(dilation=(1,)), "dilation"),
    (dict(groups=3), "groups"), (dict(padding="same", stride=2), "same"),
    (dict(activation="gelu"), "activation"), (dict(padding="full"), "padding"),
])
def test_bad_geometry_is_a_clear_error(rng, bad, match):
    w = rng.standard_normal((4, 2, 3, 3)).astype(F32)
    kw = dict(stride=1, padding=0, dilation=1, groups=1)
    kw.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        QuantizedConv2d.from_float(w, None, **kw)


def test_bad_input_is_a_clear_error_and_nothing_is_modified(rng):
    w = rng.standard_normal((4, 2, 3, 3)).astype(F32)
    w0 = w.copy()
    with pytest.raises(ValueError, match="weight"):
        QuantizedConv2d.from_float(w[0], None)                      # wrong rank
    bad = w.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="weight"):
        QuantizedConv2d.from_float(bad, None)
    with pytest.raises(ValueError, match="bias"):
        QuantizedConv2d.from_float(w, np.zeros(3, F32))
    with pytest.raises(ValueError, match="bias"):
        QuantizedConv2d.from_float(w, np.full(4, np.inf, F32))
    with pytest.raises(ValueError, match="weight-only|convolution"):
        QuantizedConv2d.from_config(w, None, lowbit.Int8WeightOnlyConfig())
    with pytest.raises(ValueError, match="input_qparams|calibrat"):
        QuantizedConv2d.from_config(w, None, lowbit.Int8StaticConfig())
    with pytest.raises(ValueError, match="scale"):
        QuantizedConv2d.from_config(w, None, lowbit.Int8StaticConfig(),
                                    input_qparams=(math.nan, 0))
    np.testing.assert_array_equal(w, w0)
    layer = QuantizedConv2d.from_float(w, None)
    x = rng.standard_normal((1, 2, 5, 5)).astype(F32)
    with pytest.raises(ValueError, match="channels"):
        layer(rng.standard_normal((1, 3, 5, 5)).astype(F32))
    with pytest.raises(ValueError, match="larger than the padded input"):
        layer(x[:, :, :2, :2])
    with pytest.raises(ValueError, match="4-D|3-D"):
        layer(x[0, 0])
    xn = x.copy()
    xn[0, 1, 2, 2] = np.nan
    xn0 = xn.copy()
    with pytest.raises(ValueError, match="NaN"):
        layer(xn)
    np.testing.assert_array_equal(xn, xn0)
    with pytest.raises(TypeError):
        layer(x.astype(np.int32))


# ----------------------------------------------------------------------------- PyTorch
def _torch():
    torch = importorskip("torch")
    import lowbit.torch  # noqa: F401
    return torch


def _small_cnn(torch):
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU6(),
        nn.Conv2d(8, 16, 1), nn.Flatten(), nn.Linear(16 * 4 * 4, 5))
    with torch.no_grad():   # a trained-looking BatchNorm
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_torch_layer_matches_the_numpy_layer_and_traces(rng):
    torch = _torch()
    import lowbit.torch as lt
    conv = torch.nn.Conv2d(4, 6, 3, stride=(1, 2), padding=(1, 2), dilation=(2, 1), groups=2)
    q = lt.QuantizedConv2d.from_float(conv, activation="relu")
    x = torch.from_numpy(rng.standard_normal((2, 4, 9, 10)).astype(F32))
    with torch.inference_mode():
        y = q(x)
    assert_bits_equal(y.numpy(), q.numpy_layer()(x.numpy()))
    ref = torch.relu(conv(x)).detach()
    assert (y - ref).norm() / ref.norm() < 0.03
    assert q.in_channels == 4 and q.out_channels == 6
    compiled = torch.compile(q, fullgraph=True)
    with torch.no_grad():
        assert_bits_equal(compiled(x).numpy(), y.numpy())
        ep = torch.export.export(q, (x,))
        assert_bits_equal(ep.module()(x).numpy(), y.numpy())
    for clone in (copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        with torch.no_grad():
            assert_bits_equal(clone(x).numpy(), y.numpy())
    buf = io.BytesIO()
    torch.save(q, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    with torch.no_grad():
        assert_bits_equal(loaded(x).numpy(), y.numpy())
    # half precision in, the input's dtype out (computed in float32, rounded once)
    for dt in (torch.bfloat16, torch.float16):
        with torch.no_grad():
            yh = q(x.to(dt))
        assert yh.dtype == dt
        assert_bits_equal(yh.float().numpy(), torch.from_numpy(
            q.numpy_layer()(x.to(dt).float().numpy())).to(dt).float().numpy())
    with pytest.raises(RuntimeError):
        q.to("meta")
    with pytest.raises(ValueError, match="x must have shape"):
        q(torch.zeros(1, 3, 9, 9))
    xn = x.clone()
    xn[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        q(xn)
    x1 = torch.from_numpy(rng.standard_normal((2, 4, 12)).astype(F32))
    c1 = torch.nn.Conv1d(4, 4, 3, padding=1, groups=4)
    q1 = lt.QuantizedConv1d.from_float(c1)
    with torch.no_grad():
        assert_bits_equal(q1(x1).numpy(), q1.numpy_layer()(x1.numpy()))
        assert_bits_equal(torch.compile(q1, fullgraph=True)(x1).numpy(), q1(x1).numpy())


def test_state_dict_round_trip(rng):
    torch = _torch()
    import lowbit.torch as lt
    a = lt.QuantizedConv2d.from_float(torch.nn.Conv2d(3, 5, 3, padding=1))
    b = lt.QuantizedConv2d.from_float(torch.nn.Conv2d(3, 5, 3, padding=1))
    sd = a.state_dict()
    assert {"qweight", "scale", "zero_point", "bias", "format"} <= set(sd)
    b.load_state_dict(sd)
    x = torch.from_numpy(rng.standard_normal((1, 3, 6, 6)).astype(F32))
    with torch.no_grad():
        assert_bits_equal(b(x).numpy(), a(x).numpy())
    wrong = lt.QuantizedConv2d.from_float(torch.nn.Conv2d(3, 5, 1))
    with pytest.raises(Exception, match="shape|kernel|format|geometry"):
        wrong.load_state_dict(sd)


def test_quantize_fuses_batchnorm_and_activations(rng):
    torch = _torch()
    import lowbit.torch as lt
    model = _small_cnn(torch)
    x = torch.from_numpy(rng.standard_normal((4, 3, 8, 8)).astype(F32))
    with torch.no_grad():
        ref = model(x)
    q = copy.deepcopy(model)
    summary = lt.quantize_(q, lowbit.Int8DynamicConfig())
    assert summary.replaced_names == ["0", "3", "5", "7"]
    assert isinstance(q[0], lt.QuantizedConv2d) and q[0].numpy_layer().activation == "relu"
    assert isinstance(q[3], lt.QuantizedConv2d) and q[3].numpy_layer().activation == "relu6"
    assert isinstance(q[1], torch.nn.Identity) and isinstance(q[2], torch.nn.Identity)
    note = next(r for r in summary.replaced if r.name == "0").note
    assert "1" in note and "2" in note and "fused" in note
    with torch.no_grad():
        y = q(x)
    assert (y - ref).norm() / ref.norm() < 0.03
    for name, module in model.named_children():   # the float model is untouched
        assert not isinstance(module, (lt.QuantizedConv2d, torch.nn.Identity)), name
    buf = io.BytesIO()
    torch.save(q, buf)
    buf.seek(0)
    with torch.no_grad():
        assert_bits_equal(torch.load(buf, weights_only=False)(x).numpy(), y.numpy())


def test_lowbit_save_and_load_of_a_cnn(tmp_path, rng):
    torch = _torch()
    import lowbit.torch as lt
    model = _small_cnn(torch)
    q = copy.deepcopy(model)
    lt.quantize_(q, lowbit.Int8DynamicConfig())
    x = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)).astype(F32))
    path = tmp_path / "cnn.lowbit"
    lowbit.save(q, path)
    skeleton = _small_cnn(torch)
    lt.quantize_(skeleton, lowbit.Int8DynamicConfig())   # same structure
    loaded = lowbit.load(path, skeleton)
    with torch.no_grad():
        assert_bits_equal(loaded(x).numpy(), q(x).numpy())
    # an unfused float skeleton: the file names the fused BatchNorm / ReLU modules
    assert q[0].fused_modules == ("1", "2") and q[3].fused_modules == ("4",)
    plain = lowbit.load(path, _small_cnn(torch))
    assert isinstance(plain[1], torch.nn.Identity) and isinstance(plain[4], torch.nn.Identity)
    assert plain[0].fused_modules == ("1", "2")
    with torch.no_grad():
        assert_bits_equal(plain(x).numpy(), q(x).numpy())
    # static PTQ (fused at prepare) records them too
    st = _small_cnn(torch)
    lt.prepare(st, lowbit.Int8StaticConfig())
    with torch.no_grad():
        st(x)
    lt.convert(st)
    lowbit.save(st, tmp_path / "static.lowbit")
    back = lowbit.load(tmp_path / "static.lowbit", _small_cnn(torch))
    with torch.no_grad():
        assert_bits_equal(back(x).numpy(), st(x).numpy())
    # a skeleton with something else where a fused module was: refused, model untouched
    other = _small_cnn(torch)
    other[1] = torch.nn.Tanh()
    with pytest.raises(ValueError, match="fused module '1'"):
        lowbit.load(path, other)
    assert isinstance(other[0], torch.nn.Conv2d)


def test_skip_reasons(rng):
    torch = _torch()
    import lowbit.torch as lt
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
                          nn.ConvTranspose2d(4, 4, 2), nn.Conv3d(4, 4, 1)).eval()
    summary = lt.quantize_(model, lowbit.Int8DynamicConfig())
    assert summary.replaced == []
    assert "padding_mode='reflect'" in summary.reason("0")
    assert isinstance(model[0], nn.Conv2d)
    wo = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2)).eval()
    s = lt.quantize_(wo, lowbit.Int8WeightOnlyConfig())
    assert s.replaced_names == ["2"]
    assert isinstance(wo[0], nn.Conv2d)
    assert "0" in s.skipped_names + s.kept_names


def test_static_prepare_convert_and_qat_on_a_cnn(rng):
    torch = _torch()
    import lowbit.torch as lt
    model = _small_cnn(torch)
    x = torch.from_numpy(rng.standard_normal((16, 3, 8, 8)).astype(F32))
    with torch.no_grad():
        ref = model(x)
    st = copy.deepcopy(model)
    lt.prepare(st, lowbit.Int8StaticConfig())
    with torch.no_grad():
        st(x)
    lt.convert(st)
    assert isinstance(st[0], lt.QuantizedConv2d) and st[0].numpy_layer().scheme == "static"
    with torch.no_grad():
        y = st(x)
    assert (y - ref).norm() / ref.norm() < 0.05
    qa = copy.deepcopy(model)
    lt.prepare_qat(qa, lowbit.Int8DynamicConfig())
    qa.train()
    opt = torch.optim.SGD(qa.parameters(), lr=1e-3)
    loss = qa(x).square().mean()
    loss.backward()
    opt.step()
    qa.eval()
    with torch.no_grad():
        fake = qa(x)
    lt.convert(qa)
    assert isinstance(qa[0], lt.QuantizedConv2d)
    with torch.no_grad():
        real = qa(x)
    assert (real - fake).norm() / fake.norm() < 0.02


# ----------------------------------------------------------------------------- digits CNN
def test_digits_cnn_accuracy():
    torch = _torch()
    datasets = importorskip("sklearn.datasets")
    import lowbit.torch as lt
    nn = torch.nn
    torch.manual_seed(0)
    d = datasets.load_digits()
    X = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    Y = torch.tensor(d.target)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1400], perm[1400:]

    def net():
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU6(),
            nn.Conv2d(32, 32, 1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 16, 10))

    def train(m, epochs, lr):
        opt = torch.optim.Adam(m.parameters(), lr=lr)
        m.train()
        g = torch.Generator().manual_seed(1)
        for _ in range(epochs):
            p = tr[torch.randperm(len(tr), generator=g)]
            for i in range(0, len(p), 64):
                b = p[i:i + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(m(X[b]), Y[b]).backward()
                opt.step()
        return m.eval()

    def acc(m):
        with torch.inference_mode():
            return (m(X[te]).argmax(1) == Y[te]).float().mean().item() * 100

    f = train(net(), 12, 3e-3)
    base = acc(f)
    assert base > 95
    dyn = copy.deepcopy(f)
    s = lt.quantize_(dyn, lowbit.Int8DynamicConfig())
    assert len(s.replaced) == 5
    static = copy.deepcopy(f)
    lt.prepare(static, lowbit.Int8StaticConfig())
    with torch.inference_mode():
        static(X[tr[:512]])
    lt.convert(static)
    qat = copy.deepcopy(f)
    lt.prepare_qat(qat, lowbit.Int4DynamicConfig(group_size=32))
    train(qat, 3, 1e-3)
    lt.convert(qat)
    assert isinstance(qat[0], lt.QuantizedConv2d) and qat[0].numpy_layer().bits == 4
    results = {"dynamic": acc(dyn), "static": acc(static), "int4 qat": acc(qat)}
    print(f"digits CNN: float {base:.2f}", results)
    assert results["dynamic"] >= base - 0.5
    assert results["static"] >= base - 0.5
    assert results["int4 qat"] >= base - 1.0


@pytest.mark.parametrize("scheme", ["dynamic", "static"])
@pytest.mark.parametrize("dynamo", [False, True])
def test_onnx_export_of_a_cnn(tmp_path, rng, scheme, dynamo):
    """ConvInteger graphs: exact under onnx's reference evaluator (up to the epilogue's two
    roundings), and ONNX Runtime where its integer kernels do not saturate on this CPU."""
    torch = _torch()
    importorskip("onnx")
    importorskip("onnxscript" if dynamo else "onnx")
    import lowbit.torch as lt
    from onnx.reference import ReferenceEvaluator
    from test_onnx_export import ort_matmul_integer_saturates
    model = _small_cnn(torch)
    model[3].padding = (1, 2)
    model[7] = torch.nn.Linear(16 * 4 * 5, 5)
    x = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)).astype(F32))
    if scheme == "dynamic":
        lt.quantize_(model, lowbit.Int8DynamicConfig())
    else:
        lt.prepare(model, lowbit.Int8StaticConfig())
        with torch.no_grad():
            model(x)
        lt.convert(model)
    with torch.no_grad():
        want = model(x).numpy()
    path = tmp_path / "cnn.onnx"
    graph = export_onnx(model, x, path, dynamo)
    ops = {n.op_type for n in graph.graph.node}
    assert "ConvInteger" in ops and "MatMulInteger" in ops
    assert not any(n.domain.startswith("lowbit") for n in graph.graph.node)
    name = graph.graph.input[0].name
    got = ReferenceEvaluator(graph).run(None, {name: x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    ort = pytest.importorskip("onnxruntime")
    if not ort_matmul_integer_saturates():
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
