"""lowbit.torch drop-in layers: QuantizedLinear (every config, bit-exact against the NumPy layer,
zero-copy, grad-mode rules, bad input) and QuantizedEmbedding."""
from __future__ import annotations

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lowbit  # noqa: E402
from lowbit import (Int4DynamicConfig, Int4WeightOnlyConfig, Int8DynamicConfig,  # noqa: E402
                    Int8StaticConfig, Int8WeightOnlyConfig)
from lowbit.torch import QuantizedEmbedding, QuantizedLinear, model_nbytes  # noqa: E402
from conftest import assert_bits_equal  # noqa: E402

CONFIGS = {
    "int8": Int8DynamicConfig(), "int8_asym": Int8DynamicConfig(symmetric=False),
    "int8_wo": Int8WeightOnlyConfig(), "w4a8": Int4DynamicConfig(group_size=32),
    "int4_wo": Int4WeightOnlyConfig(group_size=32, symmetric=False),
}


def _linear(seed=0, k=96, n=40, bias=True):
    torch.manual_seed(seed)
    return torch.nn.Linear(k, n, bias=bias)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_numpy_layer_bit_exact(name):
    lin = _linear()
    q = QuantizedLinear.from_float(lin, CONFIGS[name])
    ref = lowbit.nn.QuantizedLinear.from_config(lin.weight.detach().numpy(),
                                                lin.bias.detach().numpy(), CONFIGS[name])
    for shape in [(96,), (5, 96), (2, 3, 96), (2, 1, 4, 96), (0, 96)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            y = q(x)
        assert y.dtype == torch.float32 and y.shape == shape[:-1] + (40,)
        assert_bits_equal(y.numpy(), ref(x.numpy()), f"{name} {shape}")
    with torch.no_grad():
        ref_float = lin(x := torch.randn(8, 96))
        assert torch.allclose(q(x), ref_float, atol=0.2)


def test_static_from_float():
    lin = _linear()
    q = QuantizedLinear.from_float(lin, Int8StaticConfig(),
                                   input_qparams=(np.float32(0.03), np.uint8(128)))
    assert q.scheme == "static"
    with pytest.raises(ValueError, match="calibrated"):
        QuantizedLinear.from_float(lin, Int8StaticConfig())


def test_no_grad_inference_mode_and_grad_errors():
    q = QuantizedLinear.from_float(_linear())
    x = torch.randn(3, 96)
    with torch.no_grad():
        a = q(x)
    with torch.inference_mode():
        b = q(x)
    c = q(x)   # grad mode on, but x does not require grad: fine
    assert torch.equal(a, b) and torch.equal(a, c) and not c.requires_grad
    xg = torch.randn(3, 96, requires_grad=True)
    y = q(xg)   # recorded by autograd: same values, and a backward that refuses
    assert torch.equal(y, q(xg.detach())) and y.requires_grad
    with pytest.raises(RuntimeError, match=r"lowbit QuantizedLinear\(in_features=96, "
                                           r"out_features=40.*inference-only.*prepare_qat"):
        y.sum().backward()
    with torch.no_grad():
        assert torch.equal(q(xg.detach()), q(xg))


@pytest.mark.parametrize("name", list(CONFIGS) + ["static"])
def test_plain_call_after_a_float_layer(name):
    """A float LayerNorm before the layer makes its input require grad in a plain eval-mode call
    (no torch.no_grad()): the call works and matches no_grad; only backward() fails."""
    torch.manual_seed(1)
    lin = _linear()
    q = (QuantizedLinear.from_float(lin, Int8StaticConfig(),
                                    input_qparams=(np.float32(0.03), np.uint8(128)))
         if name == "static" else QuantizedLinear.from_float(lin, CONFIGS[name]))
    model = torch.nn.Sequential(torch.nn.LayerNorm(96), q, torch.nn.ReLU()).eval()
    x = torch.randn(2, 5, 96)
    y = model(x)
    with torch.no_grad():
        expected = model(x)
    with torch.inference_mode():
        assert torch.equal(model(x), expected)
    assert_bits_equal(y.detach().numpy(), expected.numpy())
    assert y.requires_grad
    with pytest.raises(RuntimeError, match="inference-only.*no gradient.*prepare_qat"):
        y.sum().backward()
    assert model[0].weight.grad is None   # nothing half-computed


def test_bad_inputs():
    q = QuantizedLinear.from_float(_linear())
    with pytest.raises(TypeError, match="float32, bfloat16 or float16.*float64"):
        q(torch.randn(2, 96, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32, bfloat16 or float16.*int32"):
        q(torch.ones(2, 96, dtype=torch.int32))
    with pytest.raises(ValueError, match="CPU"):
        q(torch.empty(2, 96, device="meta"))
    with pytest.raises(ValueError, match=r"\(\.\.\., 96\)"):
        q(torch.randn(2, 95))
    with pytest.raises(TypeError):
        q(np.ones((2, 96), np.float32))
    with pytest.raises(TypeError, match="weight dtype"):
        QuantizedLinear.from_float(_linear().double())
    with pytest.raises(TypeError, match="nn.Linear"):
        QuantizedLinear.from_float(torch.nn.Conv1d(3, 3, 1))
    bad = _linear()
    with torch.no_grad():
        bad.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        QuantizedLinear.from_float(bad)


def test_no_numpy_round_trip(monkeypatch):
    # the kernels read the input tensor's memory and write the output tensor's: no NumPy view
    # of either is made on a call (eager or through the operator)
    q = QuantizedLinear.from_float(_linear())
    x = torch.randn(4, 96)
    with torch.inference_mode():
        ref = q(x)

    def refuse(*args, **kwargs):
        raise AssertionError("a layer call went through NumPy")
    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    monkeypatch.setattr(torch, "from_numpy", refuse)
    with torch.inference_mode():
        assert torch.equal(q(x), ref)
        assert torch.equal(torch.ops.lowbit.linear_w8a8(x, *q._op_args()), ref)
        xt = torch.randn(96, 4).t()                      # a strided view is made contiguous
        assert torch.equal(q(xt), q(xt.contiguous()))
        assert torch.equal(q(x.view(2, 2, 96)), ref.view(2, 2, 40))   # any leading shape


def test_no_bias_and_repr():
    q = QuantizedLinear.from_float(_linear(bias=False), Int4DynamicConfig(32))
    assert q.bias is None
    assert "bits=4" in repr(q) and "mode=w4a8" in repr(q)
    with torch.no_grad():
        assert q(torch.randn(2, 96)).shape == (2, 40)


def test_nbytes_and_model_nbytes():
    lin = _linear(k=256, n=128)
    q8 = QuantizedLinear.from_float(lin)
    q4 = QuantizedLinear.from_float(lin, Int4DynamicConfig(128))
    float_bytes = (256 * 128 + 128) * 4
    assert model_nbytes(lin) == float_bytes
    assert model_nbytes(q8) == q8.nbytes and q8.nbytes < float_bytes / 3.5
    assert q4.nbytes < 0.6 * q8.nbytes


def test_deepcopy_pickle_and_state_dict_of_converted_model():
    model = torch.nn.Sequential(_linear(), torch.nn.ReLU(), _linear(1, 40, 8))
    lowbit.torch.quantize_(model, Int8DynamicConfig())
    x = torch.randn(3, 96)
    with torch.no_grad():
        y = model(x)
        assert torch.equal(copy.deepcopy(model)(x), y)
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        assert torch.equal(torch.load(buf, weights_only=False)(x), y)
    # the packed weights appear as their canonical tensors (what lowbit.save writes), plus
    # each layer's format (bits, scheme, mode, group size) as JSON bytes
    assert list(model.state_dict()) == ["0.qweight", "0.scale", "0.zero_point", "0.bias",
                                        "0.format", "2.qweight", "2.scale", "2.zero_point",
                                        "2.bias", "2.format"]


# ---- state_dict / load_state_dict ------------------------------------------------------------
STATE_CASES = list(CONFIGS) + ["static", "embeddings"]


def _state_model(case, seed):
    """LayerNorm -> Linear -> ReLU -> Linear (and an embedding in front for "embeddings"),
    converted as `case` says; another seed gives other weights (and other calibration data)."""
    torch.manual_seed(seed)
    layers = [torch.nn.LayerNorm(96), torch.nn.Linear(96, 64), torch.nn.ReLU(),
              torch.nn.Linear(64, 40)]
    if case == "embeddings":
        layers.insert(0, torch.nn.Embedding(30, 96))
    model = torch.nn.Sequential(*layers).eval()
    if case == "static":
        lowbit.torch.prepare(model, Int8StaticConfig())
        with torch.no_grad():
            model(torch.randn(16, 96) * (1 + seed))
        lowbit.torch.convert(model)
    elif case == "embeddings":
        lowbit.torch.quantize_(model, Int4DynamicConfig(32), embeddings=True, embedding_bits=4,
                               embedding_group_size=32)
    else:
        lowbit.torch.quantize_(model, CONFIGS[case])
    return model


def _state_input(case):
    g = torch.Generator().manual_seed(5)
    if case == "embeddings":
        return torch.randint(0, 30, (3, 7), generator=g)
    return torch.randn(3, 7, 96, generator=g)


@pytest.mark.parametrize("case", STATE_CASES)
def test_state_dict_round_trip_bit_exact(case):
    model = _state_model(case, 0)
    x = _state_input(case)
    with torch.no_grad():
        expected = model(x)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)   # plain tensors: no pickled lowbit objects
    fresh = _state_model(case, 1)
    with torch.no_grad():
        assert not torch.equal(fresh(x), expected)
    assert fresh.load_state_dict(state) is not None   # strict: every key matched
    with torch.no_grad():
        assert_bits_equal(fresh(x).numpy(), expected.numpy(), case)
    again = fresh.state_dict()
    assert list(again) == list(state)
    for key, value in state.items():
        assert again[key].dtype == value.dtype and torch.equal(again[key], value), key
    if case == "static":
        assert {"1.input_scale", "1.input_zero_point"} <= set(state)
        assert state["1.input_scale"].shape == ()


def test_state_dict_tensors_are_copies():
    model = _state_model("int8_wo", 0)   # a weight-only layer keeps its int8 weight as is
    x = _state_input("int8_wo")
    with torch.no_grad():
        expected = model(x)
    state = model.state_dict()
    state["1.qweight"].zero_()
    state["1.scale"].fill_(7.0)
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_load_state_dict_mismatch_names_the_key_and_changes_nothing():
    model = _state_model("w4a8", 0)
    before = {k: v.clone() for k, v in model[1].state_dict().items()}
    wider = torch.nn.Sequential(torch.nn.LayerNorm(96), torch.nn.Linear(96, 72),
                                torch.nn.ReLU(), torch.nn.Linear(72, 40))
    lowbit.torch.quantize_(wider, Int4DynamicConfig(32))
    with pytest.raises(RuntimeError, match=r"size or dtype mismatch for 1\.qweight: the "
                                           r"checkpoint has uint8 \(72, 48\).*stores uint8 "
                                           r"\(64, 48\)"):
        model.load_state_dict(wider.state_dict())
    int8 = _state_model("int8", 1)
    with pytest.raises(RuntimeError, match=r"1\.qweight: the checkpoint has int8 \(64, 96\)"
                                           r".*bits=4.*int4 values, two per byte"):
        model.load_state_dict(int8.state_dict())
    other_groups = torch.nn.Sequential(torch.nn.LayerNorm(96), torch.nn.Linear(96, 64),
                                       torch.nn.ReLU(), torch.nn.Linear(64, 40))
    lowbit.torch.quantize_(other_groups, Int4DynamicConfig(96))
    with pytest.raises(RuntimeError, match=r"1\.scale.*\(64, 1\).*\(64, 3\).*group of 32"):
        model.load_state_dict(other_groups.state_dict())
    partial = {k: v for k, v in _state_model("w4a8", 1).state_dict().items()
               if k != "1.scale"}
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*\"1\.scale\""):
        model.load_state_dict(partial)
    with pytest.raises(RuntimeError, match="weight can only be replaced as a whole"):
        model.load_state_dict(partial, strict=False)
    bad_zero = _state_model("w4a8", 1).state_dict()
    bad_zero["1.zero_point"].fill_(100)
    with pytest.raises(RuntimeError, match="cannot take this state.*zero points outside"):
        model.load_state_dict(bad_zero)
    dynamic = _state_model("int8", 1).state_dict()
    static = _state_model("static", 0)
    # the layers' formats (recorded in each state_dict) differ before any key does
    with pytest.raises(RuntimeError, match=r"format mismatch for 1\.format.*scheme: "
                                           r"checkpoint 'dynamic', layer 'static'"):
        static.load_state_dict(dynamic)
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*1\.input_scale"):
        static.load_state_dict({k: v for k, v in dynamic.items() if not k.endswith("format")})
    with pytest.raises(RuntimeError, match=r"format mismatch for 1\.format.*scheme: "
                                           r"checkpoint 'static', layer 'dynamic'"):
        _state_model("int8", 0).load_state_dict(static.state_dict())
    # a failed load may fill the other modules (nn.Module's rule), but not this layer by halves
    after = model[1].state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_embedding_load_state_dict_checks_the_table():
    emb = QuantizedEmbedding.from_float(torch.nn.Embedding(30, 16), bits=8)
    good = QuantizedEmbedding.from_float(torch.nn.Embedding(30, 16), bits=8).state_dict()
    idx = torch.arange(30)
    before = emb(idx)
    wide = dict(good, qweight=good["qweight"].to(torch.int64))   # would wrap silently
    with pytest.raises(RuntimeError, match=r"QuantizedEmbedding\(30, 16, bits=8\) cannot take "
                                           r"qweight / scale.*int8.*got int64"):
        emb.load_state_dict(wide)
    zero = dict(good, scale=torch.zeros_like(good["scale"]))
    with pytest.raises(RuntimeError, match="scales must be finite and > 0"):
        emb.load_state_dict(zero)
    four = QuantizedEmbedding.from_float(torch.nn.Embedding(30, 16), bits=4).state_dict()
    with pytest.raises(RuntimeError, match="8-bit table must be int8 with shape"):
        emb.load_state_dict(four)
    assert torch.equal(emb(idx), before)
    expected = lowbit.nn.QuantizedEmbedding(good["qweight"].numpy(), good["scale"].numpy(), 8,
                                            16)(idx.numpy())
    assert not np.array_equal(before.numpy(), expected)
    emb.load_state_dict(good, assign=True)   # assign replaces the buffers: the lookup follows
    assert_bits_equal(emb(idx).numpy(), expected)
    emb.load_state_dict({k: v.clone() for k, v in good.items()})   # copied into the buffers
    assert_bits_equal(emb(idx).numpy(), expected)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_embedding(bits):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(100, 32, padding_idx=0)
    q = QuantizedEmbedding.from_float(emb, bits=bits)
    ref = lowbit.nn.QuantizedEmbedding.from_float(emb.weight.detach().numpy(), bits=bits)
    for dtype in (torch.int64, torch.int32):
        idx = torch.randint(0, 100, (4, 9), dtype=dtype)
        out = q(idx)
        assert out.shape == (4, 9, 32) and out.dtype == torch.float32
        assert_bits_equal(out.numpy(), ref(idx.numpy()))
    assert q.padding_idx == 0
    assert model_nbytes(q) == q.nbytes == 100 * 32 * bits // 8 + 100 * 4
    assert torch.equal(q(torch.tensor([0])), torch.zeros(1, 32))   # the zero padding row
    cos = torch.nn.functional.cosine_similarity(q(torch.arange(1, 100)), emb.weight[1:], dim=1)
    assert cos.min() > (0.999 if bits == 8 else 0.98)
    with pytest.raises(IndexError):
        q(torch.tensor([100]))
    with pytest.raises(TypeError):
        q(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="max_norm"):
        QuantizedEmbedding.from_float(torch.nn.Embedding(4, 4, max_norm=1.0))
