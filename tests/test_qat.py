"""QAT: fake quantization equals lowbit's quantizers value for value, straight-through and LSQ
gradients match a reference, convert builds the PTQ layers, and QAT on scikit-learn's digits
recovers the accuracy 4-bit post-training quantization loses."""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
from lowbit import (Int4DynamicConfig, Int4WeightOnlyConfig, Int8DynamicConfig,  # noqa: E402
                    Int8StaticConfig, Int8WeightOnlyConfig)
from lowbit.quant.observers import (HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver,
                                    PercentileObserver)
from lowbit.torch import (FakeQuantLinear, QuantizedLinear, convert, prepare,  # noqa: E402
                          prepare_qat, quantize_)
from lowbit.torch.fake_quant import (FakeQuantize, fake_quantize_rows_dynamic,  # noqa: E402
                                     fake_quantize_rows_symmetric)
from conftest import F32, assert_bits_equal, bench_module, ref_dynamic_quantize_linear  # noqa: E402

CONFIGS = {
    "int8": Int8DynamicConfig(), "int8_asym": Int8DynamicConfig(symmetric=False),
    "int8_wo": Int8WeightOnlyConfig(), "w4a8": Int4DynamicConfig(group_size=32),
    "w4a8_asym": Int4DynamicConfig(group_size=32, symmetric=False),
    "int4_wo": Int4WeightOnlyConfig(group_size=64),
}
# Static configs, weight observers included: QAT must round weights exactly as PTQ does.
STATIC_CONFIGS = {
    "static": Int8StaticConfig(),
    "static_asym": Int8StaticConfig(symmetric=False),
    # clips each row: values beyond the percentile saturate at -128 / 127
    "static_w_percentile": Int8StaticConfig(
        weight_observer=PercentileObserver(95.0, dtype="int8", symmetric=True, axis=0)),
    "static_w_uint8": Int8StaticConfig(weight_observer=MinMaxObserver(dtype="uint8", axis=0)),
    "static_w_per_tensor": Int8StaticConfig(
        observer=MinMaxObserver(dtype="int8", symmetric=True),
        weight_observer=HistogramObserver(bins=256, dtype="int8", symmetric=True)),
}
ALL_CONFIGS = CONFIGS | STATIC_CONFIGS


