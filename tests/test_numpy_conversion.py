"""Configs and conversion without PyTorch: QuantizedLinear.from_config for every config (bit-exact
against the primitives it is built from), quantize_weights, and the NumPy QuantizedEmbedding."""
from __future__ import annotations

import copy
import dataclasses
import pickle

import numpy as np
import pytest

import lowbit
from lowbit import (Int4DynamicConfig, Int4WeightOnlyConfig, Int8DynamicConfig,
                    Int8StaticConfig, Int8WeightOnlyConfig)
from lowbit.nn import QuantizedEmbedding, QuantizedLinear
from lowbit.quant.observers import MinMaxObserver, PercentileObserver
from conftest import F32, assert_bits_equal, fma_f32, ref_quantize_linear


def _layer(rng, n=40, k=96):
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(F32)
    b = rng.standard_normal(n).astype(F32)
    return w, b


def _x(rng, shape):
    return rng.standard_normal(shape).astype(F32)


@pytest.mark.parametrize("symmetric", [True, False])
def test_from_config_int8_dynamic_is_pack_weight(rng, symmetric):
    w, b = _layer(rng)
    layer = QuantizedLinear.from_config(w, b, Int8DynamicConfig(symmetric=symmetric))
    assert layer.scheme == "dynamic" and layer.bits == 8
    x = _x(rng, (2, 3, 96))
    assert_bits_equal(layer(x), lowbit.linear(x, lowbit.pack_weight(w, symmetric=symmetric), b))


@pytest.mark.parametrize("cfg_cls,mode", [(Int4DynamicConfig, "w4a8"),
                                          (Int4WeightOnlyConfig, "weight_only")])
@pytest.mark.parametrize("symmetric", [True, False])
def test_from_config_int4_is_pack_weight(rng, cfg_cls, mode, symmetric):
    w, b = _layer(rng, k=100)   # a short last group of 4
    layer = QuantizedLinear.from_config(w, b, cfg_cls(group_size=32, symmetric=symmetric))
    assert layer.weight.mode == mode and layer.weight.group_size == 32
    x = _x(rng, (5, 100))
    ref = lowbit.pack_weight(w, bits=4, group_size=32, symmetric=symmetric, mode=mode)
    assert_bits_equal(layer(x), lowbit.linear(x, ref, b))


def test_int4_group_larger_than_in_features_uses_one_group(rng):
    w, b = _layer(rng, k=64)
    layer = QuantizedLinear.from_config(w, b, Int4DynamicConfig(group_size=128))
    assert layer.weight.group_size == 64
    with pytest.raises(ValueError, match="odd"):
        QuantizedLinear.from_config(_layer(rng, k=63)[0], None, Int4DynamicConfig())


def ref_linear_weight_only_int8(x, qt, bias):
    """The weight-only int8 contract, operation by operation: s = fma(x[k], w[k] - z, s) for k
    in order, then y = fma(s, scale, bias)."""
    wf = (qt.data.astype(np.int64) - np.asarray(qt.zero_point, np.int64).reshape(-1, 1)).astype(F32)
    s = np.zeros((x.shape[0], wf.shape[0]), F32)
    for k in range(x.shape[1]):
        s = fma_f32(x[:, k:k + 1], wf[:, k][None, :], s)
    scale = np.broadcast_to(np.asarray(qt.scale, F32), (wf.shape[0],))
    return fma_f32(s, scale[None, :], np.zeros(wf.shape[0], F32) if bias is None else bias)


@pytest.mark.parametrize("symmetric", [True, False])
def test_int8_weight_only_follows_its_contract(isa, rng, symmetric):
    w, b = _layer(rng)
    layer = QuantizedLinear.from_config(w, b, Int8WeightOnlyConfig(symmetric=symmetric))
    assert layer.scheme == "weight_only" and layer.weight.mode == "weight_only"
    assert layer.weight_nbytes < w.nbytes / 2   # 1 byte a weight; panels pad 40 columns to 64
    x = _x(rng, (7, 96))
    qt = layer.weight.qtensor()
    assert_bits_equal(layer(x), ref_linear_weight_only_int8(x, qt, b))
    np.testing.assert_allclose(layer(x), x @ w.T + b, atol=0.06)
    # a QTensor given directly is packed the same way
    again = QuantizedLinear(qt, b)
    assert again.weight.mode == "weight_only"
    assert_bits_equal(again(x), layer(x))
    with pytest.raises(ValueError, match="NaN or Inf"):
        layer(np.full((1, 96), np.nan, F32))


