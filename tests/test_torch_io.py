"""lowbit.save / lowbit.load with PyTorch models: round trip into a float skeleton, clear errors
naming the layer when the model differs, dicts holding torch objects."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
from lowbit import Int4DynamicConfig, Int8DynamicConfig  # noqa: E402
from lowbit.torch import QuantizedEmbedding, QuantizedLinear, prepare, quantize_  # noqa: E402
from conftest import assert_bits_equal  # noqa: E402
from test_torch_convert import Net, _ids  # noqa: E402


def test_model_save_load_round_trip(tmp_path):
    model = Net()
    quantize_(model, {"*.up": Int4DynamicConfig(32), "*": Int8DynamicConfig()}, embeddings=True)
    ids = _ids()
    with torch.no_grad():
        expected = model(ids)
    path = tmp_path / "net.safetensors"
    lowbit.save(model, path)
    fresh = Net()
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)   # different float state: the file must overwrite it
    loaded = lowbit.load(path, fresh)
    assert loaded is fresh and isinstance(fresh.blocks[0].up, QuantizedLinear)
    assert isinstance(fresh.emb, QuantizedEmbedding) and fresh.blocks[0].up.bits == 4
    with torch.no_grad():
        assert torch.equal(fresh(ids), expected)
    objects = lowbit.load(path)   # NumPy users
    assert isinstance(objects["blocks.0.up"], lowbit.nn.QuantizedLinear)
    np.testing.assert_array_equal(objects["blocks.0.norm.weight"],
                                  model.blocks[0].norm.weight.detach().numpy())


def test_load_into_a_different_model_names_the_layer(tmp_path):
    model = Net()
    quantize_(model, Int8DynamicConfig())
    path = tmp_path / "net.safetensors"
    lowbit.save(model, path)
    other = Net()
    other.blocks[1].up = nn.Linear(64, 128)
    untouched = other.blocks[0].up
    with pytest.raises(ValueError, match=r"layer 'blocks.1.up'.*256 x 64.*128 x 64"):
        lowbit.load(path, other)
    assert other.blocks[0].up is untouched   # nothing replaced on failure
    missing = Net()
    del missing.blocks[1].down
    with pytest.raises(ValueError, match="'blocks.1.down' is in the file but not in the model"):
        lowbit.load(path, missing)
    wider = Net()
    wider.blocks[0].norm = nn.LayerNorm(32)
    with pytest.raises(ValueError, match="'blocks.0.norm.(weight|bias)' has shape"):
        lowbit.load(path, wider)
    with pytest.raises(TypeError):
        lowbit.load(path, model=object())


def test_save_dict_with_torch_objects(tmp_path):
    model = Net()
    quantize_(model, Int8DynamicConfig())
    path = tmp_path / "d.safetensors"
    lowbit.save({"head": model.head, "scale": torch.ones(3), "bf": torch.ones(2, dtype=torch.bfloat16)},
                path)
    back = lowbit.load(path)
    x = np.random.default_rng(0).standard_normal((2, 63)).astype(np.float32)
    with torch.no_grad():
        assert_bits_equal(back["head"](x), model.head(torch.from_numpy(x)).numpy())
    assert back["bf"].dtype == np.float32 and np.all(back["bf"] == 1)


def test_save_before_convert_is_refused(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4))
    prepare(model, lowbit.Int8StaticConfig())
    with pytest.raises(ValueError, match=r"'0' \(ObservedLinear\) was prepared but not converted"):
        lowbit.save(model, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("config", [Int8DynamicConfig(), Int4DynamicConfig(32),
                                    lowbit.Int4WeightOnlyConfig(32), lowbit.Int8WeightOnlyConfig(),
                                    "static"], ids=["int8", "w4a8", "int4_wo", "int8_wo", "static"])
def test_save_load_a_single_top_level_layer(tmp_path, config):
    torch.manual_seed(0)
    lin = nn.Linear(64, 24)
    q = (QuantizedLinear.from_float(lin, lowbit.Int8StaticConfig(),
                                    input_qparams=(np.float32(0.05), np.uint8(120)))
         if config == "static" else QuantizedLinear.from_float(lin, config))
    x = torch.randn(5, 64)
    with torch.no_grad():
        expected = q(x)
    path = tmp_path / "layer.safetensors"
    lowbit.save(q, path)   # the module's name is '': its tensors are unprefixed
    objects = lowbit.load(path)
    assert list(objects) == [""]
    assert_bits_equal(objects[""](x.numpy()), expected.numpy())
    for skeleton in (nn.Linear(64, 24), QuantizedLinear.from_float(nn.Linear(64, 24))):
        loaded = lowbit.load(path, model=skeleton)
        assert isinstance(loaded, QuantizedLinear) and loaded is not skeleton
        assert loaded.scheme == q.scheme and loaded.bits == q.bits
        with torch.no_grad():
            assert torch.equal(loaded(x), expected)
    with pytest.raises(ValueError, match=r"the layer saved on its own: the file's weight is "
                                         r"24 x 64.*24 x 32"):
        lowbit.load(path, model=nn.Linear(32, 24))
    with pytest.raises(ValueError, match="the layer saved on its own is a quantized linear in "
                                         "the file but a Sequential"):
        lowbit.load(path, model=nn.Sequential(nn.Linear(64, 24)))


def test_save_load_a_single_top_level_embedding(tmp_path):
    torch.manual_seed(0)
    q = QuantizedEmbedding.from_float(nn.Embedding(20, 16, padding_idx=3), bits=4)
    path = tmp_path / "emb.safetensors"
    lowbit.save(q, path)
    loaded = lowbit.load(path, model=nn.Embedding(20, 16, padding_idx=3))
    assert isinstance(loaded, QuantizedEmbedding) and loaded.padding_idx == 3
    idx = torch.arange(20)
    assert torch.equal(loaded(idx), q(idx))


def test_empty_names_are_for_layers_only(tmp_path):
    with pytest.raises(ValueError, match="names must be non-empty strings"):
        lowbit.save({"": np.zeros(3, np.float32)}, tmp_path / "x.safetensors")


def test_numpy_state_dict_conversion_matches_quantize_(tmp_path):
    """quantize_weights on a state_dict converts the layers quantize_ converts (weights paired
    with their biases, the table only with embeddings=True), and its file loads into a float
    skeleton as the converted module's does."""
    cfg = {"*.up": Int4DynamicConfig(32), "*": Int8DynamicConfig()}
    state = {k: v.detach().numpy() for k, v in Net().state_dict().items()}
    out = lowbit.quantize_weights(state, cfg, embeddings=True)
    model = Net()
    summary = quantize_(model, cfg, embeddings=True)
    assert sorted(out.summary.replaced_names) == sorted(summary.replaced_names)
    path = tmp_path / "numpy.safetensors"
    lowbit.save(out, path)
    fresh = lowbit.load(path, Net())
    with torch.no_grad():
        assert torch.equal(fresh(_ids()), model(_ids()))
