"""lowbit.save / lowbit.load with NumPy objects: round trips bit-exact for every scheme, a valid
safetensors file with the documented metadata, atomic writes, and clear errors for truncated,
corrupted and other-version files."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import lowbit
from lowbit.io import safetensors as _safetensors
from lowbit import (Int4DynamicConfig, Int4WeightOnlyConfig, Int8DynamicConfig,
                    Int8WeightOnlyConfig)
from lowbit.nn import QuantizedEmbedding, QuantizedLinear
from conftest import F32, assert_bits_equal


def _objects(rng):
    def w(n, k):
        return (rng.standard_normal((n, k)) / np.sqrt(k)).astype(F32)
    b = rng.standard_normal(24).astype(F32)
    return {
        "int8": QuantizedLinear.from_config(w(24, 40), b, Int8DynamicConfig()),
        "int8_asym": QuantizedLinear.from_config(w(24, 40), None, Int8DynamicConfig(False)),
        "w4a8": QuantizedLinear.from_config(w(24, 70), b, Int4DynamicConfig(32)),
        "w4_asym": QuantizedLinear.from_config(w(24, 70), b, Int4WeightOnlyConfig(32, False)),
        "wo8": QuantizedLinear.from_config(w(24, 40), b, Int8WeightOnlyConfig()),
        "static": QuantizedLinear.from_config(w(24, 40), b, lowbit.Int8StaticConfig(),
                                              input_qparams=(np.float32(0.03), np.uint8(100))),
        "packed": lowbit.pack_weight(w(10, 40), bits=4, group_size=8, mode="weight_only"),
        "emb8": QuantizedEmbedding.from_float(w(30, 16)),
        "emb4": QuantizedEmbedding.from_float(w(30, 16), bits=4, group_size=8),
        "norm.weight": rng.standard_normal(24).astype(F32),
        "ids": np.arange(12, dtype=np.int64).reshape(3, 4),
        "half": rng.standard_normal(5).astype(np.float16),
    }


def test_round_trip_is_bit_exact(tmp_path, rng):
    objs = _objects(rng)
    path = tmp_path / "m.safetensors"
    lowbit.save(objs, path)
    back = lowbit.load(path)
    assert set(back) == set(objs)
    x40, x70 = rng.standard_normal((3, 40)).astype(F32), rng.standard_normal((3, 70)).astype(F32)
    for name in ("int8", "int8_asym", "wo8", "static"):
        assert type(back[name]) is QuantizedLinear and back[name].scheme == objs[name].scheme
        assert_bits_equal(back[name](x40), objs[name](x40), name)
    for name in ("w4a8", "w4_asym"):
        assert back[name].weight.mode == objs[name].weight.mode
        assert_bits_equal(back[name](x70), objs[name](x70), name)
    assert_bits_equal(lowbit.linear(x40, back["packed"]), lowbit.linear(x40, objs["packed"]))
    for name in ("emb8", "emb4"):
        idx = np.array([0, 5, 29])
        assert_bits_equal(back[name](idx), objs[name](idx), name)
    for name in ("norm.weight", "ids", "half"):
        np.testing.assert_array_equal(back[name], objs[name])
        assert back[name].dtype == objs[name].dtype and back[name].flags.writeable


def test_file_is_standard_safetensors_with_metadata(tmp_path, rng):
    objs = _objects(rng)
    path = tmp_path / "m.safetensors"
    lowbit.save(objs, path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    meta = header["__metadata__"]
    assert meta["format"] == "lowbit" and meta["format_version"] == "1"
    layers = json.loads(meta["layers"])
    assert layers["w4a8"] == {"kind": "linear", "scheme": "dynamic", "bits": 4, "mode": "w4a8",
                              "group_size": 32, "dtype": "int4", "axis": 1, "shape": [24, 70],
                              "nibbles": True, "bias": True}
    assert layers["int8"]["bits"] == 8 and layers["int8"]["group_size"] is None
    assert layers["static"]["scheme"] == "static" and layers["wo8"]["scheme"] == "weight_only"
    assert header["w4a8.qweight"]["shape"] == [24, 35]   # two values a byte
    assert header["int8.qweight"]["dtype"] == "I8" and header["int8.scale"]["dtype"] == "F32"
    st = pytest.importorskip("safetensors.numpy")
    loaded = st.load_file(str(path))   # the reference reader agrees with the layout
    qt = objs["int8"].weight.qtensor()
    np.testing.assert_array_equal(loaded["int8.qweight"], qt.data)
    np.testing.assert_array_equal(loaded["int8.scale"], qt.scale)


def test_reads_what_the_reference_writer_writes(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    arrays = {"a": np.arange(6, dtype=F32).reshape(2, 3), "b": np.array([1, -2], np.int8),
              "c": np.zeros((0, 4), np.int64)}
    path = tmp_path / "ref.safetensors"
    st.save_file(arrays, str(path), metadata={"k": "v"})
    tensors, metadata, codes = _safetensors.read(path.read_bytes())
    assert metadata == {"k": "v"} and codes["a"] == "F32"
    for k, v in arrays.items():
        np.testing.assert_array_equal(tensors[k], v)
    with pytest.raises(ValueError, match="not a lowbit file"):
        lowbit.load(path)


def _saved(tmp_path, rng):
    path = tmp_path / "m.safetensors"
    lowbit.save(_objects(rng), path)
    return path, path.read_bytes()


def test_truncated_files_raise_value_error(tmp_path, rng):
    path, raw = _saved(tmp_path, rng)
    n = int.from_bytes(raw[:8], "little")
    for cut in (0, 5, 8, 20, 8 + n - 1, 8 + n, 8 + n + 100, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="truncated|header length|fit|cover|ends"):
            lowbit.load(path)


def test_corrupted_files_raise_value_error(tmp_path, rng):
    path, raw = _saved(tmp_path, rng)
    n = int.from_bytes(raw[:8], "little")
    data = bytearray(raw)
    data[8 + n + 50] ^= 0x40          # a flipped bit in the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        lowbit.load(path)
    data = bytearray(raw)
    data[9] = ord("#")                # broken JSON
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="JSON"):
        lowbit.load(path)
    path.write_bytes(b"\xff" * 8 + raw[8:])   # absurd header length
    with pytest.raises(ValueError, match="header length"):
        lowbit.load(path)


def _rewrite_metadata(path, raw, change):
    tensors, metadata, codes = _safetensors.read(raw)
    change(metadata)
    with open(path, "wb") as f:
        _safetensors.write(f, tensors, metadata, codes)


def test_version_mismatch_and_bad_metadata(tmp_path, rng):
    path, raw = _saved(tmp_path, rng)
    _rewrite_metadata(path, raw, lambda m: m.update(format_version="2"))
    with pytest.raises(ValueError, match="version '2'"):
        lowbit.load(path)
    _rewrite_metadata(path, raw, lambda m: m.update(layers="{not json"))
    with pytest.raises(ValueError, match="metadata"):
        lowbit.load(path)

    def bad_layer(m):
        layers = json.loads(m["layers"])
        layers["w4a8"]["shape"] = [24, 72]
        m["layers"] = json.dumps(layers)
    _rewrite_metadata(path, raw, bad_layer)
    with pytest.raises(ValueError, match="layer 'w4a8'"):
        lowbit.load(path)


def _listing(d):
    return sorted(os.listdir(d))


def test_atomic_write_failure_leaves_old_file(tmp_path, rng, monkeypatch):
    path, raw = _saved(tmp_path, rng)
    before = _listing(tmp_path)
    real_write = _safetensors.write

    def failing_write(f, *args):
        real_write(f, *args)
        f.flush()
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(_safetensors, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        lowbit.save(_objects(rng), path)
    monkeypatch.undo()
    assert path.read_bytes() == raw and _listing(tmp_path) == before

    def failing_replace(src, dst):
        raise OSError("replace failed (simulated)")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="replace failed"):
        lowbit.save(_objects(rng), path)
    monkeypatch.undo()
    assert path.read_bytes() == raw and _listing(tmp_path) == before

    new = tmp_path / "new.safetensors"
    with pytest.raises(TypeError, match="cannot save 'bad'"):
        lowbit.save({"ok": np.ones(3, F32), "bad": object()}, new)
    assert not new.exists() and _listing(tmp_path) == before


def test_save_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError):
        lowbit.save([1, 2], tmp_path / "x")
    with pytest.raises(IsADirectoryError):
        lowbit.save({"a": np.ones(2, F32)}, tmp_path)
    with pytest.raises(ValueError, match="collide"):
        lowbit.save({"fc": QuantizedLinear.from_float(np.ones((2, 4), F32)),
                     "fc.scale": np.ones(2, F32)}, tmp_path / "x")
    with pytest.raises(FileNotFoundError):
        lowbit.load(tmp_path / "missing.safetensors")


def test_int4_file_is_about_half_of_int8(tmp_path, rng):
    w = rng.standard_normal((256, 512)).astype(F32)
    p8, p4 = tmp_path / "8.safetensors", tmp_path / "4.safetensors"
    lowbit.save({"w": QuantizedLinear.from_config(w, None, Int8DynamicConfig())}, p8)
    lowbit.save({"w": QuantizedLinear.from_config(w, None, Int4DynamicConfig(128))}, p4)
    assert p8.stat().st_size < w.nbytes / 3.9
    assert p4.stat().st_size < 0.55 * p8.stat().st_size