def test_int8_weight_only_same_bits_for_any_thread_count(rng):
    w = rng.standard_normal((700, 300)).astype(F32)
    pw = lowbit.pack_weight(w, mode="weight_only", symmetric=False)
    x = rng.standard_normal((90, 300)).astype(F32)
    lowbit.set_num_threads(1)
    want = lowbit.linear(x, pw)
    assert_bits_equal(want, ref_linear_weight_only_int8(x, pw.qtensor(), None))
    for threads in (2, 3):
        lowbit.set_num_threads(threads)
        assert_bits_equal(lowbit.linear(x, pw), want, f"{threads} threads")
    with pytest.raises(ValueError, match="mode of an 8-bit weight"):
        lowbit.pack_weight(w, mode="w4a8")


def ref_linear_static(x, pw, s_x, z_x, bias):
    """The documented static arithmetic, operation by operation."""
    qtype = "int8" if np.asarray(z_x).dtype == np.int8 else "uint8"
    q = ref_quantize_linear(x, s_x, z_x, qtype).astype(np.int64) - int(z_x)
    qt = pw.qtensor()
    wc = qt.data.astype(np.int64) - np.asarray(qt.zero_point, np.int64).reshape(-1, 1)
    acc = q @ wc.T
    return fma_f32(acc.astype(F32), (F32(s_x) * pw.scale).astype(F32), bias)


