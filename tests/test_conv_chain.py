"""The integer chain (lowbit.torch.chain): consecutive static convs hand each other uint8
activations. The model's output must be the same bits as with the chain off, on every path
and thread count, for every geometry the second conv can have (GEMM, 1x1 direct, grouped,
depthwise with and without a channel multiplier, 1-D), both activation types and fused
clamps; torch.compile, torch.export, ONNX export, deepcopy, pickle, lowbit.save/load and
load_state_dict keep it so; the links follow the model's graph, and the summary says where a
chain returns to float."""
import copy
import io
import pickle

import numpy as np
import pytest

import lowbit
from conftest import assert_bits_equal, export_onnx, importorskip

torch = importorskip("torch")
import lowbit.torch as lt  # noqa: E402
from torch import nn  # noqa: E402

F32 = np.float32


def _static(conv, scale, zero, activation=None):
    """A static lowbit conv with given input parameters (zero's dtype: the activation type)."""
    cls = lt.QuantizedConv1d if isinstance(conv, nn.Conv1d) else lt.QuantizedConv2d
    return cls.from_float(conv, lowbit.Int8StaticConfig(), input_qparams=(F32(scale), zero),
                          activation=activation)


def _both(model):
    """(chained, unchained) copies of a model of lowbit layers."""
    a = copy.deepcopy(model)
    b = copy.deepcopy(model)
    notes = lt.chain(a)
    lt.chain(b, False)
    return a, b, notes


CASES = {
    # name: (first conv, second conv, second's zero point, first's activation)
    "3x3 -> 3x3": (lambda: nn.Conv2d(3, 12, 3, padding=1), lambda: nn.Conv2d(12, 20, 3, padding=(2, 1), stride=2),
                   np.uint8(17), "relu"),
    "-> 1x1": (lambda: nn.Conv2d(4, 32, 3), lambda: nn.Conv2d(32, 24, 1), np.uint8(0), "relu6"),
    "-> depthwise": (lambda: nn.Conv2d(3, 24, 1), lambda: nn.Conv2d(24, 24, 3, padding=1, groups=24),
                     np.int8(-5), None),
    "-> depthwise x2": (lambda: nn.Conv2d(3, 5, 3, padding=1), lambda: nn.Conv2d(5, 10, 3, groups=5, dilation=2),
                        np.uint8(200), None),
    "-> grouped": (lambda: nn.Conv2d(3, 12, 3, stride=2), lambda: nn.Conv2d(12, 18, 2, groups=3), np.int8(3), "relu"),
    "1-d": (lambda: nn.Conv1d(3, 16, 5, padding=2), lambda: nn.Conv1d(16, 8, 3, stride=2), np.uint8(128), None),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("threads", [1, 2])
def test_a_chain_gives_the_same_bits(isa, rng, case, threads):
    first, second, zero, act = CASES[case]
    torch.manual_seed(len(case))
    c1, c2 = first(), second()
    one_d = isinstance(c1, nn.Conv1d)
    x = torch.from_numpy(rng.standard_normal((3, c1.in_channels) + ((33,) if one_d else (13, 11))).astype(F32))
    with torch.no_grad():
        y1 = c1(x)
    scale = float(y1.abs().max()) / 100   # some values saturate at both ends
    model = nn.Sequential(_static(c1, 0.05, np.uint8(128), act), nn.Identity(),
                          _static(c2, scale, zero))
    a, b, notes = _both(model)
    assert notes["0"] == "integer chain: uint8 to '2'"
    assert notes["2"].startswith("integer chain: uint8 from '0'")
    lowbit.set_num_threads(threads)
    with torch.no_grad():
        mid = a[0](x)
        assert mid.dtype == torch.uint8
        # the bytes the second layer would have made from the float tensor
        ref_mid = b[0](x)
        q = lowbit.quantize_linear(ref_mid.numpy(), F32(scale), zero)
        assert q.dtype == zero.dtype
        shift = 128 if zero.dtype == np.int8 else 0
        q = q.astype(np.int32)
        assert np.array_equal(mid.numpy().astype(np.int32), q + shift)
        assert_bits_equal(a(x).numpy(), b(x).numpy())
        assert_bits_equal(a(x[:0]).numpy(), b(x[:0]).numpy())
        assert_bits_equal(a(x[0]).numpy(), b(x[0]).numpy())   # unbatched


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.r1 = nn.ReLU()
        self.c2 = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.r2 = nn.ReLU6()
        self.c3 = nn.Conv2d(16, 16, 1)
        self.c4 = nn.Conv2d(16, 8, 3, stride=2)
        self.c5 = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2)
        self.c6 = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4 * 2 * 2, 3)
        self.c7 = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        x = self.r1(self.bn(self.c1(x)))
        x = self.r2(self.c2(x))
        x = self.c4(x + self.c3(x))         # c2 has two readers; c3 feeds an add
        x = self.c6(self.pool(self.c5(x)))  # c5 feeds a MaxPool
        # c6 feeds a flatten and c7; c7's output is the model's
        return self.fc(x.flatten(1)), self.c7(x)


