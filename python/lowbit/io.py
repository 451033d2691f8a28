"""`save` / `load`: quantized models and layers in a safetensors file.

The file holds, per quantized layer, its canonical quantized weight (the QTensor: values, scales,
zero points; 4-bit values two per byte, even index in the low nibble), its bias and (static
layers) the frozen activation scale and zero point; every other tensor (a PyTorch model's
remaining state, or NumPy arrays) is stored as it is. `__metadata__` records the format and its
version, each layer's kind, bits, group size, scheme, mode and dtype, and a CRC-32 per tensor.
Loading re-packs the weights for the CPU it runs on. docs/conversion.md has the layout.
"""
from __future__ import annotations

import json
import os
import sys
import zlib
from typing import Any, Mapping, Optional

import numpy as np

from . import __version__ as _lowbit_version  # noqa: F401  (set before this module loads)
from . import _safetensors
from ._checks import QTYPES
from ._nibbles import pack_nibbles, unpack_nibbles
from .embedding import QuantizedEmbedding
from .nn import QuantizedLinear
from .packed import PackedWeight, pack_weight
from .qtensor import QTensor

_SUFFIXES = ("qweight", "scale", "zero_point", "bias", "input_scale", "input_zero_point")
FORMAT = "lowbit"
FORMAT_VERSION = "1"
Tensors = dict[str, np.ndarray]


def key_prefix(name: str) -> str:
    """A layer's tensors are `<name>.qweight`, `<name>.scale`, ...; a layer with the name ''
    (a PyTorch module saved on its own, or one module's state_dict) has them unprefixed."""
    return name + "." if name else ""


# ---- encoding -------------------------------------------------------------------------------
def _encode_qtensor(prefix: str, qt: QTensor, out: Tensors) -> dict[str, Any]:
    four_bit = qt.dtype in ("int4", "uint4")
    offset = 8 if qt.dtype == "int4" else 0
    if four_bit:
        out[prefix + "qweight"] = pack_nibbles((qt.data.astype(np.int16) + offset).astype(np.uint8))
    else:
        out[prefix + "qweight"] = np.ascontiguousarray(qt.data)
    out[prefix + "scale"] = np.ascontiguousarray(qt.scale, np.float32)
    out[prefix + "zero_point"] = np.ascontiguousarray(qt.zero_point)
    return {"dtype": qt.dtype, "axis": qt.axis, "group_size": qt.group_size,
            "shape": list(qt.data.shape), "nibbles": four_bit}


def encode_linear(name: str, layer: QuantizedLinear, out: Tensors) -> dict[str, Any]:
    """Adds the layer's canonical tensors to `out` and returns its metadata (also the state_dict
    of lowbit.torch.QuantizedLinear, with name '')."""
    p = key_prefix(name)
    w = layer.weight
    qt = w.qtensor() if isinstance(w, PackedWeight) else w
    meta = _encode_qtensor(p, qt, out)
    meta.update(kind="linear", scheme=layer.scheme, bits=layer.bits,
                mode=w.mode if isinstance(w, PackedWeight) else None,
                bias=layer.bias is not None)
    if layer.bias is not None:
        out[p + "bias"] = layer.bias
    if layer.scheme == "static":
        assert layer.input_scale is not None and layer.input_zero_point is not None
        out[p + "input_scale"] = layer.input_scale
        out[p + "input_zero_point"] = layer.input_zero_point
    return meta


def _encode_packed(name: str, pw: PackedWeight, out: Tensors) -> dict[str, Any]:
    meta = _encode_qtensor(key_prefix(name), pw.qtensor(), out)
    meta.update(kind="packed_weight", bits=pw.bits, mode=pw.mode)
    return meta


def _encode_embedding(name: str, emb: QuantizedEmbedding, out: Tensors) -> dict[str, Any]:
    out[key_prefix(name) + "qweight"] = emb.data
    out[key_prefix(name) + "scale"] = emb.scale
    return {"kind": "embedding", "bits": emb.bits, "group_size": emb.group_size,
            "shape": [emb.num_embeddings, emb.embedding_dim]}


