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
import zlib
from typing import Any, Mapping, Optional

import numpy as np

from .._core.version import __version__ as _lowbit_version
from . import safetensors as _safetensors
from .._core.checks import NARROW_QTYPES, QTYPES
from .._core.halfs import HALF_TYPES
from .._core.nibbles import pack_nibbles, unpack_nibbles
from .safetensors import is_int
from ..nn.conv import ACTIVATIONS, CONV_TYPES, conv_class
from ..nn.embedding import QuantizedEmbedding
from ..nn.models import FUNCTIONS, Embedding, Linear, Model, Sequential, function_name
from ..nn.linear import SCHEMES, QuantizedLinear
from ..packed import INT4_MODES, PackedWeight, pack_weight
from ..qtensor import QTensor

# The tensors each kind of layer owns, as suffixes of its name.
_SUFFIXES = {
    "linear": ("qweight", "scale", "zero_point", "bias", "input_scale", "input_zero_point"),
    "packed_weight": ("qweight", "scale", "zero_point"),
    "embedding": ("qweight", "scale"),
    "float_linear": ("weight", "bias"),
    "float_embedding": ("weight",),
    "conv": ("qweight", "scale", "zero_point", "bias", "input_scale", "input_zero_point"),
}
MAX_MODEL_DEPTH = 64   # nested lowbit.nn models in one file
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


def encode_conv(name: str, layer: Any, out: Tensors) -> dict[str, Any]:
    """A lowbit.nn.QuantizedConv2d / Conv1d: its quantized weight (one value per byte, 4-bit
    values too), per-channel scales and zero points, bias, static parameters and geometry (also
    the state_dict of lowbit.torch's conv layers, with name '')."""
    p = key_prefix(name)
    qt = layer.qtensor()
    out[p + "qweight"] = np.ascontiguousarray(qt.data)
    out[p + "scale"] = np.ascontiguousarray(qt.scale, np.float32)
    out[p + "zero_point"] = np.ascontiguousarray(qt.zero_point)
    if layer.bias is not None:
        out[p + "bias"] = layer.bias
    if layer.scheme == "static":
        out[p + "input_scale"] = layer.input_scale
        out[p + "input_zero_point"] = layer.input_zero_point
    meta = {"kind": "conv", "dtype": qt.dtype, "shape": list(qt.data.shape),
            "bits": layer.bits, "scheme": layer.scheme, "bias": layer.bias is not None,
            **layer.geometry()}
    if getattr(layer, "fused_modules", ()):
        meta["fused"] = list(layer.fused_modules)
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


def _encode_float(name: str, layer: Any, out: Tensors) -> dict[str, Any]:
    """A float lowbit.nn.Linear / Embedding (a layer a NumPy model keeps float)."""
    out[key_prefix(name) + "weight"] = layer.weight
    if isinstance(layer, Embedding):
        return {"kind": "float_embedding"}
    if layer.bias is not None:
        out[key_prefix(name) + "bias"] = layer.bias
    return {"kind": "float_linear", "bias": layer.bias is not None}


LAYER_TYPES = (QuantizedLinear, PackedWeight, QuantizedEmbedding, Linear, Embedding, *CONV_TYPES)