def _cnn():
    torch.manual_seed(1)
    m = Net().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m


def _converted(model, rng):
    lt.prepare(model, lowbit.Int8StaticConfig())
    with torch.no_grad():
        for _ in range(3):
            model(torch.from_numpy(rng.standard_normal((4, 3, 10, 10)).astype(F32)))
    return lt.convert(model)


def test_links_follow_the_graph_and_the_summary_says_where_they_end(rng):
    model = _cnn()
    lt.prepare(model, lowbit.Int8StaticConfig())
    with torch.no_grad():
        model(torch.from_numpy(rng.standard_normal((4, 3, 10, 10)).astype(F32)))
    off = copy.deepcopy(model)
    summary = lt.convert(model)
    notes = {r.name: r.note for r in summary.replaced}
    assert "integer chain: uint8 to 'c2'" in notes["c1"]
    assert "integer chain: uint8 from 'c1'" in notes["c2"]
    assert "returns float: its output has 2 readers" in notes["c2"]
    assert "returns float: its output goes to add()" in notes["c3"]
    assert "integer chain: uint8 to 'c5'" in notes["c4"]
    assert "returns float: its output goes to MaxPool2d 'pool'" in notes["c5"]
    assert "returns float: its output has 2 readers" in notes["c6"]
    assert "returns float: its output is the model's output" in notes["c7"]
    assert model.c1.chain_to == "c2" and model.c5.chain_from == "c4"
    assert "integer chain" in str(summary)
    summary = lt.convert(off, integer_chain=False)
    assert not any("integer chain: uint8" in r.note for r in summary.replaced)
    x = torch.from_numpy(rng.standard_normal((2, 3, 10, 10)).astype(F32))
    with torch.no_grad():
        got, want = model(x), off(x)
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        assert_bits_equal(g.numpy(), w.numpy())
    with pytest.raises(TypeError, match="integer_chain"):
        lt.convert(_cnn(), integer_chain="yes")


def test_a_model_fx_cannot_trace_links_its_sequential_children(rng):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.AvgPool2d(2))

        def forward(self, x):
            if x.sum() > 1e9:   # data-dependent: torch.fx cannot trace it
                return x
            return self.body(x)

    model = Branchy().eval()
    summary = _converted(model, rng)
    notes = {r.name: r.note for r in summary.replaced}
    assert "integer chain: uint8 to 'body.2'" in notes["body.0"]
    assert "returns float: its output goes to AvgPool2d 'body.3'" in notes["body.2"]
    ref = copy.deepcopy(model)
    lt.chain(ref, False)
    x = torch.from_numpy(rng.standard_normal((2, 3, 12, 12)).astype(F32))
    with torch.no_grad():
        assert_bits_equal(model(x).numpy(), ref(x).numpy())


