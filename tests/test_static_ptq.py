"""Static post-training quantization: prepare (observers on Linear inputs), calibration, convert
(frozen activation parameters), bit-exact against the documented arithmetic; clear errors."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from lowbit import Int8DynamicConfig, Int8StaticConfig  # noqa: E402
from lowbit.quant.observers import (HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver,
                                    PercentileObserver)
from lowbit.torch import ObservedLinear, QuantizedLinear, convert, prepare  # noqa: E402
from conftest import F32, assert_bits_equal, fma_f32, ref_quantize_linear  # noqa: E402


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(32, 64)
        self.b = nn.Linear(64, 16)
        self.rare = nn.Linear(64, 16)

    def forward(self, x, use_rare=False):
        h = torch.relu(self.a(x))
        return self.rare(h) if use_rare else self.b(h)


def _common(module, name):
    return name != "rare"


def _calib(n=8):
    g = torch.Generator().manual_seed(3)
    return [torch.randn(16, 32, generator=g) for _ in range(n)]


def test_prepare_observes_without_changing_outputs():
    model = Branchy()
    x = torch.randn(4, 32)
    with torch.no_grad():
        ref = model(x)
    names = set(model.state_dict())
    s = prepare(model, Int8StaticConfig())
    assert s.replaced_names == ["a", "b", "rare"]
    assert isinstance(model.a, ObservedLinear) and set(model.state_dict()) == names
    with torch.no_grad():
        assert torch.equal(model(x), ref)
    assert model.a.observer.observed and not model.rare.observer.observed


def test_convert_before_calibration_names_the_layers():
    model = Branchy()
    prepare(model, Int8StaticConfig())
    with pytest.raises(ValueError, match="'a', 'b', 'rare'"):
        convert(model)
    with torch.no_grad():
        for x in _calib():
            model(x)
    with pytest.raises(ValueError, match="calibration never reached 1 layer.*'rare'"):
        convert(model)
    assert isinstance(model.a, ObservedLinear)   # nothing converted on failure
    with torch.no_grad():
        model(_calib()[0], use_rare=True)
    convert(model)
    assert all(isinstance(m, QuantizedLinear) for m in (model.a, model.b, model.rare))


def test_convert_errors():
    with pytest.raises(ValueError, match="nothing to convert"):
        convert(Branchy())
    with pytest.raises(TypeError, match="Int8StaticConfig"):
        prepare(Branchy(), Int8DynamicConfig())
    with pytest.raises(ValueError, match="no nn.Linear"):
        prepare(nn.Sequential(nn.ReLU()), Int8StaticConfig())


def test_frozen_parameters_and_exact_arithmetic():
    """Each layer's scale/zero point are MinMaxObserver's over exactly the inputs that layer saw,
    and the converted layer computes quantize_linear -> exact integer GEMM -> float epilogue."""
    model = Branchy()
    prepare(model, Int8StaticConfig(), filter_fn=_common)
    seen: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    for name in seen:
        model.get_submodule(name).register_forward_pre_hook(
            lambda m, args, name=name: seen[name].append(args[0].numpy().copy()))
    with torch.no_grad():
        for x in _calib():
            model(x)
    convert(model)
    assert isinstance(model.rare, nn.Linear)
    for name in ("a", "b"):
        layer = model.get_submodule(name).layer
        ref = MinMaxObserver()
        ref.observe(np.concatenate(seen[name]))
        s_x, z_x = ref.calculate_qparams()
        assert layer.input_scale == s_x and layer.input_zero_point == z_x
        x = (3 * np.random.default_rng(0).standard_normal((5, layer.in_features))).astype(F32)
        q = ref_quantize_linear(x, s_x, z_x, "uint8").astype(np.int64) - int(z_x)
        qt = layer.weight.qtensor()
        acc = q @ qt.data.astype(np.int64).T
        expected = fma_f32(acc.astype(F32), (s_x * layer.weight.scale).astype(F32), layer.bias)
        with torch.no_grad():
            assert_bits_equal(model.get_submodule(name)(torch.from_numpy(x)).numpy(),
                              expected.astype(F32), name)


@pytest.mark.parametrize("observer", [MinMaxObserver(), MovingAverageMinMaxObserver(0.1),
                                      PercentileObserver(99.9), HistogramObserver(bins=512)],
                         ids=lambda o: type(o).__name__)
def test_observers_give_accurate_static_models(observer):
    model = Branchy()
    ref = Branchy()
    prepare(model, Int8StaticConfig(observer=observer), filter_fn=_common)
    with torch.no_grad():
        for x in _calib():
            model(x)
    convert(model)
    x = _calib()[0]
    with torch.no_grad():
        got, want = model(x), ref(x)
    sqnr = 10 * torch.log10((want ** 2).sum() / ((want - got) ** 2).sum())
    assert sqnr > 30, f"SQNR {sqnr:.1f} dB"


def test_weight_observer_and_int8_activations():
    model = Branchy()
    cfg = Int8StaticConfig(observer=MinMaxObserver(dtype="int8", symmetric=True),
                           weight_observer=PercentileObserver(99.5, dtype="int8", symmetric=True,
                                                              axis=0))
    prepare(model, cfg, _common)
    with torch.no_grad():
        for x in _calib(2):
            model(x)
    convert(model)
    assert model.a.layer.input_zero_point.dtype == np.int8 and model.a.layer.input_zero_point == 0
    w = Branchy().a.weight.detach().numpy()
    assert np.all(model.a.layer.weight.scale <= np.abs(w).max(axis=1) / 127)