def encode(objects: Mapping[str, Any]) -> tuple[Tensors, dict[str, str], dict[str, Any]]:
    """NumPy-side objects -> (tensors, dtype codes, layer metadata)."""
    tensors: Tensors = {}
    codes: dict[str, str] = {}
    layers: dict[str, Any] = {}
    for name, obj in objects.items():
        layer = isinstance(obj, (QuantizedLinear, PackedWeight, QuantizedEmbedding))
        if not isinstance(name, str) or not (name or layer):
            raise ValueError(f"names must be non-empty strings (only a lowbit layer may have the "
                             f"name '': a layer saved on its own), got {name!r}")
        before = set(tensors)
        part: Tensors = {}
        if isinstance(obj, QuantizedLinear):
            layers[name] = encode_linear(name, obj, part)
        elif isinstance(obj, PackedWeight):
            layers[name] = _encode_packed(name, obj, part)
        elif isinstance(obj, QuantizedEmbedding):
            layers[name] = _encode_embedding(name, obj, part)
        elif isinstance(obj, np.ndarray):
            part[name] = obj
        elif isinstance(obj, tuple) and len(obj) == 2 and obj[1] == "BF16":
            part[name], codes[name] = obj[0], "BF16"
        else:
            raise TypeError(f"cannot save {name!r}: a {type(obj).__name__} (expected a lowbit "
                            "layer, a PackedWeight or an array)")
        clash = before & set(part)
        if clash:
            raise ValueError(f"tensor names collide: {sorted(clash)}")
        tensors.update(part)
    return tensors, codes, layers


def _metadata(tensors: Tensors, layers: dict[str, Any]) -> dict[str, str]:
    crc = {k: zlib.crc32(np.ascontiguousarray(v).data) for k, v in tensors.items()}
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "lowbit_version": _lowbit_version, "layers": json.dumps(layers, sort_keys=True),
            "crc32": json.dumps(crc, sort_keys=True)}


