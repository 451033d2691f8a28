"""lowbit's layers as torch custom operators: torch.compile(fullgraph=True), torch.export and
torch.jit.trace record them, with outputs equal to eager calls bit for bit; the modules survive
deepcopy, pickle, torch.save and state_dict round trips; half-precision models; device moves
refused clearly; the operators' own argument checks."""
from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
from lowbit.torch import QuantizedEmbedding, QuantizedLinear, convert, prepare, quantize_  # noqa: E402

CONFIGS = {
    "int8 dynamic": lowbit.Int8DynamicConfig(),
    "int8 dynamic asymmetric": lowbit.Int8DynamicConfig(symmetric=False),
    "int8 weight-only": lowbit.Int8WeightOnlyConfig(),
    "int4 w4a8 g16": lowbit.Int4DynamicConfig(16),
    "int4 w4a8 g32 asymmetric": lowbit.Int4DynamicConfig(32, symmetric=False),
    "int4 weight-only g16": lowbit.Int4WeightOnlyConfig(16),
    "int4 weight-only g32 asymmetric": lowbit.Int4WeightOnlyConfig(32, symmetric=False),
}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.up = nn.Linear(32, 96)
        self.down = nn.Linear(96, 16, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ReLU: exact under Inductor too (its GELU rounds differently from eager, as for any model)
        return self.down(torch.relu(self.up(self.emb(ids))))


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net().eval()


def _ids(seed: int = 1, shape: tuple[int, ...] = (3, 7)) -> torch.Tensor:
    return torch.randint(0, 50, shape, generator=torch.Generator().manual_seed(seed))


def _static_net() -> Net:
    model = _net()
    prepare(model, lowbit.Int8StaticConfig(), progress=False)
    with torch.no_grad():
        for s in range(4):
            model(_ids(10 + s))
    convert(model, progress=False)
    return model


def _quantized(name: str, embedding_bits: int = 8) -> Net:
    if name == "int8 static":
        return _static_net()
    model = _net()
    quantize_(model, CONFIGS[name], embeddings=True, embedding_bits=embedding_bits,
              progress=False)
    return model


ALL = [*CONFIGS, "int8 static"]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ALL)
def test_compile_fullgraph_export_and_trace_equal_eager(name):
    model = _quantized(name, embedding_bits=4 if "int4" in name else 8)
    ids, other = _ids(), _ids(2, (2, 5))
    with torch.no_grad():
        ref, ref_other = model(ids), model(other)
        compiled = torch.compile(model, fullgraph=True)
        assert torch.equal(compiled(ids), ref)
        assert torch.equal(compiled(other), ref_other)       # another shape: no stale result
        exported = torch.export.export(model, (ids,))
        assert torch.equal(exported.module()(ids), ref)
        traced = torch.jit.trace(model, ids)
        assert torch.equal(traced(other), ref_other)
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert f"lowbit.linear_{model.up.family}.default" in targets
    assert isinstance(model.emb, nn.Embedding) or "lowbit.embedding.default" in targets


def test_export_with_dynamic_shapes_and_save_load(tmp_path):
    model = _quantized("int8 dynamic")
    ids = _ids()
    batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=512)
    ep = torch.export.export(model, (ids,), dynamic_shapes=({0: batch, 1: seq},))
    path = tmp_path / "m.pt2"
    torch.export.save(ep, str(path))
    loaded = torch.export.load(str(path))
    with torch.no_grad():
        for shape in ((1, 1), (5, 11), (3, 7)):
            x = _ids(4, shape)
            assert torch.equal(loaded.module()(x), model(x))


def test_compile_with_inductor_equal_eager():
    # the default backend: the rest of the graph is generated code, the lowbit layers stay
    # one operator each, so their outputs are the eager ones exactly
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))
    quantize_(model, lowbit.Int8DynamicConfig(), progress=False)
    x = torch.randn(4, 9, 64)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(torch.compile(model, fullgraph=True)(x), ref)


