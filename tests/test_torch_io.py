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