def encode(objects: Mapping[str, Any]) -> tuple[Tensors, dict[str, str], dict[str, Any]]:
    """NumPy-side objects -> (tensors, dtype codes, layer metadata)."""
    tensors: Tensors = {}
    codes: dict[str, str] = {}
    layers: dict[str, Any] = {}
    for name, obj in objects.items():
        layer = isinstance(obj, LAYER_TYPES)
        if not isinstance(name, str) or not (name or layer):
            raise ValueError(f"names must be non-empty strings (only a lowbit layer may have the "
                             f"name '': a layer saved on its own), got {name!r}")
        before = set(tensors)
        part: Tensors = {}
        if isinstance(obj, QuantizedLinear):
            layers[name] = encode_linear(name, obj, part)
        elif isinstance(obj, CONV_TYPES):
            layers[name] = encode_conv(name, obj, part)
        elif isinstance(obj, PackedWeight):
            layers[name] = _encode_packed(name, obj, part)
        elif isinstance(obj, QuantizedEmbedding):
            layers[name] = _encode_embedding(name, obj, part)
        elif isinstance(obj, (Linear, Embedding)):
            layers[name] = _encode_float(name, obj, part)
        elif isinstance(obj, np.ndarray):
            part[name] = obj
        elif isinstance(obj, tuple) and len(obj) == 2 and obj[1] == "BF16":
            part[name], codes[name] = obj[0], "BF16"
        else:
            raise TypeError(f"cannot save {name!r}: a {type(obj).__name__} (expected a lowbit "
                            "layer, a float lowbit.nn.Linear / Embedding, a PackedWeight or an "
                            "array)")
        clash = before & set(part)
        if clash:
            raise ValueError(f"tensor names collide: {sorted(clash)}")
        tensors.update(part)
    return tensors, codes, layers