def save(obj: Any, path: "os.PathLike[str] | str") -> None:
    """Writes a model or layers to `path` (safetensors), atomically.

    obj: a PyTorch module (its lowbit layers plus the rest of its state_dict; a lowbit layer on
    its own is stored under the name '', its tensors unprefixed), or a dict
    name -> lowbit.nn.QuantizedLinear / QuantizedEmbedding / PackedWeight / NumPy array (what
    `lowbit.quantize_weights` returns), or such a dict with lowbit.torch layers and tensors."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        from .torch.io import module_objects
        objects = module_objects(obj)
    elif isinstance(obj, Mapping):
        objects = dict(obj)
        if torch is not None:
            from .torch.io import numpy_objects
            objects = numpy_objects(objects)
    else:
        raise TypeError(f"save takes a torch.nn.Module or a dict, got {type(obj).__name__}")
    tensors, codes, layers = encode(objects)
    metadata = _metadata(tensors, layers)
    _safetensors.atomic_write(os.fspath(path),
                              lambda f: _safetensors.write(f, tensors, metadata, codes))


# ---- decoding -------------------------------------------------------------------------------
def read(path: "os.PathLike[str] | str") -> tuple[Tensors, dict[str, str], dict[str, Any]]:
    """Reads and checks a lowbit file: (tensors, dtype codes, layer metadata)."""
    with open(os.fspath(path), "rb") as f:
        buf = f.read()
    try:
        tensors, metadata, codes = _safetensors.read(buf)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)!r}: {e}") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not a lowbit file (no lowbit format tag in its "
                         "safetensors metadata)")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{os.fspath(path)!r} has lowbit format version {version!r}; this "
                         f"lowbit ({_lowbit_version}) reads version {FORMAT_VERSION}")
    try:
        layers = json.loads(metadata["layers"])
        crc = json.loads(metadata["crc32"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{os.fspath(path)!r}: corrupted lowbit metadata ({e})") from None
    if not isinstance(layers, dict) or not isinstance(crc, dict) or set(crc) != set(tensors):
        raise ValueError(f"{os.fspath(path)!r}: corrupted lowbit metadata (layer or checksum "
                         "table does not match the tensors)")
    for name, a in tensors.items():
        if zlib.crc32(np.ascontiguousarray(a).data) != crc[name]:
            raise ValueError(f"{os.fspath(path)!r}: tensor {name!r} is corrupted (CRC-32 "
                             "mismatch)")
    return tensors, codes, layers


def _qtensor(name: str, meta: dict[str, Any], t: Tensors) -> QTensor:
    dtype = meta["dtype"]
    if dtype not in QTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    p = key_prefix(name)
    q, scale, zero = t[p + "qweight"], t[p + "scale"], t[p + "zero_point"]
    shape = tuple(meta["shape"])
    if meta["nibbles"]:
        u = unpack_nibbles(q)
        data = (u.astype(np.int8) - np.int8(8)) if dtype == "int4" else u
    else:
        data = np.array(q)
    storage, lo, hi = QTYPES[dtype]
    if data.shape != shape or data.dtype != storage or zero.dtype != storage:
        raise ValueError(f"weight of shape {data.shape} / dtype {data.dtype} does not match "
                         f"the recorded {shape} / {dtype}")
    if zero.size and (zero.min() < lo or zero.max() > hi):
        raise ValueError(f"zero points outside the {dtype} range")
    return QTensor(data, np.array(scale, np.float32), np.array(zero), dtype, meta["axis"],
                   meta["group_size"])


def decode_layer(name: str, meta: dict[str, Any], t: Tensors) -> Any:
    """The layer `meta` describes, from its tensors in `t` (re-packed for this CPU)."""
    p = key_prefix(name)
    kind = meta["kind"]
    if kind == "embedding":
        rows, dim = meta["shape"]
        return QuantizedEmbedding(np.array(t[p + "qweight"]), np.array(t[p + "scale"]),
                                  meta["bits"], dim, meta["group_size"])
    qt = _qtensor(name, meta, t)
    if kind == "packed_weight":
        return pack_weight(qt, bits=meta["bits"], mode=meta["mode"])
    if kind != "linear":
        raise ValueError(f"unknown layer kind {kind!r}")
    bias = t[p + "bias"] if meta["bias"] else None
    if meta["scheme"] == "weight_only" and meta["bits"] == 8:
        return QuantizedLinear(qt, bias)
    pw = pack_weight(qt, bits=meta["bits"], mode=meta["mode"])
    if meta["scheme"] == "static":
        return QuantizedLinear(pw, bias, input_scale=t[p + "input_scale"],
                               input_zero_point=np.array(t[p + "input_zero_point"]))
    return QuantizedLinear(pw, bias)


def decode(tensors: Tensors, codes: dict[str, str], layers: dict[str, Any], path: str = ""
           ) -> dict[str, Any]:
    """-> {layer name: lowbit layer or PackedWeight} and {tensor name: array} for the rest
    (BF16 tensors are returned as float32, exactly)."""
    out: dict[str, Any] = {}
    used: set[str] = set()
    for name, meta in layers.items():
        owned = {key_prefix(name) + suffix for suffix in _SUFFIXES} & set(tensors)
        try:
            out[name] = decode_layer(name, meta, tensors)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path!r}: layer {name!r} cannot be restored: {e}") from None
        used |= owned
    for name, a in tensors.items():
        if name in used:
            continue
        if codes[name] == "BF16":
            out[name] = (a.astype(np.uint32) << np.uint32(16)).view(np.float32)
        else:
            out[name] = np.array(a)
    return out


def load(path: "os.PathLike[str] | str", model: Any = None) -> Any:
    """Reads a file written by `save`.

    model=None: returns a dict name -> lowbit.nn.QuantizedLinear / QuantizedEmbedding /
    PackedWeight (re-packed for this CPU) or NumPy array. model=a PyTorch module with the same
    structure as the saved one, in float (e.g. freshly built): its nn.Linear / nn.Embedding
    layers named in the file are replaced by lowbit layers, the other tensors are loaded into it,
    and the model is returned. A layer missing from the model, or a shape that differs, raises
    ValueError naming it; so does a truncated, corrupted or other-version file. A file holding
    a single lowbit layer saved on its own (`save(QuantizedLinear...)`: the name '') loads into
    a skeleton nn.Linear / nn.Embedding of the same shape (or a lowbit layer) and returns the
    new lowbit layer, since a module cannot change its class in place."""
    tensors, codes, layers = read(path)
    if model is None:
        return decode(tensors, codes, layers, os.fspath(path))
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    from .torch.io import restore_module
    return restore_module(model, tensors, codes, layers, os.fspath(path))
