"""lowbit.torch.quantize_: in-place replacement, per-name configs, skip reasons, the speed guard,
progress bar, embeddings, and clear errors."""
from __future__ import annotations

import sys
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
from lowbit import Int4DynamicConfig, Int8DynamicConfig, Int8StaticConfig  # noqa: E402
from lowbit.torch import QuantizedEmbedding, QuantizedLinear, quantize_  # noqa: E402
import lowbit.torch.quantize as quantize_module  # noqa: E402
from conftest import assert_bits_equal  # noqa: E402


class Block(nn.Module):
    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.down(torch.relu(self.up(x))))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 64)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.odd = nn.Linear(64, 63)
        self.head = nn.Linear(63, 10)

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(self.odd(x))


def _ids():
    return torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))


def test_replaces_every_linear_bit_exact_per_layer():
    model = Net()
    ref = Net()
    summary = quantize_(model, Int8DynamicConfig())
    assert summary.replaced_names == ["blocks.0.up", "blocks.0.down", "blocks.1.up",
                                      "blocks.1.down", "odd", "head"]
    assert summary.skipped == []
    assert all(isinstance(model.get_submodule(n), QuantizedLinear) for n in summary.replaced_names)
    assert isinstance(model.emb, nn.Embedding)   # embeddings only when asked
    x = torch.randn(3, 64)
    for name in ("blocks.0.up", "odd"):
        f = ref.get_submodule(name)
        layer = lowbit.nn.QuantizedLinear.from_config(f.weight.detach().numpy(),
                                                      f.bias.detach().numpy(), Int8DynamicConfig())
        with torch.no_grad():
            assert_bits_equal(model.get_submodule(name)(x).numpy(), layer(x.numpy()))
    with torch.inference_mode():
        out, out_ref = model(_ids()), ref(_ids())
    assert torch.nn.functional.cosine_similarity(out.flatten(), out_ref.flatten(), dim=0) > 0.999
    assert "6 replaced" in str(summary)


def test_int4_skips_odd_in_features_and_adjusts_group():
    model = Net()
    summary = quantize_(model, Int4DynamicConfig(group_size=128))
    assert summary.skipped_names == ["head"]
    assert "in_features=63 is odd" in summary.reason("head")
    up = next(r for r in summary.replaced if r.name == "blocks.0.up")
    assert "group_size 128 > in_features 64" in up.note
    assert model.blocks[0].up.layer.weight.group_size == 64
    assert model.blocks[0].down.layer.weight.group_size == 128
    assert isinstance(model.head, nn.Linear)


def test_pattern_dict_first_match_wins_and_filter_fn():
    model = Net()
    summary = quantize_(model, {"blocks.0.*": None, "*.up": Int4DynamicConfig(32),
                                "blocks.*": Int8DynamicConfig()})
    assert summary.replaced_names == ["blocks.1.up", "blocks.1.down"]
    assert model.blocks[1].up.bits == 4 and model.blocks[1].down.bits == 8
    assert "maps it to None" in summary.reason("blocks.0.up")
    assert summary.reason("head") == "no pattern matched"
    model2 = Net()
    s2 = quantize_(model2, Int8DynamicConfig(), filter_fn=lambda m, name: name.endswith("down"))
    assert s2.replaced_names == ["blocks.0.down", "blocks.1.down"]


def test_embeddings_option():
    model = Net()
    s = quantize_(model, Int8DynamicConfig(), embeddings=True, embedding_bits=4)
    assert isinstance(model.emb, QuantizedEmbedding) and model.emb.bits == 4
    assert "emb" in s.replaced_names
    with torch.no_grad():
        assert model(_ids()).shape == (2, 7, 10)
    skip = nn.Sequential(nn.Embedding(10, 5), nn.Embedding(10, 4, max_norm=1.0), nn.Linear(4, 4))
    s = quantize_(skip, Int8DynamicConfig(), embeddings=True, embedding_bits=4)
    assert "odd" in s.reason("0") and "max_norm" in s.reason("1")


