"""Regression tests for issue 10's NumPy, loader and CLI items (6, 7, 8, 10, 12, 13, 14, 19):
each test is named after the item it covers and fails on the code before the fix."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lowbit
from lowbit import Int4DynamicConfig, Int4WeightOnlyConfig, Int8DynamicConfig
from lowbit.nn import (Embedding, Linear, Model, QuantizedEmbedding, QuantizedLinear, Sequential)
from conftest import F32, assert_bits_equal, assert_int_equal, random_int8, ref_quantize_linear

REPO = Path(__file__).resolve().parents[1]


def _weight(rng, n, k):
    return (rng.standard_normal((n, k)) / np.sqrt(k)).astype(F32)


def _run(args, env_extra=None, cwd=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


# ---- item 6: a 16- or 32-bit zero point asks ONNX for 16/32-bit output ------------------------
# quantize_linear has 16-bit outputs since issue 15 (tests/test_int16_qdq.py); 32-bit ones it
# has not, and requantize / qlinear_matmul stop at 8 bits.
@pytest.mark.parametrize("zdtype", [np.int16, np.uint16, np.int32, np.uint32])
def test_item06_wide_zero_point_raises_instead_of_saturating(isa, rng, zdtype):
    x = rng.standard_normal(16).astype(F32) * 10
    name = np.dtype(zdtype).name
    for zp in (zdtype(3), np.full((), 3, zdtype), np.array([3], zdtype)):
        if name in ("int32", "uint32"):
            with pytest.raises(TypeError, match=rf"zero_point has dtype {name}.*no {name} output"):
                lowbit.quantize_linear(x, 0.1, zp)
        else:
            assert_int_equal(lowbit.quantize_linear(x, 0.1, zp),
                             ref_quantize_linear(x, F32(0.1), 3, name))
    acc = rng.integers(-1000, 1000, (2, 5)).astype(np.int32)
    with pytest.raises(TypeError, match="zero_point has dtype"):
        lowbit.requantize(acc, 0.5, zdtype(1))
    a, b = random_int8(rng, (2, 8), np.uint8), random_int8(rng, (8, 3), np.int8)
    with pytest.raises(TypeError, match="y_zero_point has dtype"):
        lowbit.qlinear_matmul(a, 0.1, np.uint8(0), b, 0.1, np.int8(0), 0.2, zdtype(0))
    # an explicit output dtype is a clear request: the zero point's value is then used as is
    got = lowbit.quantize_linear(x, 0.1, zdtype(3), dtype="uint8")
    assert_int_equal(got, ref_quantize_linear(x, 0.1, 3, "uint8"))


def test_item06_eight_bit_and_untyped_zero_points_keep_their_output_types(rng):
    x = rng.standard_normal(16).astype(F32)
    assert lowbit.quantize_linear(x, 0.1, np.int8(-3)).dtype == np.int8
    assert lowbit.quantize_linear(x, 0.1, np.uint8(3)).dtype == np.uint8
    assert lowbit.quantize_linear(x, 0.1, 3).dtype == np.uint8             # a Python int
    assert lowbit.quantize_linear(x[:3], np.full(3, 0.1, F32), np.array([1, 2, 3]),
                                  axis=0).dtype == np.uint8           # int64 from Python ints


# ---- item 7: every header field's type is checked before use ---------------------------------
def _file_parts(path):
    buf = Path(path).read_bytes()
    n = int.from_bytes(buf[:8], "little")
    return json.loads(buf[8:8 + n]), buf[8 + n:]


def _write_parts(path, header, data, raw_header=None):
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    Path(path).write_bytes(len(raw).to_bytes(8, "little") + raw + data)


@pytest.fixture
def saved_file(tmp_path, rng):
    path = tmp_path / "m.lowbit"
    lowbit.save({"pw": lowbit.pack_weight(_weight(rng, 12, 8), bits=4, group_size=8),
                 "fc": QuantizedLinear.from_float(_weight(rng, 6, 16), np.ones(6, F32)),
                 "emb": QuantizedEmbedding.from_float(_weight(rng, 5, 8), bits=4, group_size=4),
                 "raw": np.arange(6, dtype=F32)}, path)
    return path


TENSOR_FIELD_MUTATIONS = [
    ("pw.zero_point", "dtype", [12]), ("pw.zero_point", "dtype", 12),
    ("pw.zero_point", "dtype", None), ("pw.zero_point", "dtype", {"a": 1}),
    ("raw", "shape", [True] * 1), ("raw", "shape", "6"), ("raw", "shape", [6.0]),
    ("raw", "shape", [[6]]), ("raw", "data_offsets", [True, 24]),
    ("raw", "data_offsets", {"0": 0}), ("raw", "data_offsets", [0, 24.0]),
    ("raw", "data_offsets", None),
]


@pytest.mark.parametrize("tensor,field,value", TENSOR_FIELD_MUTATIONS)
def test_item07_tensor_header_fields_of_any_json_type_raise_value_error(saved_file, tensor,
                                                                          field, value):
    header, data = _file_parts(saved_file)
    header[tensor][field] = value
    _write_parts(saved_file, header, data)
    with pytest.raises(ValueError, match=re.escape(repr(tensor))):
        lowbit.load(saved_file)


LAYER_FIELD_MUTATIONS = [
    ("pw", "kind", ["packed_weight"]), ("pw", "group_size", 0), ("pw", "group_size", True),
    ("pw", "group_size", 8.5), ("pw", "shape", [12.0, 8]), ("pw", "shape", [12]),
    ("pw", "nibbles", "yes"), ("pw", "bits", [4]), ("pw", "dtype", ["int4"]),
    ("pw", "axis", 7), ("pw", "mode", 3), ("fc", "scheme", None), ("fc", "bias", 1),
    ("emb", "group_size", 0), ("emb", "shape", [5, 1e400]), ("emb", "bits", "4"),
    ("emb", "shape", [5, 7]), ("emb", "shape", [5, 9]),
    ("emb", None, None), ("fc", None, [1, 2]),
]


@pytest.mark.parametrize("layer,field,value", LAYER_FIELD_MUTATIONS)
def test_item07_layer_metadata_fields_of_any_json_type_raise_value_error(saved_file, layer,
                                                                           field, value):
    header, data = _file_parts(saved_file)
    layers = json.loads(header["__metadata__"]["layers"])
    if field is None:
        layers[layer] = value          # the whole record replaced
    else:
        layers[layer][field] = value
    header["__metadata__"]["layers"] = json.dumps(layers)
    _write_parts(saved_file, header, data)
    with pytest.raises(ValueError, match=re.escape(repr(layer))):
        lowbit.load(saved_file)


def test_item07_json_the_parser_cannot_take_raises_value_error(saved_file):
    header, data = _file_parts(saved_file)
    raw = json.dumps(header).encode()
    deep = b"[" * 100_000 + b"]" * 100_000                        # RecursionError in json
    cases = {"duplicate key": raw[:-1] + b', "raw": ' + json.dumps(header["raw"]).encode() + b"}",
             "deep nesting": raw[:-1] + b', "x": ' + deep + b"}"}
    for what, bad in cases.items():
        _write_parts(saved_file, None, data, raw_header=bad)
        with pytest.raises(ValueError, match="corrupted header"):
            lowbit.load(saved_file)
    header["__metadata__"]["layers"] = "[" * 100_000 + "]" * 100_000
    _write_parts(saved_file, header, data)
    with pytest.raises(ValueError, match="nested too deeply"):
        lowbit.load(saved_file)


def test_item07_committed_fuzz_input_raises_value_error():
    """The input CI's fuzz_load stage crashed on (a tensor's dtype given as a JSON list), as
    committed to the fuzz corpus."""
    path = REPO / "fuzz" / "corpus" / "fuzz_load" / "crash_dtype_list.lowbit"
    header, _ = _file_parts(path)
    assert header["pw.zero_point"]["dtype"] == [12]
    with pytest.raises(ValueError, match=r"tensor 'pw.zero_point': unknown dtype \[12\]"):
        lowbit.load(path)


def test_item07_packed_nibbles_of_the_wrong_form_raise_value_error(saved_file):
    """A 0-d or wrongly typed 4-bit weight tensor (right CRC, consistent header) must not reach
    the nibble unpacking (an IndexError before)."""
    import zlib

    from lowbit.io import safetensors as _safetensors
    tensors, metadata, codes = _safetensors.read(saved_file.read_bytes())
    codes = {k: v for k, v in codes.items() if k != "pw.qweight"}   # the array's own dtype
    for bad in (np.array(7, np.uint8), np.zeros((12, 4), np.int8), np.zeros((12, 3), np.uint8)):
        t = dict(tensors, **{"pw.qweight": bad})
        crc = {k: zlib.crc32(np.ascontiguousarray(v).data) for k, v in t.items()}
        meta = dict(metadata, crc32=json.dumps(crc))
        with open(saved_file, "wb") as f:
            _safetensors.write(f, t, meta, codes)
        with pytest.raises(ValueError, match="'pw'.*4-bit values must be uint8"):
            lowbit.load(saved_file)


# ---- item 8: messages name the argument --------------------------------------------------------
def test_item08_weight_errors_name_the_weight(rng):
    w64 = _weight(rng, 8, 16).astype(np.float64)
    for bits in (8, 4):
        with pytest.raises(TypeError, match=r"^weight must be a float32 array, got dtype float64"):
            lowbit.pack_weight(w64, bits=bits)
        with pytest.raises(TypeError, match=r"^weight must be a float32"):
            QuantizedLinear.from_float(w64, bits=bits)
        w = _weight(rng, 8, 16)
        w[3, 5] = np.nan
        with pytest.raises(ValueError, match=r"^weight holds NaN"):
            lowbit.pack_weight(w, bits=bits)
        with pytest.raises(ValueError, match=r"^weight holds NaN"):
            QuantizedLinear.from_float(w, bits=bits)
    with pytest.raises(TypeError, match=r"^x must be a float32"):   # quantize's own argument
        lowbit.quantize(w64)


def test_item08_missing_zero_points_and_scales_are_named(rng):
    a, b = random_int8(rng, (2, 8), np.uint8), random_int8(rng, (8, 3), np.int8)
    with pytest.raises(TypeError, match=r"^y_zero_point is required"):
        lowbit.qlinear_matmul(a, 0.1, np.uint8(0), b, 0.1, np.int8(0), 0.2, None)
    with pytest.raises(TypeError, match=r"^y_scale .* got None"):
        lowbit.qlinear_matmul(a, 0.1, np.uint8(0), b, 0.1, np.int8(0), None, np.uint8(0))
    with pytest.raises(TypeError, match=r"^zero_point must be an integer .* got None"):
        lowbit.requantize(np.ones(3, np.int32), 0.5, None)
    with pytest.raises(ValueError, match=r"^y_zero_point must be a single value"):
        lowbit.qlinear_matmul(a, 0.1, np.uint8(0), b, 0.1, np.int8(0), 0.2,
                              np.array([1, 2], np.uint8))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32])
def test_item08_dequantize_linear_takes_numpy_scalars(isa, dtype):
    got = lowbit.dequantize_linear(dtype(5), 0.1)
    assert got.shape == () and got.dtype == np.float32
    assert_bits_equal(got, lowbit.dequantize_linear(np.array([5], dtype), 0.1).reshape(()))
    if dtype != np.int32:
        assert_bits_equal(lowbit.dequantize_linear(dtype(5), 0.1, dtype(2)),
                          np.float32(3) * np.float32(0.1))


def test_item08_dequantize_linear_python_int_says_scalar():
    with pytest.raises(TypeError, match="array or scalar.*Python int"):
        lowbit.dequantize_linear(5, 0.1)
    with pytest.raises(TypeError, match="dtype int8, uint8, int16, uint16 or int32, got float32"):
        lowbit.dequantize_linear(np.float32(5), 0.1)


# ---- item 10: batch dims that do not broadcast -------------------------------------------------
def test_item10_batch_mismatch_names_both_shapes(rng):
    a = random_int8(rng, (2, 3, 8), np.uint8)
    b = random_int8(rng, (4, 8, 5), np.int8)
    with pytest.raises(ValueError, match=r"batch dimensions of A \(2, 3, 8\) and B \(4, 8, 5\)"):
        lowbit.matmul_integer(a, b)
    with pytest.raises(ValueError, match=r"A \(2, 3, 8\) and B \(4, 8, 5\)"):
        lowbit.qlinear_matmul(a, 0.1, np.uint8(1), b, 0.1, np.int8(0), 0.2, np.uint8(0))
    # batch dims that broadcast still work
    b1 = random_int8(rng, (1, 8, 5), np.int8)
    assert lowbit.matmul_integer(a, b1).shape == (2, 3, 5)


# ---- item 12: thread cap, booleans -------------------------------------------------------------
def _os_threads():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def test_item12_set_num_threads_is_capped():
    info = lowbit.cpu_info()
    cap = info["max_threads"]   # 4 per CPU (affinity mask or machine count), at least 16
    assert max(16, 4 * info["default_threads"]) <= cap <= max(16, 4 * (os.cpu_count() or 1),
                                                               4 * info["default_threads"])
    before = lowbit.get_num_threads()
    threads_before = _os_threads() if os.path.exists("/proc/self/status") else None
    for bad in (cap + 1, 1000, 10**30):
        with pytest.raises(ValueError, match=rf"at most {cap}"):
            lowbit.set_num_threads(bad)
        assert lowbit.get_num_threads() == before
    if threads_before is not None:
        assert _os_threads() <= threads_before + 1     # no pool of 1000 workers was started
    with pytest.raises(ValueError, match="at most"):   # the C++ check behind it
        lowbit._C.set_num_threads(cap + 1)
    lowbit.set_num_threads(7)                          # oversubscription below the cap works
    assert lowbit.get_num_threads() == 7
    a = np.full((64, 256), 3, np.uint8)
    assert (lowbit.matmul_integer(a, np.full((256, 70), -2, np.int8)) == -6 * 256).all()


BAD_BOOLS = [None, "yes", "no", 1, 0, 1.0, [True]]


def _bool_calls(w, x):
    return {
        "pack_weight(symmetric)": lambda v: lowbit.pack_weight(w, symmetric=v),
        "pack_weight(clip_search)": lambda v: lowbit.pack_weight(w, clip_search=v),
        "pack_weight(bits=4, symmetric)": lambda v: lowbit.pack_weight(w, bits=4, symmetric=v),
        "quantize(symmetric)": lambda v: lowbit.quantize(x, symmetric=v),
        "quantize(clip_search)": lambda v: lowbit.quantize(x, axis=0, clip_search=v),
        "from_float(symmetric)": lambda v: QuantizedLinear.from_float(w, symmetric=v),
        "Int8DynamicConfig(symmetric)": lambda v: Int8DynamicConfig(symmetric=v),
        "Int4DynamicConfig(clip_search)": lambda v: Int4DynamicConfig(clip_search=v),
        "MinMaxObserver(symmetric)": lambda v: lowbit.observers.MinMaxObserver(symmetric=v),
        "report(verbose)": lambda v: lowbit.report(Sequential([Linear(w)]),
                                                   Sequential([QuantizedLinear.from_float(w)]),
                                                   x[:, :16], verbose=v, repeats=1),
    }


@pytest.mark.parametrize("bad", BAD_BOOLS, ids=repr)
def test_item12_boolean_parameters_must_be_booleans(rng, bad):
    w = _weight(rng, 8, 16)
    x = rng.standard_normal((4, 16)).astype(F32)
    for what, call in _bool_calls(w, x).items():
        with pytest.raises(TypeError, match="must be True or False"):
            call(bad)
            pytest.fail(f"{what} accepted {bad!r}")


def test_item12_symmetric_none_no_longer_gives_asymmetric_weights(rng):
    w = _weight(rng, 8, 16) + np.float32(0.5)   # skewed: asymmetric packing would differ
    with pytest.raises(TypeError, match="symmetric must be True or False, got None"):
        lowbit.pack_weight(w, symmetric=None)
    assert lowbit.pack_weight(w, symmetric=np.bool_(True)).symmetric      # NumPy bools are bools
    assert not lowbit.pack_weight(w, symmetric=np.bool_(False)).symmetric


def test_item12_torch_boolean_parameters_must_be_booleans(rng):
    torch = pytest.importorskip("torch")
    from lowbit.torch import prepare_qat, quantize_, use_torch_threads
    for bad in (None, "yes", 1):
        model = torch.nn.Sequential(torch.nn.Linear(16, 8))
        with pytest.raises(TypeError, match="skip_slower must be True or False"):
            quantize_(model, Int8DynamicConfig(), skip_slower=bad)
        with pytest.raises(TypeError, match="embeddings must be True or False"):
            quantize_(model, Int8DynamicConfig(), embeddings=bad)
        if bad is not None:   # progress=None means "decide by model size"
            with pytest.raises(TypeError, match="progress must be True or False"):
                quantize_(model, Int8DynamicConfig(), progress=bad)
        with pytest.raises(TypeError, match="learnable_scales must be True or False"):
            prepare_qat(model, Int8DynamicConfig(), learnable_scales=bad)
        assert isinstance(model[0], torch.nn.Linear)   # nothing was converted
        with pytest.raises(TypeError, match="enabled must be True or False"):
            use_torch_threads(bad)


# ---- item 13: one rule for a group larger than in_features -------------------------------------
@pytest.mark.parametrize("symmetric", [True, False])
def test_item13_group_larger_than_in_features_is_one_group_everywhere(isa, rng, symmetric):
    k, big = 24, 64
    w, b = _weight(rng, 10, k), rng.standard_normal(10).astype(F32)
    x = rng.standard_normal((5, k)).astype(F32)
    name = "int4" if symmetric else "uint4"
    ref = lowbit.pack_weight(w, bits=4, group_size=k, symmetric=symmetric)
    expected = lowbit.linear(x, ref, b)
    qt = lowbit.quantize(w, name, symmetric=symmetric, axis=1, group_size=big)
    assert qt.group_size == k and qt.scale.shape == (10, 1)
    cfg = Int4DynamicConfig(group_size=big, symmetric=symmetric)
    layers = {
        "pack_weight(float)": QuantizedLinear(lowbit.pack_weight(w, bits=4, group_size=big,
                                                                 symmetric=symmetric), b),
        "pack_weight(QTensor)": QuantizedLinear(lowbit.pack_weight(qt, bits=4), b),
        "pack_weight(QTensor, group_size)": QuantizedLinear(
            lowbit.pack_weight(qt, bits=4, group_size=big), b),
        "from_float": QuantizedLinear.from_float(w, b, bits=4, group_size=big,
                                                 symmetric=symmetric),
        "from_config": QuantizedLinear.from_config(w, b, cfg),
        "quantize_weights": lowbit.quantize_weights({"fc": Linear(w, b)}, cfg)["fc"],
    }
    for what, layer in layers.items():
        assert layer.weight.group_size == k, what
        assert_bits_equal(layer(x), expected, what)
    summary = lowbit.quantize_weights({"fc": Linear(w, b)}, cfg).summary
    assert f"group_size {big} > in_features {k}" in str(summary)
    # a QTensor grouped by more than the row, as made before this rule (group_size recorded
    # as asked), packs as is too
    old = lowbit.QTensor(qt.data, qt.scale, qt.zero_point, name, 1, big)
    assert_bits_equal(lowbit.linear(x, lowbit.pack_weight(old, bits=4), b), expected)


def test_item13_embedding_group_larger_than_the_row(rng):
    table = _weight(rng, 7, 12)
    for bits in (8, 4):
        whole = QuantizedEmbedding.from_float(table, bits)
        big = QuantizedEmbedding.from_float(table, bits, group_size=100)
        ids = np.arange(7)
        assert_bits_equal(big(ids), whole(ids))
        assert big.scale.shape == (7, 1)


def test_item13_group_sizes_that_stay_errors(rng):
    w = _weight(rng, 4, 8)
    for bad in (3, 0, -2):
        with pytest.raises(ValueError):
            lowbit.pack_weight(w, bits=4, group_size=bad)
    with pytest.raises(ValueError, match="at most"):
        lowbit.pack_weight(w, bits=4, group_size=2**21)
    with pytest.raises(TypeError):
        lowbit.pack_weight(w, bits=4, group_size=8.0)


# ---- item 14: NumPy models save and load --------------------------------------------------------
def _float_model(rng):
    w1, b1 = _weight(rng, 32, 16), rng.standard_normal(32).astype(F32)
    w2, b2 = _weight(rng, 8, 32), rng.standard_normal(8).astype(F32)
    head = Sequential({"out": Linear(_weight(rng, 4, 8))})
    return Sequential({"fc1": Linear(w1, b1), "act": lowbit.nn.relu, "fc2": Linear(w2, b2),
                       "head": head})


def test_item14_sequential_round_trip_bit_exact(tmp_path, rng, isa):
    model = _float_model(rng)
    q8 = model.with_layers(lowbit.quantize_weights(model.layers, Int8DynamicConfig()))
    q4 = model.with_layers(lowbit.quantize_weights(
        model.layers, {"fc1": Int4WeightOnlyConfig(group_size=8), "*": None}))
    x = rng.standard_normal((5, 16)).astype(F32)
    for i, m in enumerate((model, q8, q4)):
        path = tmp_path / f"m{i}.lowbit"
        lowbit.save(m, path)
        back = lowbit.load(path)
        assert isinstance(back, Sequential) and list(back.layers) == list(m.layers)
        assert back.layers["act"] is lowbit.nn.relu
        assert isinstance(back.layers["head"], Sequential)
        assert type(back.layers["fc1"]) is type(m.layers["fc1"])
        assert_bits_equal(back(x), m(x), f"model {i}")


def _forward(layers, ids, x):
    return layers["fc"](layers["emb"](ids) + x) * layers["gain"]


def test_item14_model_with_own_forward_loads_into_its_float_model(tmp_path, rng):
    table, w = _weight(rng, 10, 16), _weight(rng, 6, 16)
    model = Model(_forward, {"emb": Embedding(table), "fc": Linear(w),
                             "gain": np.full(6, 2, F32)})
    q = model.with_layers(lowbit.quantize_weights(model.layers, Int8DynamicConfig(),
                                                  embeddings=True))
    ids, x = np.array([1, 3, 3]), rng.standard_normal((3, 16)).astype(F32)
    path = tmp_path / "model.lowbit"
    lowbit.save(q, path)
    with pytest.raises(ValueError, match=r"forward \(.*_forward\) is code"):
        lowbit.load(path)
    before = dict(model.layers)
    back = lowbit.load(path, model)
    assert model.layers == before                           # the skeleton is not modified
    assert isinstance(back.layers["fc"], QuantizedLinear)
    assert isinstance(back.layers["emb"], QuantizedEmbedding)
    assert_bits_equal(back(ids, x), q(ids, x))
    wrong = Model(_forward, {"emb": Embedding(table), "fc": Linear(w[:, :8]),
                             "gain": np.full(6, 2, F32)})
    with pytest.raises(ValueError, match="model entry 'fc'"):
        lowbit.load(path, wrong)
    with pytest.raises(ValueError, match="entries"):
        lowbit.load(path, Model(_forward, {"fc": Linear(w)}))
    with pytest.raises(ValueError, match="Sequential in the given model"):
        lowbit.load(path, Sequential({"emb": Embedding(table), "fc": Linear(w),
                                      "gain": lowbit.nn.relu}))
    # the same file claiming to be a Sequential: the array entry is not a layer
    header, data = _file_parts(path)
    structure = json.loads(header["__metadata__"]["model"])
    header["__metadata__"]["model"] = json.dumps(dict(structure, **{"class": "Sequential"}))
    _write_parts(path, header, data)
    with pytest.raises(ValueError, match=r"entries \['gain'\] are not layers"):
        lowbit.load(path)


def test_item14_entries_a_file_cannot_hold_raise_naming_the_entry(tmp_path, rng):
    w = _weight(rng, 4, 8)
    path = tmp_path / "m.lowbit"
    inner = Sequential({"fc": Linear(w), "act": np.tanh})
    cases = {"'act'": Sequential({"fc": Linear(w), "act": np.tanh}),
             "'f'": Sequential({"f": lambda v: v * 2}),
             "'block.act'": Sequential({"block": inner}),
             "'cfg'": Model(_forward, {"cfg": {"a": 1}})}
    for name, model in cases.items():
        with pytest.raises(TypeError, match=f"cannot save model entry {re.escape(name)}"):
            lowbit.save(model, path)
        assert not path.exists() and not list(tmp_path.iterdir())   # no partial file


def test_item14_structure_corruption_raises_value_error(tmp_path, rng):
    path = tmp_path / "m.lowbit"
    lowbit.save(_float_model(rng), path)
    header, data = _file_parts(path)
    good = json.loads(header["__metadata__"]["model"])
    bad_structures = [[1], {"class": "Sequential"}, {"class": "Nope", "entries": []},
                      {"class": "Sequential", "entries": [{"name": "x", "function": "exit"}]},
                      {"class": "Sequential", "entries": [{"name": "x", "object": "nope"}]},
                      {"class": "Sequential", "entries": good["entries"][:1]},
                      {"class": "Sequential", "entries": good["entries"] + good["entries"][:1]}]
    nested = {"class": "Sequential", "entries": []}
    for _ in range(70):
        nested = {"class": "Sequential", "entries": [{"name": "n", "model": nested}]}
    bad_structures.append(nested)
    for bad in bad_structures:
        header["__metadata__"]["model"] = json.dumps(bad)
        _write_parts(path, header, data)
        with pytest.raises(ValueError, match="model structure"):
            lowbit.load(path)


def test_item14_float_layers_in_a_dict_save_too(tmp_path, rng):
    w, b = _weight(rng, 6, 8), rng.standard_normal(6).astype(F32)
    path = tmp_path / "d.lowbit"
    q = QuantizedLinear.from_float(w, b)
    lowbit.save({"fc": Linear(w, b), "emb": Embedding(w), "q": q, "q.weight": w}, path)
    back = lowbit.load(path)
    x = rng.standard_normal((3, 8)).astype(F32)
    assert_bits_equal(back["fc"](x), Linear(w, b)(x))
    assert_bits_equal(back["emb"](np.array([0, 5])), w[[0, 5]])
    assert_bits_equal(back["q"](x), q(x))
    np.testing.assert_array_equal(back["q.weight"], w)   # a tensor, not part of the layer "q"
    with pytest.raises(ValueError, match="collide"):       # the float layer "fc" owns it
        lowbit.save({"fc": Linear(w, b), "fc.weight": w}, path)


# ---- item 19: the command line -------------------------------------------------------------------
def _cli():
    """The installed `lowbit` console script next to this interpreter, if there is one."""
    exe = shutil.which("lowbit", path=os.path.dirname(sys.executable))
    return [exe] if exe else None


def test_item19_version_and_help(tmp_path):
    r = _run([sys.executable, "-m", "lowbit.cli", "--version"], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"lowbit {lowbit.__version__}"
    r = _run([sys.executable, "-m", "lowbit.cli", "--help"], cwd=tmp_path)
    assert r.returncode == 0
    assert "int4" in r.stdout and "int8" in r.stdout and "--version" in r.stdout


@pytest.mark.parametrize("value", ["bogus", "neon-bogus"])
def test_item19_bad_lowbit_isa_is_one_line(tmp_path, value):
    commands = [[sys.executable, "-m", "lowbit.cli", "info"]]
    if _cli():
        commands.append(_cli() + ["info"])
    for cmd in commands:
        r = _run(cmd, {"LOWBIT_ISA": value}, cwd=tmp_path)
        assert r.returncode != 0, cmd
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith("lowbit: LOWBIT_ISA=") and value in lines[0]
    # importing lowbit from other code still raises (the documented import-time failure)
    r = _run([sys.executable, "-c", "import lowbit"], {"LOWBIT_ISA": value}, cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_item19_bench_options(monkeypatch):
    import lowbit.benchmark
    from lowbit import cli
    calls = []
    monkeypatch.setattr(lowbit.benchmark, "run_short", lambda **kw: calls.append(kw))
    assert cli.main(["bench"]) == 0
    assert cli.main(["bench", "--quick"]) == 0
    assert cli.main(["bench", "--quick", "--M", "4", "--threads", "1"]) == 0
    assert cli.main(["bench", "--shapes", "64x32,128X256", "--M", "1,8", "--repeats", "2"]) == 0
    assert calls[0] == {}
    assert calls[1] == {"Ms": cli.QUICK_MS, "shapes": cli.QUICK_SHAPES, "repeats": 1}
    assert calls[2] == {"Ms": (4,), "shapes": cli.QUICK_SHAPES, "repeats": 1, "threads": 1}
    assert calls[3] == {"Ms": (1, 8), "shapes": ((64, 32), (128, 256)), "repeats": 2}
    for bad in (["--shapes", "64"], ["--shapes", "0x4"], ["--M", "1,x"], ["--M", ","],
                ["--threads", "0"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["bench"] + bad)
        assert e.value.code == 2
    assert len(calls) == 4


def test_item19_run_short_takes_the_options(monkeypatch):
    """run_short passes the CLI's settings to the grid (no benchmark is run here)."""
    from lowbit.benchmark import runner
    seen = {}

    def fake_grid(Ms, shapes, threads_list, methods, repeats, progress=True, **kw):
        seen.update(Ms=Ms, shapes=shapes, threads=threads_list, repeats=repeats)
        return []
    monkeypatch.setattr(runner, "run_grid", fake_grid)
    monkeypatch.setattr(runner, "to_markdown", lambda rows: "")
    runner.run_short(Ms=(2,), shapes=((8, 4),), repeats=1, threads=3)
    assert seen == {"Ms": (2,), "shapes": ((8, 4),), "threads": [3], "repeats": 1}
