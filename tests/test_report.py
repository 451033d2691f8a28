"""lowbit.report: the before/after table (bytes, latency, SQNR and cosine per layer and for the
model), markdown and plot."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from lowbit.report import cosine, sqnr_db


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
    with pytest.raises(ValueError, match="no lowbit layers"):
        lowbit.report(model, copy.deepcopy(model), torch.randn(1, 4), verbose=False)
    with pytest.raises(TypeError):
        lowbit.report({}, {}, None)