def test_clear_errors():
    with pytest.raises(ValueError, match="no nn.Linear, nn.Conv1d or nn.Conv2d layers.*ReLU"):
        quantize_(nn.Sequential(nn.ReLU(), nn.Tanh()), Int8DynamicConfig())
    with pytest.raises(ValueError, match="filter_fn rejected"):
        quantize_(Net(), Int8DynamicConfig(), filter_fn=lambda m, n: False)
    double = Net()
    double.blocks[1].down.double()
    with pytest.raises(TypeError, match="'blocks.1.down'.*float64"):
        quantize_(double, Int8DynamicConfig())
    with pytest.raises(ValueError, match="prepare"):
        quantize_(Net(), Int8StaticConfig())
    with pytest.raises(TypeError):
        quantize_(Net(), "int8")  # type: ignore[arg-type]
    deep = nn.Sequential(nn.Linear(65538, 2))
    with pytest.warns(UserWarning, match="replaced no layer.*depth limit"):
        s = quantize_(deep, Int8DynamicConfig())
    assert "depth limit" in s.reason("0")


def test_warns_when_every_layer_is_skipped():
    model = nn.Sequential(nn.Linear(63, 33), nn.ReLU(), nn.Linear(33, 7))
    with pytest.warns(UserWarning, match=r"quantize_ replaced no layer of Sequential: all 2 "
                                         r"candidate layer\(s\) were skipped; '0': "
                                         r"in_features=63 is odd.*; '2': in_features=33 is odd"):
        s = quantize_(model, Int4DynamicConfig(32))
    assert s.replaced == [] and s.skipped_names == ["0", "2"]   # the summary is still returned
    assert isinstance(model[0], nn.Linear)
    many = nn.Sequential(*[nn.Linear(8, 8) for _ in range(5)])
    with pytest.warns(UserWarning, match=r"'0', '1', '2' and 2 more: no pattern matched"):
        quantize_(many, {"head.*": Int8DynamicConfig()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # one layer replaced: no warning
        s = quantize_(nn.Sequential(nn.Linear(63, 8), nn.Linear(8, 8)), Int4DynamicConfig(8))
    assert s.replaced_names == ["1"]
    with pytest.raises(ValueError, match="no nn.Linear, nn.Conv1d or nn.Conv2d layers"):   # nothing to convert at all
        quantize_(nn.Sequential(nn.ReLU()), Int4DynamicConfig(32))


def test_multihead_attention_and_shared_modules():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
            self.proj = nn.Linear(16, 16)
            self.proj_again = self.proj   # the same module under two names

        def forward(self, x):
            return self.proj_again(self.proj(self.mha(x, x, x)[0]))
    model = Attn()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        ref = model(x)
    s = quantize_(model, Int8DynamicConfig())
    assert "MultiheadAttention" in s.reason("mha.out_proj")
    assert model.proj is model.proj_again and isinstance(model.proj, QuantizedLinear)
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=0.05)


def test_progress_bar_with_and_without_tqdm(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    quantize_(Net(), Int8DynamicConfig(), progress=True)
    assert "lowbit quantize_" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)   # as if tqdm were not installed
    s = quantize_(Net(), Int8DynamicConfig(), progress=True)
    assert len(s.replaced) == 6 and capsys.readouterr().err == ""


def test_speed_guard(monkeypatch):
    calls = []

    def fake_compare(float_layer, quantized, rows, k):
        calls.append((rows, k))
        return (1e-6, 2e-6) if k == 256 else (2e-6, 1e-6)
    monkeypatch.setattr(quantize_module, "compare", fake_compare)
    model = Net()
    s = quantize_(model, Int8DynamicConfig(), skip_slower=True, example_batch_size=4)
    assert set(s.skipped_names) == {"blocks.0.down", "blocks.1.down"}
    assert "slower quantized: 2.0 us vs float 1.0 us at 4 rows" in s.reason("blocks.0.down")
    assert "at 4 rows" in s.replaced[0].note
    assert {r for r, _ in calls} == {4}
    calls.clear()
    quantize_(Net(), Int8DynamicConfig(), skip_slower=True, example_inputs=(_ids(),))
    assert {r for r, _ in calls} == {14}   # 2 x 7 tokens: the shape the layers really see
    calls.clear()
    quantize_(Net(), Int8DynamicConfig(), skip_slower=True, example_inputs={"ids": _ids()})
    assert {r for r, _ in calls} == {14}   # a dict is passed by keyword, as lowbit.report does


def test_speed_guard_real_timing():
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 8))
    s = quantize_(model, Int8DynamicConfig(), skip_slower=True)
    assert len(s.replaced) + len(s.skipped) == 2
    for text in [r.note for r in s.replaced] + [k.reason for k in s.skipped]:
        assert "us vs float" in text and "at 1 rows" in text
