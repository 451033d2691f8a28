"""Loading a folder save_pretrained wrote from a lowbit model: which modules of the checkpoint
are lowbit layers (their `format` entries), stand-ins that take the checkpoint's tensors, and
the lowbit layers built from them.

Each lowbit layer's state_dict, and so the safetensors file, holds its canonical quantized
tensors (`qweight`, `scale`, `zero_point`, `bias`, a static layer's `input_scale` /
`input_zero_point`; an embedding's `qweight`, `scale`) and `format`: the layer's format as UTF-8
JSON in a uint8 tensor. Before transformers loads the weights, every module the checkpoint
holds a lowbit layer for becomes a LowbitSlot whose buffers (on the meta device) have the
checkpoint's names, shapes and dtypes, read from the file headers (the `format` entries' few
bytes are read too), so transformers loads the tensors as they are, with its own shape checks
and without a float weight ever existing. After loading, each slot becomes the lowbit layer
lowbit.io's decode_layer makes of its tensors (the checks and re-packing of lowbit.load).
"""
from __future__ import annotations

import json
from typing import Any, Optional

import torch
from torch import nn

from ..io.format import decode_layer
from ..quant.config import CONFIG_TYPES
from ..torch import QuantizedEmbedding, QuantizedLinear
from ..torch._modules import set_submodule

# The state_dict entry of a lowbit layer that holds its format (lowbit.torch's layers write it).
FORMAT_KEY = "format"
# safetensors dtype names -> torch dtypes
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
           "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
           "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
# The module each kind of lowbit layer stands in for, and the tensors it cannot lack (besides
# `format`; a linear's bias is there or not, as the model's; a static layer's input_scale and
# input_zero_point too).
_TARGETS = {"linear": nn.Linear, "embedding": nn.Embedding}
_REQUIRED = {"linear": ("qweight", "scale", "zero_point"), "embedding": ("qweight", "scale")}
_STATIC = ("input_scale", "input_zero_point")
# A saved linear layer's config, by the (bits, scheme, mode) its format records: for the
# description its summary line shows.
_CONFIG_BY_FORMAT = {(t.bits, t.scheme, t.mode): t for t in CONFIG_TYPES}