@pytest.mark.parametrize("name", ["int8 dynamic", "int4 w4a8 g32 asymmetric", "int8 static"])
def test_deepcopy_pickle_torch_save_and_state_dict(name):
    model = _quantized(name)
    ids = _ids()
    with torch.no_grad():
        ref = model(ids)
        copies = [copy.deepcopy(model), pickle.loads(pickle.dumps(model))]
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        copies.append(torch.load(buf, weights_only=False))
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        fresh = _quantized(name)
        with torch.no_grad():   # a different model of the same format, then the checkpoint
            fresh.up.bias.add_(1.0)
        fresh.load_state_dict(torch.load(buf, weights_only=True))
        copies.append(fresh)
        for c in copies:
            assert torch.equal(c(ids), ref)
        del model   # the copies own their packed bytes
        for c in copies:
            assert torch.equal(c(ids), ref)
        assert copies[0].up._packed.data_ptr() != copies[1].up._packed.data_ptr()


def test_to_cpu_works_other_devices_refused():
    model = _quantized("int8 dynamic")
    ids = _ids()
    with torch.no_grad():
        ref = model(ids)
        assert torch.equal(model.to("cpu")(ids), ref)
        assert torch.equal(model.cpu()(ids), ref)
    for move in (lambda m: m.to("meta"), lambda m: m.to_empty(device="meta"),
                 lambda m: m.cuda(), lambda m: m.to("cuda")):
        with pytest.raises(RuntimeError, match=r"lowbit Quantized\w+ '\w+' .*runs on the CPU only"):
            move(model)
    with torch.no_grad():
        assert torch.equal(model(ids), ref)   # a refused move changes nothing
    model.share_memory()
    with torch.no_grad():
        assert torch.equal(model(ids), ref)   # new memory for the buffers, rebound


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_and_models(dtype):
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    q = QuantizedLinear.from_float(lin)
    x = torch.randn(5, 64)
    with torch.no_grad():
        # the input widened exactly, the float32 result rounded once
        assert torch.equal(q(x.to(dtype)), q(x.to(dtype).float()).to(dtype))
        compiled = torch.compile(q, fullgraph=True)
        assert torch.equal(compiled(x.to(dtype)), q(x.to(dtype)))
    # a half-precision model converted with quantize_: weights widened to float32 exactly
    half = _net().to(dtype)
    summary = quantize_(half, lowbit.Int8DynamicConfig(), embeddings=True, progress=False)
    assert sorted(summary.replaced_names) == ["down", "emb", "up"]
    ref = _net()
    ref.load_state_dict({k: v.to(dtype).float() for k, v in _net().state_dict().items()})
    quantize_(ref, lowbit.Int8DynamicConfig(), embeddings=True, progress=False)
    ids = _ids()
    with torch.no_grad():
        out = half(ids)
        assert out.dtype == dtype and half.up.weight.dtype == dtype
        assert torch.equal(half.emb(ids), ref.emb(ids).to(dtype))
        assert torch.equal(half.up(half.emb(ids)), ref.up(ref.emb(ids).to(dtype)).to(dtype))
        # and .to(dtype) after conversion: the layers keep their float32 internals
        ref.to(dtype)
        assert ref.up.bias.dtype == torch.float32 and ref.up(half.emb(ids)).dtype == dtype


def test_grad_inputs_refuse_backward_in_eager_and_compiled():
    q = QuantizedLinear.from_float(nn.Linear(16, 8))
    x = torch.randn(2, 16, requires_grad=True)
    with torch.no_grad():
        ref = q(x)
    for fn in (q, torch.compile(q, backend="eager", fullgraph=True)):
        y = fn(x)
        assert torch.equal(y.detach(), ref)
        with pytest.raises(RuntimeError, match="inference-only"):
            y.sum().backward()


