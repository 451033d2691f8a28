"""channels_last input to lowbit.torch's conv layers: the kernels read the NHWC floats and write
NHWC rows as they are, so the output is channels_last (as torch's own conv gives) and the same
bits as for the contiguous input, on every path and thread count, dynamic and static, for
every geometry (GEMM, 1x1 direct, grouped, depthwise with and without a multiplier), through
an integer chain (which keeps the layout), torch.compile and half-precision inputs; contiguous
inputs keep contiguous outputs."""
import numpy as np
import pytest

import lowbit
from conftest import assert_bits_equal, importorskip

torch = importorskip("torch")
import lowbit.torch as lt  # noqa: E402
from torch import nn  # noqa: E402

CL = torch.channels_last

GEOMETRIES = {
    "3x3 pad": lambda: nn.Conv2d(5, 12, 3, padding=1),
    "1x1": lambda: nn.Conv2d(16, 24, 1),
    "strided dilated": lambda: nn.Conv2d(6, 8, 3, stride=2, dilation=2, padding=2),
    "grouped": lambda: nn.Conv2d(12, 18, 3, groups=3),
    "depthwise": lambda: nn.Conv2d(16, 16, 3, padding=1, groups=16),
    "depthwise x2": lambda: nn.Conv2d(5, 10, 3, groups=5),
}
CONFIGS = {"dynamic": lowbit.Int8DynamicConfig(), "static": lowbit.Int8StaticConfig(),
           "dynamic asymmetric": lowbit.Int8DynamicConfig(symmetric=False)}


def _quantized(conv, config, x):
    model = conv if isinstance(conv, nn.Sequential) else nn.Sequential(conv, nn.ReLU())
    if isinstance(config, lowbit.Int8StaticConfig):
        lt.prepare(model, config)
        with torch.no_grad():
            model(x)
        lt.convert(model)
    else:
        lt.quantize_(model, config)
    return model


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("threads", [1, 2])
def test_channels_last_same_bits(isa, rng, geometry, config, threads):
    torch.manual_seed(len(geometry))
    conv = GEOMETRIES[geometry]()
    x = torch.from_numpy(rng.standard_normal((3, conv.in_channels, 13, 11)).astype(np.float32))
    model = _quantized(conv, CONFIGS[config], x)
    lowbit.set_num_threads(threads)
    xc = x.contiguous(memory_format=CL)
    with torch.no_grad():
        y = model(x)
        yc = model(xc)
    assert y.is_contiguous()
    assert yc.is_contiguous(memory_format=CL) and not yc.is_contiguous()
    assert_bits_equal(yc.contiguous().numpy(), y.numpy())
    assert torch.equal(xc, x)   # the input is not modified


def test_half_precision_and_compile(rng):
    conv = nn.Conv2d(8, 16, 3, padding=1)
    x = torch.from_numpy(rng.standard_normal((2, 8, 9, 9)).astype(np.float32))
    model = _quantized(conv, lowbit.Int8DynamicConfig(), x)
    xc = x.contiguous(memory_format=CL)
    with torch.no_grad():
        for dtype in (torch.bfloat16, torch.float16):
            y, yc = model(x.to(dtype)), model(xc.to(dtype))
            assert yc.dtype == dtype and yc.is_contiguous(memory_format=CL)
            assert torch.equal(yc, y)
        compiled = torch.compile(model, fullgraph=True)
        yc = compiled(xc)
        assert yc.is_contiguous(memory_format=CL)
        assert torch.equal(yc, model(x))


