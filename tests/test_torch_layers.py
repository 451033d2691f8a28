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
    with pytest.raises(TypeError, match="float32"):
        q(torch.randn(2, 96, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32"):
        q(torch.randn(2, 96).half())
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


def test_zero_copy_in_and_out(monkeypatch):
    q = QuantizedLinear.from_float(_linear())
    seen = {}
    real = q.layer.compute

    def spy(x, bias):
        seen["x"] = x
        seen["y"] = real(x, bias)
        return seen["y"]
    monkeypatch.setattr(q.layer, "compute", spy)
    x = torch.randn(4, 96)
    with torch.inference_mode():
        y = q(x)
    assert np.shares_memory(seen["x"], x.numpy())            # the input is viewed, not copied
    assert y.data_ptr() == seen["y"].ctypes.data             # the output array becomes y
    with torch.no_grad():                                    # a strided view is made contiguous
        xt = torch.randn(96, 4).t()
        assert torch.equal(q(xt), q(xt.contiguous()))


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
    assert set(model.state_dict()) == {"0.bias", "2.bias"}   # packed weights: lowbit.save


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