@pytest.mark.parametrize("act_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_static_linear_bit_exact(isa, rng, symmetric, act_dtype):
    w, b = _layer(rng)
    calib = _x(rng, (50, 96))
    obs = MinMaxObserver(dtype=act_dtype)
    obs.observe(calib)
    layer = QuantizedLinear.from_config(w, b, Int8StaticConfig(observer=obs, symmetric=symmetric))
    assert layer.scheme == "static"
    s_x, z_x = obs.calculate_qparams()
    assert layer.input_scale == s_x and layer.input_zero_point == z_x
    x = np.concatenate([_x(rng, (6, 96)), 10 * _x(rng, (2, 96))])   # saturating rows too
    assert_bits_equal(layer(x), ref_linear_static(x, layer.weight, s_x, z_x, b))
    y3 = layer(x.reshape(2, 4, 96))
    assert y3.shape == (2, 4, 40)
    assert_bits_equal(y3.reshape(8, 40), layer(x))


def test_static_needs_calibration(rng):
    w, b = _layer(rng)
    with pytest.raises(ValueError, match="calibrated"):
        QuantizedLinear.from_config(w, b, Int8StaticConfig())
    layer = QuantizedLinear.from_config(w, b, Int8StaticConfig(),
                                        input_qparams=(np.float32(0.05), np.uint8(120)))
    assert layer.input_zero_point.dtype == np.uint8
    with pytest.raises(ValueError):
        QuantizedLinear.from_config(w, b, Int8DynamicConfig(), input_qparams=(0.1, 0))


def test_static_weight_observer(rng):
    w, b = _layer(rng)
    cfg = Int8StaticConfig(weight_observer=PercentileObserver(99.0, dtype="int8", symmetric=True,
                                                              axis=0))
    layer = QuantizedLinear.from_config(w, b, cfg, input_qparams=(np.float32(0.02), np.uint8(128)))
    obs = PercentileObserver(99.0, dtype="int8", symmetric=True, axis=0)
    obs.observe(w)
    np.testing.assert_array_equal(layer.weight.scale, obs.calculate_qparams()[0])


def test_config_validation():
    with pytest.raises(ValueError):
        Int4DynamicConfig(group_size=33)
    with pytest.raises(ValueError):
        Int4WeightOnlyConfig(group_size=0)
    with pytest.raises(TypeError):
        Int4WeightOnlyConfig(group_size=32.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per tensor"):
        Int8StaticConfig(observer=MinMaxObserver(axis=0))
    with pytest.raises(ValueError):
        Int8StaticConfig(observer=MinMaxObserver(dtype="int4"))
    with pytest.raises(TypeError):
        Int8StaticConfig(observer=MinMaxObserver)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        QuantizedLinear.from_config(np.ones((2, 2), F32), None, "int8")  # type: ignore[arg-type]
    for cfg in (Int8DynamicConfig(), Int8WeightOnlyConfig(), Int4DynamicConfig(),
                Int4WeightOnlyConfig(), Int8StaticConfig()):
        assert cfg.describe()


def test_depth_limit_is_a_clear_error():
    w = np.zeros((2, 65538), F32)
    with pytest.raises(ValueError, match="depth limit"):
        QuantizedLinear.from_config(w, None, Int8DynamicConfig())
    assert QuantizedLinear.from_config(w, None, Int8WeightOnlyConfig()).in_features == 65538


def test_quantize_weights(rng):
    w1, b1 = _layer(rng)
    w2, _ = _layer(rng, 16, 63)
    weights = {"enc.fc1": w1, "enc.fc2": w2, "head": w1.copy(), "norm": np.ones(96, F32),
               "ids": np.arange(6).reshape(2, 3), "step": 3}
    out = lowbit.quantize_weights(weights, {"enc.fc2": None, "enc.*": Int4DynamicConfig(32),
                                            "head": Int8DynamicConfig()}, biases={"enc.fc1": b1})
    assert isinstance(out["enc.fc1"], QuantizedLinear) and out["enc.fc1"].bits == 4
    assert out["enc.fc2"] is w2 and out["norm"] is weights["norm"] and out["step"] == 3
    assert out["ids"] is weights["ids"] and out["head"].bits == 8
    x = _x(rng, (3, 96))
    ref = lowbit.pack_weight(w1, bits=4, group_size=32)
    assert_bits_equal(out["enc.fc1"](x), lowbit.linear(x, ref, b1))
    s = out.summary
    assert s.replaced_names == ["enc.fc1", "head"]
    assert s.skipped_names == ["enc.fc2", "norm", "ids", "step"]
    assert "maps it to None" in s.reason("enc.fc2") and "1-D" in s.reason("norm")
    assert "not floating point" in s.reason("ids") and "not an array" in s.reason("step")
    # a shape the config cannot take is kept float with the reason, as quantize_ does
    # (it used to raise)
    out = lowbit.quantize_weights(weights, Int4DynamicConfig())
    assert out["enc.fc2"] is w2 and "odd" in out.summary.reason("enc.fc2")
    assert "group_size 128 > in_features 96" in out.summary.replaced[0].note
    with pytest.raises(ValueError, match="calibration"):
        lowbit.quantize_weights(weights, Int8StaticConfig())
    with pytest.raises(ValueError, match="biases"):
        lowbit.quantize_weights(weights, Int8DynamicConfig(), biases={"nope": b1})


def _state_dict(rng):
    """A PyTorch-style state_dict: linear weights and biases, a norm, an embedding table."""
    w1, b1 = _layer(rng, 40, 32)
    w2, b2 = _layer(rng, 8, 40)
    return {"emb.weight": rng.standard_normal((50, 32)).astype(F32),
            "enc.fc1.weight": w1, "enc.fc1.bias": b1,
            "norm.weight": np.ones(40, F32), "norm.bias": np.zeros(40, F32),
            "head.bias": b2, "head.weight": w2,   # the bias may come first
            "pos_ids": np.arange(16).reshape(1, 16)}


def test_quantize_weights_state_dict_pairs_biases(rng):
    sd = _state_dict(rng)
    out = lowbit.quantize_weights(sd, Int8DynamicConfig())
    assert list(out) == ["emb.weight", "enc.fc1", "norm.weight", "norm.bias", "head",
                         "pos_ids"]
    for name, k in (("enc.fc1", 32), ("head", 40)):
        layer = out[name]
        assert isinstance(layer, QuantizedLinear) and layer.bias is not None
        xk = _x(rng, (3, k))
        assert_bits_equal(layer(xk), lowbit.linear(xk, lowbit.pack_weight(sd[name + ".weight"]),
                                                   sd[name + ".bias"]), name)
    assert out["emb.weight"] is sd["emb.weight"]   # a table: not a linear layer
    s = out.summary
    assert s.replaced_names == ["enc.fc1", "head"]
    assert "embedding table" in s.reason("emb.weight") and "embeddings=True" in s.reason(
        "emb.weight")
    assert s.skipped_names == ["emb.weight", "norm.weight", "norm.bias", "pos_ids"]
    assert s.replaced[0].bytes_before == sd["enc.fc1.weight"].nbytes + sd["enc.fc1.bias"].nbytes
    assert "enc.fc1" in str(s) and "skipped" in str(s)
    # patterns match the layer name; a weight kept float keeps its bias
    out = lowbit.quantize_weights(sd, {"head": None, "*": Int4DynamicConfig(16)})
    assert out["enc.fc1"].bits == 4
    assert out["head.weight"] is sd["head.weight"] and out["head.bias"] is sd["head.bias"]


def test_quantize_weights_embeddings_on_request(rng):
    sd = _state_dict(rng)
    out = lowbit.quantize_weights(sd, Int8DynamicConfig(), embeddings=True, embedding_bits=4,
                                  embedding_group_size=16)
    emb = out["emb"]
    assert isinstance(emb, QuantizedEmbedding) and emb.bits == 4 and emb.group_size == 16
    ref = QuantizedEmbedding.from_float(sd["emb.weight"], bits=4, group_size=16)
    idx = np.array([[0, 7, 49]])
    assert_bits_equal(emb(idx), ref(idx))
    assert out.summary.replaced_names == ["emb", "enc.fc1", "head"]
    assert out.summary.replaced[0].kind == "embedding"
    # patterns name the tables instead of the default names
    sd["lookup"] = sd.pop("emb.weight")
    out = lowbit.quantize_weights(sd, Int8DynamicConfig(), embeddings=["look*"])
    assert isinstance(out["lookup"], QuantizedEmbedding)
    sd["odd.weight"] = rng.standard_normal((5, 7)).astype(F32)
    out = lowbit.quantize_weights(sd, Int8DynamicConfig(), embeddings=["odd", "look*"],
                                  embedding_bits=4)
    assert out["odd.weight"] is sd["odd.weight"] and "odd" in out.summary.reason("odd.weight")
    with pytest.raises(TypeError, match="embeddings"):
        lowbit.quantize_weights(sd, Int8DynamicConfig(), embeddings=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embedding_bits"):
        lowbit.quantize_weights(sd, Int8DynamicConfig(), embedding_bits=2)


def test_quantize_weights_errors_name_the_weight(rng):
    sd = _state_dict(rng)
    with pytest.raises(ValueError, match="'head.weight' \\(with 'head.bias'\\).*shape"):
        lowbit.quantize_weights(sd | {"head.bias": np.zeros(3, F32)}, Int8DynamicConfig())
    with pytest.raises(ValueError, match="give one"):
        lowbit.quantize_weights(sd, Int8DynamicConfig(), biases={"head.weight": sd["head.bias"]})
    with pytest.raises(ValueError, match="'head.weight' becomes the layer 'head'"):
        lowbit.quantize_weights(sd | {"head": np.ones(3, F32)}, Int8DynamicConfig())
    with pytest.raises(TypeError, match="'enc.fc1.weight'.*float32"):
        lowbit.quantize_weights(sd | {"enc.fc1.weight": sd["enc.fc1.weight"].astype(np.float64)},
                                Int8DynamicConfig())


def test_quantize_weights_output_saves_like_the_torch_module(tmp_path, rng):
    """'<name>.weight' becomes the layer '<name>': the file holds what saving the converted
    PyTorch module holds (<name>.qweight, <name>.bias, ...), and loads back bit-exact."""
    sd = _state_dict(rng)
    out = lowbit.quantize_weights(sd, Int4WeightOnlyConfig(32), embeddings=True)
    path = tmp_path / "m.safetensors"
    lowbit.save(out, path)
    back = lowbit.load(path)
    assert set(back) == set(out)
    x = _x(rng, (2, 32))
    assert_bits_equal(back["enc.fc1"](x), out["enc.fc1"](x))


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group_size", [None, 16, 20])
def test_numpy_embedding(rng, bits, group_size):
    table = rng.standard_normal((50, 40)).astype(F32)
    emb = QuantizedEmbedding.from_float(table, bits=bits, group_size=group_size)
    g = group_size or 40
    qt = lowbit.quantize(table, "int8" if bits == 8 else "int4", axis=1, group_size=g)
    idx = rng.integers(0, 50, (3, 7))
    got = emb(idx)
    assert got.shape == (3, 7, 40) and got.dtype == np.float32
    assert_bits_equal(got, qt.dequantize()[idx])
    assert emb.nbytes == (50 * 40 * bits // 8) + qt.scale.nbytes
    with pytest.raises(IndexError):
        emb(np.array([50]))
    with pytest.raises(TypeError):
        emb(np.array([1.0]))


def test_numpy_embedding_bad_input():
    with pytest.raises(ValueError, match="even"):
        QuantizedEmbedding.from_float(np.ones((4, 5), F32), bits=4)
    with pytest.raises(ValueError):
        QuantizedEmbedding.from_float(np.ones((4, 5), F32), bits=2)
    with pytest.raises(ValueError, match="NaN"):
        QuantizedEmbedding.from_float(np.array([[np.nan, 1]], F32))


def test_layers_survive_pickle_and_deepcopy(rng):
    """An unpickled array carries an equal but distinct dtype object; lowbit must accept it."""
    w, b = _layer(rng)
    x = _x(rng, (4, 96))
    for cfg in (Int8DynamicConfig(), Int4DynamicConfig(32), Int4WeightOnlyConfig(32, False),
                Int8WeightOnlyConfig()):
        layer = QuantizedLinear.from_config(w, b, cfg)
        for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
            assert_bits_equal(clone(x), layer(x))
    x2 = pickle.loads(pickle.dumps(x))
    pw = lowbit.pack_weight(w)
    assert_bits_equal(lowbit.linear(x2, pw, pickle.loads(pickle.dumps(b))), lowbit.linear(x, pw, b))


def test_static_linear_same_bits_for_any_thread_count(rng):
    """The fused static kernel takes the parallel row-quantization and GEMM paths at this size."""
    w = rng.standard_normal((700, 512)).astype(F32)
    b = rng.standard_normal(700).astype(F32)
    obs = MinMaxObserver()
    x = rng.standard_normal((300, 512)).astype(F32)
    obs.observe(x[:100])
    layer = QuantizedLinear.from_config(w, b, Int8StaticConfig(observer=obs))
    s_x, z_x = obs.calculate_qparams()
    lowbit.set_num_threads(1)
    want = layer(x)
    assert_bits_equal(want, ref_linear_static(x, layer.weight, s_x, z_x, b))
    for threads in (2, 3):
        lowbit.set_num_threads(threads)
        assert_bits_equal(layer(x), want, f"{threads} threads")


def test_numpy_models_and_their_conversion(rng):
    """lowbit.nn.Linear / Embedding (float layers), Sequential and Model, and quantize_weights
    over a model's layers: the quantized model is the same forward over the converted dict."""
    w1, b1 = _layer(rng, 40, 32)
    w2, _ = _layer(rng, 8, 40)
    table = rng.standard_normal((20, 32)).astype(F32)
    fc1 = lowbit.nn.Linear(w1, b1)
    x = _x(rng, (2, 3, 32))
    assert_bits_equal(fc1(x), (x @ w1.T + b1).astype(F32))
    emb = lowbit.nn.Embedding(table)
    np.testing.assert_array_equal(emb(np.array([3, 0])), table[[3, 0]])
    with pytest.raises(IndexError):
        emb(np.array([-1]))
    with pytest.raises(ValueError, match="bias must have shape"):
        lowbit.nn.Linear(w1, b1[:3])
    with pytest.raises(ValueError, match=r"\(\.\.\., 32\)"):
        fc1(_x(rng, (2, 31)))
    model = lowbit.nn.Sequential([fc1, lowbit.nn.relu, lowbit.nn.Linear(w2)])
    assert list(model.layers) == ["0", "1", "2"]
    assert_bits_equal(model(x), np.maximum(x @ w1.T + b1, 0) @ w2.T)
    assert model.nbytes == w1.nbytes + b1.nbytes + w2.nbytes
    with pytest.raises(TypeError, match="callable"):
        lowbit.nn.Sequential({"w": w1})

    out = lowbit.quantize_weights(model.layers, {"2": None, "*": Int8DynamicConfig()})
    assert out.summary.replaced_names == ["0"] and out.summary.skipped_names == ["1", "2"]
    assert out["0"].bias is not None and out["2"] is model.layers["2"]
    quantized = model.with_layers(out)
    ref = lowbit.linear(x, lowbit.pack_weight(w1), b1)
    assert_bits_equal(quantized(x), np.maximum(ref, 0) @ w2.T)
    assert pickle.loads(pickle.dumps(quantized)).layers.keys() == quantized.layers.keys()
    with pytest.raises(ValueError, match="give one"):
        lowbit.quantize_weights(model.layers, Int8DynamicConfig(), biases={"0": b1})

    # a Model: any forward over the dict; an Embedding is a table by its type
    def forward(layers, ids):
        return layers["head"](layers["tok"](ids))
    net = lowbit.nn.Model(forward, {"tok": emb, "head": fc1})
    out = lowbit.quantize_weights(net.layers, Int8DynamicConfig())
    assert out["tok"] is emb and "embeddings=True" in out.summary.reason("tok")
    out = lowbit.quantize_weights(net.layers, Int8DynamicConfig(), embeddings=True)
    assert isinstance(out["tok"], QuantizedEmbedding)
    ids = np.array([[1, 2, 19]])
    q = net.with_layers(out)
    np.testing.assert_allclose(q(ids), net(ids), atol=0.1)
    assert q.nbytes < net.nbytes / 2


@pytest.mark.parametrize("config", [Int8DynamicConfig(clip_search=True),
                                    Int8WeightOnlyConfig(clip_search=True),
                                    Int4DynamicConfig(32, clip_search=True),
                                    lowbit.Int4WeightOnlyConfig(32, symmetric=False,
                                                                clip_search=True)],
                         ids=["int8", "int8_wo", "w4a8", "int4_wo"])
def test_clip_search_config_is_quantize_with_clip_search(rng, config):
    """The config's clip_search is lowbit.quantize's: same quantized weight, and never a larger
    weight error than the full range (strictly smaller for 4-bit, whose 15 levels the outliers
    stretch; 8-bit's 255 levels make clipping them cost more than it saves here)."""
    w = rng.standard_normal((48, 128)).astype(F32)
    w[rng.random(w.shape) < 0.01] *= 12    # outliers: the full range wastes levels on them
    layer = QuantizedLinear.from_config(w, None, config)
    plain = QuantizedLinear.from_config(w, None, dataclasses.replace(config, clip_search=False))
    qt = layer.weight.qtensor()
    if config.bits == 4:
        want = lowbit.quantize(w, qt.dtype, symmetric=config.symmetric, axis=1, group_size=32,
                               clip_search=True)
    else:
        want = lowbit.quantize(w, "int8", symmetric=config.symmetric, axis=0, clip_search=True)
    np.testing.assert_array_equal(qt.data, want.data)
    np.testing.assert_array_equal(qt.scale, want.scale)
    err = np.mean((layer.dequantized_weight() - w) ** 2)
    full = np.mean((plain.dequantized_weight() - w) ** 2)
    assert err < full if config.bits == 4 else err <= full
    assert "clip search" in config.describe()