def test_a_chain_fed_channels_last(isa, rng):
    """A chain fed channels_last keeps that layout: the first layer reads the floats in place,
    hands (N, H, W, C) uint8 rows on, and the last returns channels_last floats; the same bits
    as for the contiguous input, eager and compiled."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 12, 3, groups=12),
                          nn.ReLU6(), nn.Conv2d(12, 8, 1), nn.MaxPool2d(2))
    x = torch.from_numpy(rng.standard_normal((2, 3, 15, 14)).astype(np.float32))
    lt.prepare(model, lowbit.Int8StaticConfig())
    with torch.no_grad():
        model(x)
    summary = lt.convert(model)
    assert sum("uint8 to" in r.note for r in summary.replaced) == 2
    xc = x.contiguous(memory_format=CL)
    with torch.no_grad():
        y = model(x)
        yc = model(xc)
        mid, mid_c = model[0](x), model[0](xc)
        compiled = torch.compile(model, fullgraph=True)(xc)
    assert y.is_contiguous()
    assert mid.shape == (2, 12, 15, 14) and mid_c.shape == (2, 15, 14, 12)
    assert torch.equal(mid.permute(0, 2, 3, 1), mid_c)
    assert yc.is_contiguous(memory_format=CL) and not yc.is_contiguous()
    assert_bits_equal(yc.contiguous().numpy(), y.numpy())
    assert compiled.is_contiguous(memory_format=CL)
    assert_bits_equal(compiled.contiguous().numpy(), y.numpy())


@pytest.mark.parametrize("shape", [(2, 1, 5, 5), (2, 4, 1, 1), (2, 4, 5, 5)])
def test_output_layout_is_torchs(rng, shape):
    """The output's memory format is the one nn.Conv2d gives for the same input (a size-1
    channel or spatial extent makes an input both contiguous and channels_last: contiguous
    out)."""
    conv = nn.Conv2d(shape[1], 3, 1)
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    model = _quantized(conv, lowbit.Int8DynamicConfig(), x)
    with torch.no_grad():
        for xi in (x, x.contiguous(memory_format=CL)):
            want, got = conv(xi), model(xi)
            assert got.stride() == want.stride(), (xi.stride(), got.stride(), want.stride())


def test_conv1d_on_a_transposed_input(rng):
    """A (N, C, L) view with channel stride 1 is read as it is, as any strided input."""
    conv = nn.Conv1d(6, 4, 3)
    x = torch.from_numpy(rng.standard_normal((2, 9, 6)).astype(np.float32)).transpose(1, 2)
    model = _quantized(conv, lowbit.Int8DynamicConfig(), x.contiguous())
    with torch.no_grad():
        assert torch.equal(model(x), model(x.contiguous()))


def test_a_channels_last_model(rng):
    """A conv converted from a channels_last weight returns channels_last for any input, as
    nn.Conv2d does; .to(memory_format=...) on the converted model sets or clears that, a
    dtype or copy conversion leaves it; the bits never change."""
    conv = nn.Conv2d(1, 8, 3, padding=1)
    x = torch.from_numpy(rng.standard_normal((4, 1, 8, 8)).astype(np.float32))
    plain = _quantized(conv, lowbit.Int8DynamicConfig(), x)
    with torch.no_grad():
        want = plain(x)
    float_cl = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()).to(memory_format=CL)
    float_cl[0].load_state_dict(conv.state_dict())
    lt.quantize_(float_cl, lowbit.Int8DynamicConfig())
    layer = float_cl[0]
    assert layer.channels_last and "channels_last=True" in repr(layer)
    with torch.no_grad():
        assert float_cl(x).stride() == conv(x.contiguous()).to(memory_format=CL).stride()
        assert_bits_equal(float_cl(x).contiguous().numpy(), want.numpy())
        compiled = torch.compile(float_cl, fullgraph=True)(x)
        assert compiled.is_contiguous(memory_format=CL)
        assert torch.equal(compiled, want)
    float_cl.to(torch.bfloat16)
    assert layer.channels_last
    float_cl.to(memory_format=torch.contiguous_format)
    assert not layer.channels_last
    with torch.no_grad():
        assert float_cl(x).is_contiguous()
    plain.to(memory_format=CL)
    assert plain[0].channels_last
    with torch.no_grad():
        y = plain(x)
    assert y.is_contiguous(memory_format=CL) and torch.equal(y, want)


def test_load_takes_the_models_layout(rng, tmp_path):
    """lowbit.load into a channels_last float model gives channels_last layers, into a
    contiguous one contiguous layers (the file holds no layout: the values are the same)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    x = torch.from_numpy(rng.standard_normal((2, 3, 7, 7)).astype(np.float32))
    quantized = _quantized(model, lowbit.Int8DynamicConfig(), x)
    path = tmp_path / "m.lowbit"
    lowbit.save(quantized, path)
    skeleton = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    loaded = lowbit.load(path, skeleton.to(memory_format=CL))
    loaded_plain = lowbit.load(path, nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    with torch.no_grad():
        y, y_cl, y_plain = quantized(x), loaded(x), loaded_plain(x)
    assert y_cl.is_contiguous(memory_format=CL) and y_plain.is_contiguous()
    assert torch.equal(y_cl, y) and torch.equal(y_plain, y)


def test_channels_last_must_be_a_bool(rng):
    conv = nn.Conv2d(2, 3, 1)
    layer = lt.QuantizedConv2d.from_float(conv)
    with pytest.raises(TypeError, match="channels_last must be True or False"):
        lt.QuantizedConv2d(layer.numpy_layer(), channels_last="yes")