def test_operators_check_their_arguments():
    q = QuantizedLinear.from_float(nn.Linear(64, 48))
    x = torch.randn(3, 64)
    packed, scale, bias, k, n, wtype = q._op_args()
    op = torch.ops.lowbit.linear_w8a8
    with torch.no_grad():
        assert torch.equal(op(x, packed, scale, bias, k, n, wtype), q(x))
        # the bias enters the kernel's fma epilogue, so without it the result differs by bias
        # up to one rounding
        assert torch.allclose(op(x, packed, scale, None, k, n, wtype), q(x) - bias, atol=1e-6)
        with pytest.raises(ValueError, match="packed must have"):
            op(x, packed[:-1], scale, bias, k, n, wtype)
        with pytest.raises(ValueError, match="packed must have"):
            op(x, packed, scale, bias, k, n + 1, wtype)
        with pytest.raises(TypeError, match="scale must be torch.float32"):
            op(x, packed, scale.double(), bias, k, n, wtype)
        with pytest.raises(ValueError, match="bias must have 48"):
            op(x, packed, scale, bias[:-1], k, n, wtype)
        with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 64\)"):
            op(x[:, :-1], packed, scale, bias, k, n, wtype)
        with pytest.raises(TypeError, match="x must be float32"):
            op(x.double(), packed, scale, bias, k, n, wtype)
        with pytest.raises(ValueError, match="NaN"):
            op(torch.full((1, 64), float("nan")), packed, scale, bias, k, n, wtype)
        q4 = QuantizedLinear.from_float(nn.Linear(64, 48), lowbit.Int4DynamicConfig(32))
        p4, b4, k4, n4, g, sym = q4._op_args()
        assert torch.equal(torch.ops.lowbit.linear_w4a8(x, p4, b4, k4, n4, g, sym), q4(x))
        with pytest.raises(ValueError, match="packed bytes"):
            torch.ops.lowbit.linear_w4a8(x, p4, b4, k4, n4, 16, sym)
        with pytest.raises(ValueError, match="packed bytes"):
            torch.ops.lowbit.linear_w4a8(x, p4[1:], b4, k4, n4, g, sym)
        emb = QuantizedEmbedding.from_float(nn.Embedding(10, 8))
        with pytest.raises(IndexError, match="out of range"):
            torch.ops.lowbit.embedding(torch.tensor([10]), emb.qweight, emb.scale, 8, 8, 0)
        with pytest.raises(ValueError, match="qweight must be"):
            torch.ops.lowbit.embedding(torch.tensor([1]), emb.qweight, emb.scale, 4, 8, 0)


def test_replaced_bias_and_strided_inputs():
    q = QuantizedLinear.from_float(nn.Linear(32, 16))
    x = torch.randn(4, 32)
    packed, scale, bias, k, n, wtype = q._op_args()
    with torch.no_grad():
        ref = q(x)
        q.bias = bias * 2              # a new tensor in the buffer: used from now on
        assert torch.equal(q(x), torch.ops.lowbit.linear_w8a8(x, packed, scale, bias * 2, k, n,
                                                              wtype))
        assert not torch.equal(q(x), ref)
        q.bias = bias.double()         # the general path says what is wrong
        with pytest.raises(TypeError, match=r"QuantizedLinear.*bias must be torch.float32"):
            q(x)
        q.bias = None
        assert torch.equal(q(x), torch.ops.lowbit.linear_w8a8(x, packed, scale, None, k, n,
                                                              wtype))
        wide = torch.randn(4, 64)[:, ::2]   # not contiguous
        assert torch.equal(q(wide), q(wide.contiguous()))


def test_numpy_layer_shares_the_packed_bytes():
    q = QuantizedLinear.from_float(nn.Linear(32, 16), lowbit.Int4WeightOnlyConfig(16))
    layer = q.numpy_layer()
    x = torch.randn(3, 32)
    with torch.no_grad():
        assert np.array_equal(layer(x.numpy()), q(x).numpy())
    assert np.shares_memory(layer.weight.storage(), q._packed.numpy())