# ---- the fake quantizer's gradients against a reference ---------------------------------------
def test_straight_through_gradient_reference():
    """dy/dx = 1 where round(x/s) + z lies in [qmin, qmax], 0 where it is clamped; dy/ds (LSQ) =
    round(x/s) - x/s inside, q - z outside, summed per scale and times the grad scale."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 50, generator=g) * 3).requires_grad_()
    scale = torch.tensor([[0.02], [0.05], [0.1], [0.2], [0.5], [1.0]]).requires_grad_()
    zero = torch.full((6, 1), 3.0)
    qmin, qmax, gs = -8, 7, 0.25
    y = FakeQuantize.apply(x, scale, zero, qmin, qmax, gs)
    upstream = torch.randn(6, 50, generator=g)
    y.backward(upstream)
    xn, sn, zn, un = (t.detach().numpy().astype(np.float64) for t in (x, scale, zero, upstream))
    v = xn.astype(F32) / sn.astype(F32)
    r = np.rint(v)
    inside = (r + zn >= qmin) & (r + zn <= qmax)
    q = np.clip(r + zn, qmin, qmax)
    np.testing.assert_array_equal(y.detach().numpy(), ((q - zn) * sn).astype(F32))
    np.testing.assert_array_equal(x.grad.numpy(), np.where(inside, un, 0).astype(F32))
    ds = np.where(inside, r - v, q - zn)
    np.testing.assert_allclose(scale.grad.numpy(), (un * ds).sum(axis=1, keepdims=True) * gs,
                               rtol=1e-5, atol=1e-6)
    assert 0 < inside.mean() < 1   # both regions were exercised


def test_gradcheck_inside_the_range():
    """Away from rounding steps and clamp edges, the STE gradient w.r.t. x is the identity."""
    x = torch.linspace(-1, 1, 21, dtype=torch.float64).requires_grad_()
    s = torch.tensor(0.1, dtype=torch.float64)
    y = FakeQuantize.apply(x, s, torch.tensor(0.0, dtype=torch.float64), -127, 127, 1.0)
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(gx, torch.ones_like(x))


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_fake_weight_equals_packed_weight(name):
    cfg = ALL_CONFIGS[name]
    torch.manual_seed(1)
    lin = nn.Linear(100, 24)
    model = nn.Sequential(copy.deepcopy(lin))
    prepare_qat(model, cfg)
    fq = model[0]
    assert isinstance(fq, FakeQuantLinear)
    static = isinstance(cfg, Int8StaticConfig)
    ref = lowbit.nn.QuantizedLinear.from_config(
        lin.weight.detach().numpy(), lin.bias.detach().numpy(), cfg,
        input_qparams=(np.float32(0.05), np.uint8(128)) if static else None)
    with torch.no_grad():
        assert_bits_equal(fq.fake_weight().numpy(), ref.dequantized_weight())
    if name == "static_w_percentile":   # the clipped values saturate at the type's ends
        assert ref.weight.qtensor().data.min() == -128


def test_fake_activations_equal_the_kernels_quantizers():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 33, generator=g) * torch.linspace(0.1, 5, 7).reshape(7, 1)
    x[3] = 0
    x[4] = x[4].abs() + 1   # an all-positive row: the range still includes 0
    got = fake_quantize_rows_dynamic(x).numpy()
    for i, row in enumerate(x.numpy()):
        q, s, z = ref_dynamic_quantize_linear(row)
        assert_bits_equal(got[i], ((q.astype(F32) - F32(z)) * s).astype(F32), f"row {i}")
    got = fake_quantize_rows_symmetric(x).numpy()
    for i, row in enumerate(x.numpy()):
        s = F32(np.abs(row).max() / F32(127)) or F32(1)
        q = np.clip(np.rint(row / s), -127, 127)
        assert_bits_equal(got[i], (q.astype(F32) * s).astype(F32), f"row {i}")


def _weight(layer):
    w = layer.weight
    return w if isinstance(w, lowbit.QTensor) else w.qtensor()


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_convert_after_prepare_qat_is_ptq(name):
    """Without training, QAT's convert builds exactly the layers PTQ builds (quantize_, or
    prepare/calibrate/convert for static configs): the same weights, by the same rule
    (QuantConfig.quantize_weight), weight observers included. A static layer's activation
    parameters come from its own observer, which in QAT sees the fake-quantized network's
    activations; only the first layer sees the same inputs as PTQ's calibration, so only there
    must they (and the layer's outputs) be identical too."""
    cfg = ALL_CONFIGS[name]
    static = isinstance(cfg, Int8StaticConfig)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    ptq, qat = copy.deepcopy(model), copy.deepcopy(model)
    x = torch.randn(9, 64)
    if static:
        prepare(ptq, cfg)
        with torch.no_grad():
            ptq(x)
        convert(ptq)
    else:
        quantize_(ptq, cfg)
    prepare_qat(qat, cfg)
    if static:
        qat.train()   # the activation observers learn from training batches
        with torch.no_grad():
            qat(x)
        qat.eval()
    with torch.no_grad():
        simulated = qat(x)
    s = convert(qat)
    assert s.replaced_names == ["0", "2"]
    assert all(isinstance(m, QuantizedLinear) for m in (qat[0], qat[2]))
    for i in (0, 2):
        a, b = qat[i].layer, ptq[i].layer
        wa, wb = _weight(a), _weight(b)
        assert a.scheme == b.scheme and wa.dtype == wb.dtype, i
        for field in ("data", "scale", "zero_point"):
            np.testing.assert_array_equal(getattr(wa, field), getattr(wb, field), f"{i} {field}")
        np.testing.assert_array_equal(a.bias, b.bias)
    with torch.no_grad():
        if static:
            first, ref = qat[0].layer, ptq[0].layer
            assert (first.input_scale, first.input_zero_point) == (ref.input_scale,
                                                                   ref.input_zero_point)
            assert first.input_zero_point.dtype == ref.input_zero_point.dtype
            assert torch.equal(qat[0](x), ptq[0](x))
        else:
            assert torch.equal(qat(x), ptq(x))
        assert torch.allclose(simulated, qat(x), atol=1e-4)


def test_static_qat_and_learnable_scales():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    cfg = Int8StaticConfig(observer=MovingAverageMinMaxObserver(0.1))
    prepare_qat(model, cfg, learnable_scales=True)
    params = [p for n, p in model.named_parameters() if "scale" in n]
    assert len(params) == 4   # a weight scale and an activation scale per layer
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, target = torch.randn(64, 32), torch.randn(64, 4)
    model.train()
    for _ in range(20):
        loss = ((model(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, params))
    model.eval()
    with torch.no_grad():
        simulated = model(x)
    convert(model)
    assert model[0].scheme == "static"
    assert model[0].layer.input_scale == np.float32(params[1].item())   # the learned scale
    with torch.no_grad():
        assert torch.allclose(model(x), simulated, atol=1e-4)
    with pytest.raises(ValueError, match="symmetric"):
        prepare_qat(nn.Sequential(nn.Linear(8, 8)), Int8DynamicConfig(symmetric=False),
                    learnable_scales=True)


def test_learnable_scales_start_from_ptqs_rule():
    cfg = STATIC_CONFIGS["static_w_percentile"]
    torch.manual_seed(5)
    lin = nn.Linear(40, 8)
    model = nn.Sequential(copy.deepcopy(lin))
    prepare_qat(model, cfg, learnable_scales=True)
    ref = lowbit.nn.QuantizedLinear.from_config(lin.weight.detach().numpy(), None, cfg,
                                                input_qparams=(np.float32(0.05), np.uint8(128)))
    np.testing.assert_array_equal(model[0].weight_scale.detach().numpy().reshape(-1),
                                  ref.weight.scale)
    with pytest.raises(ValueError, match="symmetric"):   # the uint8 observer's zero points
        prepare_qat(nn.Sequential(nn.Linear(8, 8)), STATIC_CONFIGS["static_w_uint8"],
                    learnable_scales=True)


def test_static_qat_needs_a_training_batch():
    model = nn.Sequential(nn.Linear(8, 8))
    prepare_qat(model, Int8StaticConfig())
    model.eval()
    with pytest.raises(ValueError, match="no data"):
        model(torch.randn(2, 8))
    with pytest.raises(ValueError, match="layer '0'"):
        convert(model)


def test_prepare_qat_skips_and_errors():
    model = nn.Sequential(nn.Linear(64, 63), nn.Linear(63, 4))
    s = prepare_qat(model, Int4DynamicConfig(group_size=128))
    assert s.skipped_names == ["1"] and "odd" in s.reason("1")
    assert "group_size 128 > in_features 64" in s.replaced[0].note
    with pytest.raises(ValueError, match="no nn.Linear"):
        prepare_qat(nn.Sequential(nn.ReLU()), Int8DynamicConfig())
    with pytest.raises(TypeError, match="'0'.*float64"):
        prepare_qat(nn.Sequential(nn.Linear(4, 4).double()), Int8DynamicConfig())


# ---- the digits experiment (bench/qat_digits.py, which writes docs/qat.md) -------------------
SEEDS = (0, 1, 2)


def test_qat_recovers_int4_accuracy_on_digits():
    pytest.importorskip("sklearn")
    digits = bench_module("qat_digits")
    rows = digits.run(SEEDS)
    print("\n" + "\n".join(digits.table(rows)))
    mean = {k: digits.mean(rows, k) for k in ("float", "ptq", "qat_fake", "qat_converted")}
    loss = mean["float"] - mean["ptq"]
    assert loss >= 0.004, f"int4 PTQ should lose accuracy here: {mean}"
    assert mean["qat_converted"] >= mean["ptq"] + 0.5 * loss, f"QAT should recover most: {mean}"
    for r in rows:
        assert abs(r.qat_converted - r.qat_fake) <= 0.004 and r.agreement >= 0.99, r
