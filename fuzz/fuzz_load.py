#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris) of the saved-file loader: `lowbit.load` fed mutated
lowbit files must either load or raise ValueError, never crash, hang, or raise anything else;
a file that loads must load into layers that run. Each input is also tried with its CRC table
recomputed, so mutated tensor bytes reach the checks behind the checksum.

    pip install atheris . && python fuzz/fuzz_load.py -max_total_time=45 fuzz/corpus/fuzz_load
    python fuzz/fuzz_load.py --make-seeds fuzz/corpus/fuzz_load   # rewrites the seed files
"""
from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import zlib

import numpy as np

import lowbit
from lowbit.io import safetensors as _safetensors

PATH = os.path.join(tempfile.mkdtemp(prefix="lowbit_fuzz_load_"), "model.lowbit")
X = {k: np.linspace(-1, 1, 3 * k, dtype=np.float32).reshape(3, k) for k in (8, 16, 32)}


def seed_objects() -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((12, 16)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    return [
        {"fc": lowbit.nn.QuantizedLinear.from_float(w, b)},
        {"fc4": lowbit.nn.QuantizedLinear.from_float(w, b, bits=4, group_size=8, symmetric=False),
         "raw": rng.standard_normal((2, 3)).astype(np.float32)},
        {"pw": lowbit.pack_weight(w[:, :8], bits=4, group_size=8, mode="weight_only"),
         "pw8": lowbit.pack_weight(w, symmetric=False)},
        {"emb": lowbit.nn.QuantizedEmbedding.from_float(w, bits=4, group_size=8),
         "table": lowbit.nn.Embedding(w), "float": lowbit.nn.Linear(w[:, :8], b)},
    ]


def seed_models() -> list[object]:
    """NumPy models: the structure record (entries, lowbit's functions, nesting) is input too."""
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((16, 8)).astype(np.float32)
    w2 = rng.standard_normal((8, 16)).astype(np.float32)
    inner = lowbit.nn.Sequential({"fc": lowbit.nn.QuantizedLinear.from_float(w2, bits=4,
                                                                             group_size=8)})
    return [lowbit.nn.Sequential({"fc1": lowbit.nn.Linear(w1), "act": lowbit.nn.relu,
                                  "block": inner})]


def exercise(obj: object) -> None:
    """Whatever loaded must also run: a loader that accepts a file must give working layers."""
    if isinstance(obj, lowbit.nn.Model):
        for value in obj.layers.values():
            exercise({"": value})
        return
    items = obj.items() if isinstance(obj, dict) else []
    for value in (v for _, v in items):
        layer_k = getattr(value, "in_features", None)
        if isinstance(layer_k, int) and layer_k in X:
            if isinstance(value, lowbit.PackedWeight):
                lowbit.linear(X[layer_k], value)
            elif callable(value):
                value(X[layer_k])


def load_and_run(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        obj = lowbit.load(PATH)
    except ValueError:
        return
    exercise(obj)


def with_checksums_fixed(data: bytes) -> bytes | None:
    """The same file with its CRC table recomputed, or None if its container does not parse:
    most mutated tensor bytes stop at the CRC check, and this lets them reach the layer
    checks and the re-packing behind it."""
    try:
        tensors, metadata, codes = _safetensors.read(data)
    except ValueError:
        return None
    if "crc32" not in metadata:
        return None
    crc = {k: zlib.crc32(np.ascontiguousarray(v).data) for k, v in tensors.items()}
    out = io.BytesIO()
    try:
        _safetensors.write(out, tensors, dict(metadata, crc32=json.dumps(crc)), codes)
    except (TypeError, ValueError):   # a BF16 code on a tensor of another width, say
        return None
    return out.getvalue()


def test_one_input(data: bytes) -> None:
    load_and_run(data)
    fixed = with_checksums_fixed(data)
    if fixed is not None and fixed != data:
        load_and_run(fixed)


def make_seeds(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    for i, objects in enumerate(seed_objects() + seed_models()):
        lowbit.save(objects, os.path.join(folder, f"seed_{i}.lowbit"))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        make_seeds(sys.argv[2])
        return
    import atheris
    # Coverage of lowbit's own Python code (the loader, the file format, the re-packing).
    for name, module in list(sys.modules.items()):
        if name == "lowbit" or name.startswith("lowbit."):
            for attr in vars(module).values():
                if callable(attr) and getattr(attr, "__module__", "").startswith("lowbit"):
                    try:
                        atheris.instrument_func(attr)
                    except Exception:   # builtins and C++ functions carry no bytecode
                        pass
    atheris.instrument_func(test_one_input)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