def model_objects(model: Model, path: tuple[str, ...] = (),
                  objects: Optional[dict[str, Any]] = None
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A lowbit.nn.Model -> (the objects to encode, by their file names; the model's structure
    for the metadata). Entries: layers and arrays are stored as objects named by their path
    ("enc.fc1" for the entry "fc1" of the nested model "enc"), lowbit's own functions by name,
    nested models recursively. Anything else raises TypeError naming the entry."""
    objects = {} if objects is None else objects
    if len(path) >= MAX_MODEL_DEPTH:
        raise ValueError(f"model entry {'.'.join(path)!r}: models nested more than "
                         f"{MAX_MODEL_DEPTH} deep")
    if isinstance(model, Sequential):
        structure: dict[str, Any] = {"class": "Sequential"}
    else:
        structure = {"class": "Model", "forward": _qualified_name(model.forward)}
    entries = []
    for name, value in model.layers.items():
        where = ".".join(path + (name,))
        if isinstance(value, Model):
            entries.append({"name": name,
                            "model": model_objects(value, path + (name,), objects)[1]})
        elif isinstance(value, (LAYER_TYPES, np.ndarray)):
            if where in objects:
                raise ValueError(f"model entries {where!r} and another one would both be "
                                 f"saved as {where!r}: rename one")
            objects[where] = value
            entries.append({"name": name, "object": where})
        elif function_name(value) is not None:
            entries.append({"name": name, "function": function_name(value)})
        else:
            kind = (f"the function {_qualified_name(value)}" if callable(value)
                    else f"a {type(value).__name__}")
            raise TypeError(f"cannot save model entry {where!r}: {kind} is not something a "
                            "file can hold (lowbit saves lowbit layers, float lowbit.nn.Linear "
                            "/ Embedding, NumPy arrays, nested lowbit.nn models and lowbit's "
                            f"own functions: {', '.join(FUNCTIONS)}); keep it out of the model's "
                            "layers (in its forward) or save model.layers without it")
    structure["entries"] = entries
    return objects, structure


def _qualified_name(f: Any) -> str:
    return f"{getattr(f, '__module__', None) or '?'}.{getattr(f, '__qualname__', repr(f))}"


def _metadata(tensors: Tensors, layers: dict[str, Any],
              model: Optional[dict[str, Any]] = None, buffers: tuple[str, ...] = ()
              ) -> dict[str, str]:
    crc = {k: zlib.crc32(np.ascontiguousarray(v).data) for k, v in tensors.items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "lowbit_version": _lowbit_version, "layers": json.dumps(layers, sort_keys=True),
            "crc32": json.dumps(crc, sort_keys=True)}
    if model is not None:
        meta["model"] = json.dumps(model)
    if buffers:
        # a PyTorch model's non-persistent buffers: optional when loading (a skeleton without
        # them, e.g. from another transformers version, still loads)
        meta["buffers"] = json.dumps(sorted(buffers))
    return meta


# ---- decoding -------------------------------------------------------------------------------
def _directory_error(path: str) -> IsADirectoryError:
    inside = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
    hf = os.path.exists(os.path.join(path, "config.json"))
    what = (" (it looks like a Hugging Face / sentence-transformers model folder)" if hf else "")
    files = f"; it holds {inside[:4]}" if inside else ""
    return IsADirectoryError(f"{path!r} is a directory{what}{files}: lowbit.load reads one file "
                             "written by lowbit.save")


def _not_lowbit(path: str, tensors: Tensors, metadata: dict[str, str]) -> str:
    """What a safetensors file without lowbit's format tag is, as far as its names tell."""
    quantized = sorted(k[:-len(".qweight")] for k in tensors
                       if k.endswith(".qweight") and k[:-len("qweight")] + "scale" in tensors)
    tag = metadata.get("format")
    written = f" (its metadata says format {tag!r})" if tag is not None else ""
    if quantized:
        return (f"{path!r} holds lowbit-quantized layers ({len(quantized)}, e.g. "
                f"{quantized[0] + '.qweight'!r}) but no lowbit metadata{written}: it was written "
                "from a quantized model's state_dict by another tool, such as Hugging Face "
                "save_pretrained or SentenceTransformer.save. Neither lowbit nor transformers "
                "can load it correctly (from_pretrained gives those layers random weights): "
                "quantize the float model again and save it with lowbit.save")
    if tag == "pt":
        return (f"{path!r} is a PyTorch / Hugging Face safetensors file (metadata format 'pt'), "
                "not a lowbit file: load it with transformers or safetensors, quantize with "
                "lowbit.torch.quantize_, then save with lowbit.save")
    return (f"{path!r} is not a lowbit file (no lowbit format tag in its safetensors "
            f"metadata{written})")


def read(path: "os.PathLike[str] | str"
         ) -> tuple[Tensors, dict[str, str], dict[str, Any], Optional[dict[str, Any]],
                    tuple[str, ...]]:
    """Reads and checks a lowbit file: (tensors, dtype codes, layer metadata, the structure of
    the NumPy model it holds or None, the names of the tensors that are a PyTorch model's
    non-persistent buffers). The metadata is checked field by field here, before anything
    uses it."""
    where = repr(os.fspath(path))
    if os.path.isdir(os.fspath(path)):
        raise _directory_error(os.fspath(path))
    with open(os.fspath(path), "rb") as f:
        buf = f.read()
    try:
        tensors, metadata, codes = _safetensors.read(buf)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(_not_lowbit(os.fspath(path), tensors, metadata))
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{where} has lowbit format version {version!r}; this "
                         f"lowbit ({_lowbit_version}) reads version {FORMAT_VERSION}")
    try:
        layers = _safetensors.parse_json(metadata["layers"].encode(), "lowbit metadata (layers)")
        crc = _safetensors.parse_json(metadata["crc32"].encode(), "lowbit metadata (crc32)")
        model = (None if "model" not in metadata else
                 _safetensors.parse_json(metadata["model"].encode(), "lowbit metadata (model structure)"))
        buffers = _safetensors.parse_json(metadata.get("buffers", "[]").encode(),
                                          "lowbit metadata (buffers)")
    except KeyError as e:
        raise ValueError(f"{where}: corrupted lowbit metadata (no {e} entry)") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if not isinstance(layers, dict) or not isinstance(crc, dict) or set(crc) != set(tensors):
        raise ValueError(f"{where}: corrupted lowbit metadata (layer or checksum "
                         "table does not match the tensors)")
    if not (isinstance(buffers, list) and all(isinstance(b, str) and b in tensors
                                              for b in buffers)):
        raise ValueError(f"{where}: corrupted lowbit metadata (the buffer list does not name "
                         "the file's tensors)")
    for name, a in tensors.items():
        if not is_int(crc[name]) or zlib.crc32(np.ascontiguousarray(a).data) != crc[name]:
            raise ValueError(f"{where}: tensor {name!r} is corrupted (CRC-32 mismatch)")
    for name, meta in layers.items():
        try:
            check_layer_meta(meta)
        except ValueError as e:
            raise ValueError(f"{where}: layer {name!r}: {e}") from None
    if model is not None:
        try:
            _check_structure(model, set(_owner_names(tensors, layers)), set(), 0)
        except ValueError as e:
            raise ValueError(f"{where}: corrupted lowbit model structure: {e}") from None
    return tensors, codes, layers, model, tuple(buffers)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_shape2(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(is_int(d) and d >= 0 for d in v)


def _is_group(v: Any) -> bool:
    return v is None or (is_int(v) and 0 < v)


def _is_bits(v: Any) -> bool:
    return is_int(v) and v in (4, 8)


def _is_qtype(v: Any) -> bool:
    return isinstance(v, str) and v in NARROW_QTYPES   # the saved layers' weight types


def _is_weight_bits(v: Any) -> bool:   # a linear's weight: the integer widths or 16-bit floats
    return is_int(v) and v in (4, 8, 16)


def _is_weight_type(v: Any) -> bool:
    return isinstance(v, str) and (v in NARROW_QTYPES or v in HALF_TYPES)


def _is_axis(v: Any) -> bool:
    return v is None or (is_int(v) and v in (0, 1))


def _is_mode(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v in INT4_MODES)


def _is_scheme(v: Any) -> bool:
    return isinstance(v, str) and v in SCHEMES


def _is_int_list(v: Any, lengths: tuple[int, ...], minimum: int) -> bool:
    return (isinstance(v, list) and len(v) in lengths
            and all(is_int(d) and d >= minimum for d in v))


def _is_conv_shape(v: Any) -> bool:
    return _is_int_list(v, (3, 4), 1)


def _is_activation(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v in ACTIVATIONS)


_QTENSOR_FIELDS = {"dtype": _is_weight_type, "axis": _is_axis, "group_size": _is_group,
                   "shape": _is_shape2, "nibbles": _is_bool, "bits": _is_weight_bits,
                   "mode": _is_mode}
# Every field each kind of layer record must have, with its check: a file is input, and a
# fuzzed one can put any JSON value in any field.
LAYER_FIELDS: dict[str, dict[str, Any]] = {
    "linear": {**_QTENSOR_FIELDS, "scheme": _is_scheme, "bias": _is_bool},
    "packed_weight": _QTENSOR_FIELDS,
    "embedding": {"bits": _is_weight_bits, "group_size": _is_group, "shape": _is_shape2},
    "float_linear": {"bias": _is_bool},
    "float_embedding": {},
    "conv": {"dtype": _is_qtype, "shape": _is_conv_shape, "bits": _is_bits,
             "scheme": lambda v: v in ("dynamic", "static"), "bias": _is_bool,
             "stride": lambda v: _is_int_list(v, (1, 2), 1),
             "pads": lambda v: _is_int_list(v, (2, 4), 0),
             "dilation": lambda v: _is_int_list(v, (1, 2), 1),
             "groups": lambda v: is_int(v) and v >= 1, "activation": _is_activation},
}


def check_layer_meta(meta: Any) -> dict[str, Any]:
    """A layer record of the file's metadata, every field present with a value of its type
    and range, or ValueError saying which is not."""
    if not isinstance(meta, dict):
        raise ValueError(f"its record is not a JSON object ({_short(meta)})")
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in LAYER_FIELDS:
        raise ValueError(f"unknown layer kind {_short(kind)}")
    for key, check in LAYER_FIELDS[kind].items():
        if key not in meta:
            raise ValueError(f"its record lacks {key!r}")
        if not check(meta[key]):
            raise ValueError(f"bad {key!r} in its record: {_short(meta[key])}")
    return meta


def _owner_names(tensors: Tensors, layers: dict[str, Any]) -> list[str]:
    """The names decode returns: one per layer, and the tensors no layer owns."""
    owned = {key_prefix(name) + suffix for name, meta in layers.items()
             for suffix in _SUFFIXES[meta["kind"]]}
    return list(layers) + [t for t in tensors if t not in owned]


def _check_structure(node: Any, names: set[str], used: set[str], depth: int) -> None:
    """A model structure (what model_objects writes): every field typed, every object named
    once, and, at the top (depth 0), every layer and tensor of the file part of the model."""
    if depth >= MAX_MODEL_DEPTH:
        raise ValueError(f"models nested more than {MAX_MODEL_DEPTH} deep")
    if not isinstance(node, dict) or node.get("class") not in ("Sequential", "Model") \
            or not isinstance(node.get("entries"), list):
        raise ValueError(f"a model record must have a class and entries: {_short(node)}")
    if node["class"] == "Model" and not isinstance(node.get("forward"), str):
        raise ValueError("a Model record must name its forward")
    seen: set[str] = set()
    for entry in node["entries"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"bad entry {_short(entry)}")
        if entry["name"] in seen:
            raise ValueError(f"entry {entry['name']!r} appears twice")
        seen.add(entry["name"])
        kinds = [k for k in ("object", "function", "model") if k in entry]
        if len(kinds) != 1:
            raise ValueError(f"entry {entry['name']!r} must be one object, function or model")
        value = entry[kinds[0]]
        if kinds[0] == "model":
            _check_structure(value, names, used, depth + 1)
        elif kinds[0] == "function":
            if not isinstance(value, str) or value not in FUNCTIONS:
                raise ValueError(f"entry {entry['name']!r}: unknown function {_short(value)}")
        else:
            if not isinstance(value, str) or value not in names or value in used:
                raise ValueError(f"entry {entry['name']!r}: {_short(value)} is not a layer or "
                                 "tensor of the file, or is used twice")
            used.add(value)
    if depth == 0 and used != names:
        raise ValueError(f"layers or tensors outside the model: {sorted(names - used)[:8]}")


def _qtensor(name: str, meta: dict[str, Any], t: Tensors) -> QTensor:
    dtype = meta["dtype"]
    p = key_prefix(name)
    q, scale, zero = t[p + "qweight"], t[p + "scale"], t[p + "zero_point"]
    shape = tuple(meta["shape"])
    if meta["nibbles"]:
        packed_shape = (shape[0], shape[1] // 2)
        if shape[1] % 2 or q.dtype != np.uint8 or q.shape != packed_shape:
            raise ValueError(f"4-bit values must be uint8 of shape {packed_shape} for a "
                             f"{shape} weight (two per byte), got {q.dtype} {q.shape}")
        u = unpack_nibbles(q)
        data = (u.astype(np.int8) - np.int8(8)) if dtype == "int4" else u
    else:
        data = np.array(q)
    if dtype in HALF_TYPES:
        # 16-bit float weights: their bit patterns, per tensor, scale 1 and zero point 0
        if meta["nibbles"] or data.shape != shape or data.dtype != np.uint16 \
                or scale.size != 1 or zero.size != 1 or zero.dtype != np.uint16:
            raise ValueError(f"a {dtype} weight must be uint16 bit patterns of shape {shape} "
                             f"with one scale and one uint16 zero point, got {data.dtype} "
                             f"{data.shape}")
        if float(scale.reshape(())) != 1.0 or int(zero.reshape(())) != 0:
            raise ValueError(f"a {dtype} weight has scale 1 and zero point 0")
        return QTensor(data, np.ones((), np.float32), np.zeros((), np.uint16), dtype, None, None)
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
    check_layer_meta(meta)
    p = key_prefix(name)
    kind = meta["kind"]
    if kind == "embedding":
        rows, dim = meta["shape"]
        return QuantizedEmbedding(np.array(t[p + "qweight"]), np.array(t[p + "scale"]),
                                  meta["bits"], dim, meta["group_size"])
    if kind == "float_linear":
        return Linear(np.array(t[p + "weight"]), np.array(t[p + "bias"]) if meta["bias"]
                      else None)
    if kind == "float_embedding":
        return Embedding(np.array(t[p + "weight"]))
    if kind == "conv":
        return _decode_conv(p, meta, t)
    qt = _qtensor(name, meta, t)
    if kind == "packed_weight":
        return pack_weight(qt, bits=meta["bits"], mode=meta["mode"])
    bias = t[p + "bias"] if meta["bias"] else None
    # The weight's bits and mode name its kernels; frozen activation parameters make the layer
    # static. The scheme the file records must be what that gives.
    pw = pack_weight(qt, bits=meta["bits"], mode=meta["mode"])
    if p + "input_scale" in t or p + "input_zero_point" in t:
        layer = QuantizedLinear(pw, bias, input_scale=t[p + "input_scale"],
                                input_zero_point=np.array(t[p + "input_zero_point"]))
    else:
        layer = QuantizedLinear(pw, bias)
    if layer.scheme != meta["scheme"]:
        raise ValueError(f"its record says scheme {meta['scheme']!r}, but its weight and "
                         f"tensors make a {layer.scheme!r} layer")
    return layer


def _decode_conv(p: str, meta: dict[str, Any], t: Tensors) -> Any:
    shape = tuple(meta["shape"])
    spatial = len(shape) - 2
    if not (len(meta["stride"]) == len(meta["dilation"]) == spatial
            and len(meta["pads"]) == 2 * spatial):
        raise ValueError(f"stride, dilation and pads do not match a {spatial}-D convolution")
    storage = QTYPES[meta["dtype"]][0]
    q, scale, zero = t[p + "qweight"], t[p + "scale"], t[p + "zero_point"]
    if q.shape != shape or q.dtype != storage or zero.dtype != storage:
        raise ValueError(f"weight of shape {q.shape} / dtype {q.dtype} does not match the "
                         f"recorded {shape} / {meta['dtype']}")
    qt = QTensor(np.array(q), np.array(scale, np.float32), np.array(zero), meta["dtype"], 0,
                 None)
    bias = t[p + "bias"] if meta["bias"] else None
    static = p + "input_scale" in t or p + "input_zero_point" in t
    layer = conv_class(spatial)(
        qt, bias, stride=tuple(meta["stride"]), padding=tuple(meta["pads"]),
        dilation=tuple(meta["dilation"]), groups=meta["groups"],
        input_scale=t[p + "input_scale"] if static else None,
        input_zero_point=np.array(t[p + "input_zero_point"]) if static else None,
        activation=meta["activation"])
    if layer.scheme != meta["scheme"] or layer.bits != meta["bits"]:
        raise ValueError(f"its record says scheme {meta['scheme']!r} / {meta['bits']} bits, "
                         f"but its tensors make a {layer.scheme!r} {layer.bits}-bit layer")
    fused = meta.get("fused", [])
    if not (isinstance(fused, list) and all(isinstance(n, str) and n for n in fused)):
        raise ValueError(f"its 'fused' record must be a list of module names, got {fused!r}")
    layer.fused_modules = tuple(fused)
    return layer


def decode(tensors: Tensors, codes: dict[str, str], layers: dict[str, Any], path: str = ""
           ) -> dict[str, Any]:
    """-> {layer name: lowbit layer or PackedWeight} and {tensor name: array} for the rest
    (BF16 tensors are returned as float32, exactly)."""
    out: dict[str, Any] = {}
    used: set[str] = set()
    for name, meta in layers.items():
        try:
            kind = check_layer_meta(meta)["kind"]
            out[name] = decode_layer(name, meta, tensors)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path!r}: layer {name!r} cannot be restored: {e}") from None
        used |= {key_prefix(name) + suffix for suffix in _SUFFIXES[kind]} & set(tensors)
    for name, a in tensors.items():
        if name in used:
            continue
        if codes[name] == "BF16":
            out[name] = (a.astype(np.uint32) << np.uint32(16)).view(np.float32)
        else:
            out[name] = np.array(a)
    return out


def build_model(structure: dict[str, Any], objects: dict[str, Any], skeleton: Optional[Model],
                path: str, where: str = "") -> Model:
    """The NumPy model `structure` describes, over the decoded `objects`. A Model's forward is
    code, which the file does not hold: it comes from `skeleton` (a model of the same entries);
    every check runs before anything is built, and the skeleton is not modified."""
    label = f"model entry {where!r}" if where else "the model"
    if skeleton is not None and not isinstance(skeleton, Model):
        raise ValueError(f"{path!r}: {label} is a lowbit.nn model in the file but a "
                         f"{type(skeleton).__name__} in the given model")
    names = [e["name"] for e in structure["entries"]]
    if skeleton is not None and list(skeleton.layers) != names:
        raise ValueError(f"{path!r}: {label} has the entries {names} in the file and "
                         f"{list(skeleton.layers)} in the given model")
    if structure["class"] == "Model" and isinstance(skeleton, Sequential):
        raise ValueError(f"{path!r}: {label} is a lowbit.nn.Model in the file but a Sequential "
                         "in the given model")
    if structure["class"] == "Model" and skeleton is None:
        raise ValueError(f"{path!r}: {label} is a lowbit.nn.Model whose forward "
                         f"({structure['forward']}) is code the file cannot hold: load it with "
                         "lowbit.load(path, model), model a lowbit.nn model with that forward "
                         "and the same entries (the float model, say)")
    layers: dict[str, Any] = {}
    for entry in structure["entries"]:
        name = entry["name"]
        sub = ".".join(filter(None, (where, name)))
        target = None if skeleton is None else skeleton.layers[name]
        if "model" in entry:
            layers[name] = build_model(entry["model"], objects, target, path, sub)
        elif "function" in entry:
            layers[name] = FUNCTIONS[entry["function"]]
            if target is not None and target is not layers[name]:
                raise ValueError(f"{path!r}: model entry {sub!r} is lowbit.nn."
                                 f"{entry['function']} in the file but not in the given model")
        else:
            layers[name] = objects[entry["object"]]
            if target is not None:
                _check_like(layers[name], target, path, sub)
    if structure["class"] == "Sequential":
        not_callable = [name for name, value in layers.items() if not callable(value)]
        if not_callable:
            raise ValueError(f"{path!r}: {label} is a Sequential in the file, but its entries "
                             f"{not_callable} are not layers")
        return Sequential(layers)
    assert skeleton is not None
    return skeleton.with_layers(layers)


def _check_like(value: Any, target: Any, path: str, where: str) -> None:
    """A loaded entry against the given model's: arrays keep their shape, layers their
    in/out features (a float layer may become a quantized one)."""
    def shape_of(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return ("array", v.shape)
        if isinstance(v, (QuantizedEmbedding, Embedding)):
            return ("table", (v.num_embeddings, v.embedding_dim))
        if isinstance(v, (QuantizedLinear, Linear, PackedWeight)):
            return ("linear", (v.out_features, v.in_features))
        return (type(v).__name__, None)
    got, want = shape_of(value), shape_of(target)
    if got != want:
        raise ValueError(f"{path!r}: model entry {where!r} is a {got[0]} {got[1]} in the file "
                         f"and a {want[0]} {want[1]} in the given model")