class CheckpointLayer:
    """One lowbit layer of a checkpoint: its key prefix, format record and tensors' shapes and
    dtypes (by suffix: qweight, scale, ...)."""

    def __init__(self, prefix: str, meta: dict[str, Any],
                 entries: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
        self.prefix = prefix
        self.meta = meta
        self.entries = entries


def _format_record(tensor: torch.Tensor) -> Optional[dict[str, Any]]:
    """A `format` entry's JSON object if it is one of lowbit's, else None."""
    if tensor.dtype != torch.uint8 or tensor.dim() != 1:
        return None
    try:
        meta = json.loads(bytes(tensor.tolist()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != "lowbit":
        return None
    return meta


def checkpoint_layers(files: Optional[list[str]]) -> list[CheckpointLayer]:
    """The lowbit layers of the checkpoint files (safetensors), from their headers and `format`
    entries; no weight is read."""
    from safetensors import safe_open

    if not files:
        raise ValueError("lowbit: loading a lowbit-quantized model needs its checkpoint files "
                         "(from_pretrained of a folder save_pretrained wrote); a state_dict "
                         "passed to from_pretrained is not supported")
    not_safetensors = [f for f in files if not str(f).endswith(".safetensors")]
    if not_safetensors:
        raise ValueError(f"lowbit: {not_safetensors[0]!r} is not a safetensors file; lowbit "
                         "reads the safetensors folders save_pretrained writes")
    # every file first: a sharded checkpoint may put a layer's tensors in different files
    headers: dict[str, tuple[tuple[int, ...], str, str]] = {}   # key -> shape, dtype, file
    formats: dict[str, dict[str, Any]] = {}                     # prefix -> format record
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                part = f.get_slice(key)
                headers[key] = (tuple(part.get_shape()), part.get_dtype(), str(path))
                prefix, _, suffix = key.rpartition(".")
                if suffix == FORMAT_KEY:
                    meta = _format_record(f.get_tensor(key))
                    if meta is not None:
                        formats[prefix] = meta
    entries: dict[str, dict[str, tuple[tuple[int, ...], torch.dtype]]] = {p: {} for p in formats}
    for key, (shape, dtype_name, path) in headers.items():
        prefix, _, suffix = key.rpartition(".")
        if prefix not in entries:
            continue
        dtype = _DTYPES.get(dtype_name)
        if dtype is None:
            raise ValueError(f"lowbit: {path!r}: tensor {key} has dtype {dtype_name}, which no "
                             "lowbit layer stores")
        entries[prefix][suffix] = (shape, dtype)
    return [CheckpointLayer(prefix, meta, entries[prefix]) for prefix, meta in formats.items()]


def model_name(model: nn.Module, modules: dict[str, nn.Module], prefix: str) -> Optional[str]:
    """The module (of `modules`, the model's by name) a checkpoint prefix names: as it is, or
    with the model's base_model_prefix added or removed (transformers renames keys the same
    way); None if the model has none (transformers then reports the keys as unexpected)."""
    base = getattr(model, "base_model_prefix", "") or ""
    candidates = [prefix]
    if base:
        candidates += [prefix[len(base) + 1:] if prefix.startswith(base + ".") else None,
                       f"{base}.{prefix}"]
    for name in candidates:
        if name and name in modules:
            return name
    return None


class LowbitSlot(nn.Module):
    """Stands in for one lowbit layer while transformers loads a lowbit checkpoint: buffers of
    the checkpoint's names, shapes and dtypes, on the meta device until loaded. `build()` makes
    the lowbit layer. It cannot be called."""

    def __init__(self, name: str, layer: CheckpointLayer, target: nn.Module) -> None:
        super().__init__()
        self.lowbit_name = name
        self.meta = dict(layer.meta)
        self.padding_idx = getattr(target, "padding_idx", None)
        for suffix, (shape, dtype) in layer.entries.items():
            self.register_buffer(suffix, torch.empty(shape, dtype=dtype, device="meta"))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"lowbit: layer {self.lowbit_name!r} was not built: the model is "
                           "still loading (or its loading failed)")

    def build(self) -> nn.Module:
        """The lowbit layer the loaded tensors make, or ValueError naming what is missing or
        wrong."""
        tensors = dict(self.named_buffers(recurse=False))
        missing = sorted(k for k, t in tensors.items()
                         if t.is_meta or not getattr(t, "_is_hf_initialized", False))
        if missing:
            raise ValueError(f"lowbit: layer {self.lowbit_name!r}: the checkpoint's "
                             f"{', '.join(missing)} did not load")
        meta = {k: v for k, v in self.meta.items() if k != "format"}
        if meta.get("kind") == "linear":
            meta["bias"] = "bias" in tensors
        try:
            arrays = {k: t.detach().numpy() for k, t in tensors.items() if k != FORMAT_KEY}
            layer = decode_layer("", meta, arrays)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"lowbit: layer {self.lowbit_name!r} cannot be restored from the "
                             f"checkpoint: {e}") from None
        if meta["kind"] == "embedding":
            return QuantizedEmbedding(layer, self.padding_idx, self.lowbit_name)
        return QuantizedLinear(layer, describe(meta), self.lowbit_name)


def describe(meta: dict[str, Any]) -> str:
    """A saved linear layer's config line for summaries: its config's name, group size and
    that it was loaded."""
    cls = _CONFIG_BY_FORMAT.get((meta.get("bits"), meta.get("scheme"), meta.get("mode")))
    name = cls.name if cls is not None else f"{meta.get('bits')}-bit {meta.get('scheme')}"
    group = f", groups of {meta['group_size']}" if meta.get("group_size") else ""
    return f"{name}{group} (loaded)"


def install_slots(model: nn.Module, layers: list[CheckpointLayer]) -> dict[str, LowbitSlot]:
    """Puts a LowbitSlot in the place of each module the checkpoint holds a lowbit layer for;
    ValueError if that module is not the kind of layer the checkpoint's is, or has another
    shape or bias."""
    slots: dict[str, LowbitSlot] = {}
    modules = dict(model.named_modules())
    for layer in layers:
        name = model_name(model, modules, layer.prefix)
        if name is None:
            continue
        target = modules[name]
        kind = layer.meta.get("kind")
        want = _TARGETS.get(kind) if isinstance(kind, str) else None
        if want is None:
            raise ValueError(f"lowbit: the checkpoint's layer {layer.prefix!r} is of kind "
                             f"{kind!r}; lowbit loads linear and embedding layers")
        if not isinstance(target, want):
            raise ValueError(f"lowbit: the checkpoint holds a quantized {kind} for {name!r}, "
                             f"but the model has a {type(target).__name__} there")
        shape = (list(target.weight.shape) if isinstance(target, nn.Embedding)
                 else [target.out_features, target.in_features])
        if layer.meta.get("shape") != shape:
            raise ValueError(f"lowbit: layer {name!r} is {layer.meta.get('shape')} in the "
                             f"checkpoint and {shape} in the model")
        required = _REQUIRED[kind] + (_STATIC if layer.meta.get("scheme") == "static" else ())
        lacks = [suffix for suffix in required if suffix not in layer.entries]
        if lacks:
            raise ValueError(f"lowbit: the checkpoint's layer {layer.prefix!r} lacks "
                             f"{', '.join(lacks)}: the folder is incomplete or was not written "
                             "by save_pretrained of a lowbit model")
        if kind == "linear" and (target.bias is not None) != ("bias" in layer.entries):
            raise ValueError(f"lowbit: layer {name!r} has "
                             f"{'a' if 'bias' in layer.entries else 'no'} bias in the checkpoint "
                             f"but {'one' if target.bias is not None else 'none'} in the model")
        slot = LowbitSlot(name, layer, target)
        set_submodule(model, name, slot)
        slots[name] = slot
    return slots
