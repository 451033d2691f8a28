"""lowbit.report: the before/after table (bytes, latency, SQNR and cosine per layer and for the
model), markdown and plot."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from lowbit.report.types import cosine, sqnr_db


def test_metrics():
    a = np.array([1.0, 2.0, 3.0], np.float32)
    assert sqnr_db(a, a) == math.inf and cosine(a, a) == pytest.approx(1.0)
    assert sqnr_db(a, a + np.float32(0.1)) == pytest.approx(10 * math.log10(14 / 0.03), rel=1e-5)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(np.zeros(3), np.zeros(3)) == 1.0


def test_report_on_a_small_model(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import lowbit
    from lowbit.torch import model_nbytes, quantize_

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(40, 32), torch.nn.Linear(32, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 16))
    quantized = copy.deepcopy(model)
    quantize_(quantized, {"1": lowbit.Int4DynamicConfig(32), "*": lowbit.Int8DynamicConfig()},
              embeddings=True)
    ids = torch.randint(0, 40, (3, 5))
    rep = lowbit.report(model, quantized, ids, threads=1, repeats=3)
    printed = capsys.readouterr().out
    assert "SQNR dB" in printed and "model" in printed
    assert [r.name for r in rep.layers] == ["0", "1", "3", "(other layers, float)"]
    assert rep.layers[1].kind == "int4 dynamic" and rep.layers[1].rows == 15
    assert rep.total.bytes_float == model_nbytes(model)
    assert rep.total.bytes_quantized == model_nbytes(quantized) < model_nbytes(model) / 2
    for r in rep.layers[:3]:
        assert r.sqnr_db is not None and r.sqnr_db > 15 and r.cosine is not None and r.cosine > 0.99
        assert r.ms_float is not None and r.ms_float > 0 and r.ms_quantized is not None
    assert rep.total.cosine is not None and rep.total.cosine > 0.99
    assert rep.threads == 1
    md = rep.to_markdown()
    assert md.count("\n|") == 7 and "| layer |" in md
    pytest.importorskip("matplotlib")
    rep.plot(str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_report_errors():
    torch = pytest.importorskip("torch")
    import lowbit
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="the same one twice"):
        lowbit.report(model, model, torch.randn(1, 4), verbose=False)
    with pytest.raises(TypeError):
        lowbit.report({}, {}, None)


# ---- NumPy models ----------------------------------------------------------------------------
def _numpy_model(rng):
    """The NumPy twin of the torch model above: Embedding(40, 32) -> 128 -> ReLU -> 16."""
    import lowbit.nn as nn

    def w(n, k):
        return (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    return nn.Sequential({"emb": nn.Embedding(6 * w(40, 32)),
                          "fc1": nn.Linear(w(128, 32), w(1, 128)[0]),
                          "act": nn.relu,
                          "fc2": nn.Linear(w(16, 128))})


def test_report_on_a_numpy_model(tmp_path):
    import lowbit
    rng = np.random.default_rng(0)
    model = _numpy_model(rng)
    layers = lowbit.quantize_weights(model.layers, {"fc1": lowbit.Int4DynamicConfig(32),
                                                    "*": lowbit.Int8DynamicConfig()},
                                     embeddings=True)
    assert layers.summary.replaced_names == ["emb", "fc1", "fc2"]
    quantized = model.with_layers(layers)
    assert isinstance(quantized, lowbit.nn.Sequential)
    ids = rng.integers(0, 40, (3, 5))
    rep = lowbit.report(model, quantized, ids, threads=1, repeats=3, verbose=False)
    assert [r.name for r in rep.layers] == ["emb", "fc1", "fc2", "(other layers, float)"]
    assert rep.layers[0].kind == "int8 embedding"
    assert rep.layers[1].kind == "int4 dynamic" and rep.layers[1].rows == 15
    assert rep.layers[2].kind == "int8 dynamic"
    assert rep.total.bytes_float == model.nbytes == sum(
        a.nbytes for layer in model.layers.values() if hasattr(layer, "weight")
        for a in (layer.weight, getattr(layer, "bias", None)) if a is not None)
    assert rep.total.bytes_quantized == quantized.nbytes < model.nbytes / 2
    assert rep.layers[3].bytes_float == rep.layers[3].bytes_quantized == 0   # relu holds nothing
    for r in rep.layers[:3]:
        assert r.sqnr_db is not None and r.sqnr_db > 15 and r.cosine is not None and r.cosine > 0.99
        assert r.ms_float is not None and r.ms_float > 0 and r.ms_quantized is not None
    assert rep.total.cosine is not None and rep.total.cosine > 0.99
    assert rep.threads == 1 and rep.batch == "3x5"
    md = rep.to_markdown()
    assert md.count("\n|") == 7 and "| emb | int8 embedding |" in md
    pytest.importorskip("matplotlib")
    rep.plot(str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_report_on_a_forward_function_with_keyword_inputs():
    """Any forward(layers, **inputs) with its dict of layers; a dict of example inputs is passed
    by keyword. A layer the example never reaches is reported as not called."""
    import lowbit
    rng = np.random.default_rng(1)
    nn = lowbit.nn

    def forward(layers, input_ids, attention_mask):
        h = layers["emb"](input_ids) * attention_mask[..., None]
        return {"logits": layers["head"](h), "mask": attention_mask,
                "ids": input_ids}   # an integer output: not compared

    layers = {"emb": nn.Embedding(rng.standard_normal((30, 16)).astype(np.float32)),
              "head": nn.Linear(rng.standard_normal((8, 16)).astype(np.float32)),
              "unused": nn.Linear(rng.standard_normal((8, 16)).astype(np.float32))}
    qlayers = lowbit.quantize_weights(layers, lowbit.Int8DynamicConfig(), embeddings=True)
    inputs = {"input_ids": rng.integers(0, 30, (2, 6)),
              "attention_mask": np.ones((2, 6), np.float32)}
    rep = lowbit.report((forward, layers), (forward, qlayers), inputs, repeats=2, verbose=False)
    assert [r.name for r in rep.layers] == ["emb", "head", "unused", "(other layers, float)"]
    assert rep.layers[2].kind.endswith("(not called)") and rep.layers[2].ms_float is None
    assert rep.batch == "{input_ids: 2x6, attention_mask: 2x6}"
    assert rep.layers[1].rows == 12 and rep.total.cosine > 0.99
    nothing = lowbit.report((forward, layers), (forward, layers), inputs, verbose=False)
    assert [r.name for r in nothing.layers] == ["(other layers, float)"]   # nothing quantized
    assert any(n.startswith("Nothing quantized") for n in nothing.notes)
    with pytest.raises(ValueError, match="'head' of the quantized model is not in the float"):
        lowbit.report((forward, {"emb": layers["emb"]}), (forward, qlayers), inputs,
                      verbose=False)
    with pytest.raises(TypeError, match="NumPy models"):
        lowbit.report((forward, layers), forward, inputs, verbose=False)


def test_report_passes_a_dict_of_inputs_by_keyword():
    """HF-style models take model(input_ids=..., attention_mask=...)."""
    torch = pytest.importorskip("torch")
    import lowbit
    from lowbit.torch import quantize_

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(30, 16)
            self.out = torch.nn.Linear(16, 8)

        def forward(self, input_ids, attention_mask=None):
            h = self.emb(input_ids)
            if attention_mask is not None:
                h = h * attention_mask[..., None]
            return {"last_hidden_state": self.out(h)}

    torch.manual_seed(0)
    model = Encoder()
    quantized = copy.deepcopy(model)
    quantize_(quantized, lowbit.Int8DynamicConfig())
    inputs = {"input_ids": torch.randint(0, 30, (2, 5)), "attention_mask": torch.ones(2, 5)}
    rep = lowbit.report(model, quantized, inputs, repeats=2, verbose=False)
    assert [r.name for r in rep.layers] == ["out", "(other layers, float)"]
    assert rep.batch == "{input_ids: 2x5, attention_mask: 2x5}"
    assert rep.layers[0].rows == 10 and rep.total.cosine > 0.99
    with pytest.raises(TypeError, match="torch.nn.Module with a torch.nn.Module"):
        lowbit.report(model, _numpy_model(np.random.default_rng(0)), inputs, verbose=False)