def test_compile_export_copies_and_files_keep_the_chain(tmp_path, rng):
    model = _cnn()
    _converted(model, rng)
    x = torch.from_numpy(rng.standard_normal((2, 3, 10, 10)).astype(F32))
    with torch.no_grad():
        want = [t.numpy() for t in model(x)]

        def same(m, msg):
            for g, w in zip(m(x), want):
                assert_bits_equal(g.detach().numpy(), w, msg)

        same(torch.compile(model, fullgraph=True), "compile")
        same(torch.export.export(model, (x,)).module(), "export")
        same(copy.deepcopy(model), "deepcopy")
        same(pickle.loads(pickle.dumps(model)), "pickle")
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        same(torch.load(buf, weights_only=False), "torch.save")
        path = tmp_path / "cnn.lowbit"
        lowbit.save(model, path)
        skeleton = _cnn()
        loaded = lowbit.load(path, skeleton)
        assert loaded.c1.chain_to == "c2"
        same(loaded, "lowbit.load")
        # a state_dict changing the second layer's input parameters: the first layer
        # quantizes for the new ones (the chain shares them)
        state = model.state_dict()
        state["c2.input_scale"] = state["c2.input_scale"] * 1.7
        state["c2.input_zero_point"] = state["c2.input_zero_point"] // 2
        model.load_state_dict(state)
        ref = copy.deepcopy(model)
        lt.chain(ref, False)
        for g, w in zip(model(x), ref(x)):
            assert_bits_equal(g.numpy(), w.numpy(), "after load_state_dict")


@pytest.mark.parametrize("dynamo", [False, True])
def test_onnx_export_of_a_chain(tmp_path, rng, dynamo):
    importorskip("onnx")
    importorskip("onnxscript" if dynamo else "onnx")
    from onnx.reference import ReferenceEvaluator
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 4, 1))
    model.eval()
    _converted(model, rng)
    assert model[0].chain_to == "2" and model[2].chain_to == "3"
    x = torch.from_numpy(rng.standard_normal((2, 3, 10, 10)).astype(F32))
    with torch.no_grad():
        want = model(x).numpy()
    path = tmp_path / "chain.onnx"
    graph = export_onnx(model, x, path, dynamo)
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("ConvInteger") == 3 and ops.count("QuantizeLinear") == 3
    got = ReferenceEvaluator(graph).run(None, {graph.graph.input[0].name: x.numpy()})[0]
    # the epilogue's two roundings in ONNX against the kernels' fma: about an ulp
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_half_precision_inputs_do_not_chain_and_bad_inputs_name_the_layer(rng):
    torch.manual_seed(4)
    model = nn.Sequential(_static(nn.Conv2d(3, 8, 3), 0.05, np.uint8(128), "relu"),
                          _static(nn.Conv2d(8, 4, 3), 0.02, np.uint8(0)))
    a, b, _ = _both(model)
    x = torch.from_numpy(rng.standard_normal((2, 3, 9, 9)).astype(F32)).to(torch.bfloat16)
    with torch.no_grad():
        assert a[0](x).dtype == torch.bfloat16   # the next layer rounds its bf16 input itself
        assert_bits_equal(a(x).float().numpy(), b(x).float().numpy())
        u8 = torch.zeros((2, 3, 9, 9), dtype=torch.uint8)
        with pytest.raises(TypeError, match="QuantizedConv2d.*float32, bfloat16 or float16"):
            a[0](u8)   # the first layer is no chain's second: uint8 is refused
        with pytest.raises(TypeError):
            b[1](torch.zeros((2, 8, 7, 7), dtype=torch.uint8))   # unchained
        with pytest.raises(ValueError, match="QuantizedConv2d.*must have shape"):
            a[1](torch.zeros((2, 5, 7, 7), dtype=torch.uint8))
        mid = torch.from_numpy(rng.integers(0, 256, (2, 8, 7, 7), dtype=np.uint8))
        kept = mid.clone()
        # any uint8 tensor (NCHW-contiguous here) is read as the layer's quantized input
        y = a[1](mid)
        assert torch.equal(mid, kept)
        want = a[1](mid.contiguous(memory_format=torch.channels_last))
        assert_bits_equal(y.numpy(), want.numpy())
    with pytest.raises(TypeError, match="enable"):
        lt.chain(a, 1)
    with pytest.raises(TypeError, match="nn.Module"):
        lt.chain("model")
