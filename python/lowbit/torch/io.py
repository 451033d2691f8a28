"""The PyTorch side of lowbit.save / lowbit.load: a module's lowbit layers and remaining state
to and from the NumPy objects lowbit.io encodes."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..nn.linear import QuantizedLinear as NumpyQuantizedLinear
from ..nn.embedding import QuantizedEmbedding as NumpyQuantizedEmbedding
from ..io.safetensors import dtype_code
from ..io.format import decode, key_prefix
from ._kinds import prepared_types
from .chain import chain
from ._modules import finish, named_modules_all, set_submodule
from .embedding import QuantizedEmbedding
from ._ops import like_channels_last
from .conv import QuantizedConv1d, QuantizedConv2d
from .layers import QuantizedLinear
from ..nn.conv import CONV_TYPES as NUMPY_CONV_TYPES

LOWBIT_MODULES = (QuantizedLinear, QuantizedEmbedding, QuantizedConv2d)


def tensor_to_numpy(t: torch.Tensor) -> Any:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return (t.view(torch.int16).numpy().view(np.uint16), "BF16")
    return t.numpy()


def numpy_objects(objects: dict[str, Any]) -> dict[str, Any]:
    """A user's dict with lowbit.torch layers or tensors in it -> NumPy-side objects."""
    out: dict[str, Any] = {}
    for name, obj in objects.items():
        if isinstance(obj, (QuantizedLinear, QuantizedConv2d)):
            out[name] = obj.numpy_layer()
        elif isinstance(obj, QuantizedEmbedding):
            out[name] = obj.table
        elif isinstance(obj, torch.Tensor):
            out[name] = tensor_to_numpy(obj)
        else:
            out[name] = obj
    return out


def module_objects(model: nn.Module) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Each lowbit layer by its module name, and every other state_dict entry and
    non-persistent buffer as an array; and the names of those buffers. A lowbit layer saved on
    its own has the name '' (its tensors are then unprefixed, as in its state_dict)."""
    objects: dict[str, Any] = {}
    prefixes = []
    for name, module in named_modules_all(model):
        if isinstance(module, prepared_types()):
            raise ValueError(f"layer {name!r} ({type(module).__name__}) was prepared but not "
                             "converted: call lowbit.torch.convert(model) before saving")
        if isinstance(module, LOWBIT_MODULES) and name not in objects:
            objects[name] = (module.numpy_layer()
                             if isinstance(module, (QuantizedLinear, QuantizedConv2d))
                             else module.table)
            prefixes.append(key_prefix(name))
    for key, value in model.state_dict().items():
        if not key.startswith(tuple(prefixes)):
            objects[key] = tensor_to_numpy(value)
    buffers = []
    for key, value in non_persistent_buffers(model).items():
        if key.startswith(tuple(prefixes)) or key in objects:
            continue
        array = tensor_to_numpy(value)
        if isinstance(array, np.ndarray) and not _storable(array):
            # e.g. a complex rotary table: optional in the file (it cannot fill a meta
            # skeleton, which lowbit.load then refuses by name), so not a reason to fail
            continue
        objects[key] = array
        buffers.append(key)
    return objects, tuple(buffers)


def _storable(array: np.ndarray) -> bool:
    try:
        dtype_code(array)
    except TypeError:
        return False
    return True


def non_persistent_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Buffers registered with persistent=False (Hugging Face's position_ids, say), by their
    qualified names. No state_dict holds them, so a skeleton built on the meta device could
    not get them from one; lowbit.save writes them with the other tensors, and lowbit.load
    fills them in (a file without them still loads into a skeleton that has them)."""
    out: dict[str, torch.Tensor] = {}
    for name, module in named_modules_all(model):
        for b in getattr(module, "_non_persistent_buffers_set", ()):
            value = module._buffers.get(b)
            if value is not None:
                out.setdefault(key_prefix(name) + b, value)
    return out


def _replacement(name: str, target: nn.Module, obj: Any, path: str) -> nn.Module:
    where = f"{path!r}: layer {name!r}" if name else f"{path!r}: the layer saved on its own"
    if isinstance(obj, NumpyQuantizedLinear):
        if not isinstance(target, (nn.Linear, QuantizedLinear)):
            raise ValueError(f"{where} is a quantized linear in the file but a "
                             f"{type(target).__name__} in the model")
        shape = (target.out_features, target.in_features)
        if shape != (obj.out_features, obj.in_features):
            raise ValueError(f"{where}: the file's weight is {obj.out_features} x "
                             f"{obj.in_features} (out x in), the model's is {shape[0]} x "
                             f"{shape[1]}")
        if (target.bias is not None) != (obj.bias is not None):
            raise ValueError(f"{where}: bias {'present' if obj.bias is not None else 'absent'} "
                             "in the file but not in the model")
        return QuantizedLinear(obj, "loaded", name or None)
    if isinstance(obj, NUMPY_CONV_TYPES):
        want = nn.Conv1d if obj.spatial == 1 else nn.Conv2d
        lowbit_cls = QuantizedConv1d if obj.spatial == 1 else QuantizedConv2d
        if not (isinstance(target, want) or type(target) is lowbit_cls):
            raise ValueError(f"{where} is a quantized {obj.kind} in the file but a "
                             f"{type(target).__name__} in the model")
        mine = (target.out_channels, target.in_channels, tuple(target.kernel_size),
                int(target.groups))
        theirs = (obj.out_channels, obj.in_channels, obj.kernel_size, obj.groups)
        if mine != theirs:
            raise ValueError(f"{where}: the file's convolution is (out_channels, in_channels, "
                             f"kernel_size, groups) {theirs}, the model's {mine}")
        if (target.bias is not None) != (obj.bias is not None):
            raise ValueError(f"{where}: bias {'present' if obj.bias is not None else 'absent'} "
                             "in the file but not in the model")
        # the output layout of the module it replaces (a channels_last weight, or setting)
        channels_last = (target.channels_last if isinstance(target, QuantizedConv2d)
                         else like_channels_last(target.weight))
        return lowbit_cls(obj, "loaded", name or None, channels_last=channels_last)
    if isinstance(obj, NumpyQuantizedEmbedding):
        if not isinstance(target, (nn.Embedding, QuantizedEmbedding)):
            raise ValueError(f"{where} is a quantized embedding in the file but a "
                             f"{type(target).__name__} in the model")
        shape = (target.num_embeddings, target.embedding_dim)
        if shape != (obj.num_embeddings, obj.embedding_dim):
            raise ValueError(f"{where}: the file's table is {obj.num_embeddings} x "
                             f"{obj.embedding_dim}, the model's is {shape[0]} x {shape[1]}")
        return QuantizedEmbedding(obj, target.padding_idx, name or None)
    raise ValueError(f"{where}: a {type(obj).__name__} entry cannot be loaded into a model "
                     "(load it without a model)")


_FUSABLE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Identity)


def _fused_modules(layers: dict[str, Any], objects: dict[str, Any],
                   modules: dict[str, nn.Module], path: str) -> list[str]:
    """The skeleton's modules the file's conv layers fused (each a BatchNorm, ReLU, ReLU6 or
    already an nn.Identity), checked."""
    out: list[str] = []
    for layer in layers:
        for name in getattr(objects[layer], "fused_modules", ()):
            target = modules.get(name)
            if target is None:
                raise ValueError(f"{path!r}: layer {layer!r} fused module {name!r}, which the "
                                 "model lacks")
            if not isinstance(target, _FUSABLE):
                raise ValueError(f"{path!r}: layer {layer!r} fused module {name!r} (a BatchNorm "
                                 f"or ReLU when it was saved), but the model has a "
                                 f"{type(target).__name__} there")
            if not isinstance(target, nn.Identity):
                out.append(name)
    return out


def restore_module(model: nn.Module, tensors: dict[str, np.ndarray], codes: dict[str, str],
                   layers: dict[str, Any], path: str, buffers: tuple[str, ...] = ()
                   ) -> nn.Module:
    """Checks everything first and only then changes the model, so a mismatch leaves it as it
    was. A file holding one layer saved on its own (name '') returns the new lowbit layer: the
    skeleton (an nn.Linear, say) cannot turn into one in place."""
    objects = decode(tensors, codes, layers, path)
    modules = dict(named_modules_all(model))
    new_modules = {}
    for name in layers:
        if name not in modules:
            raise ValueError(f"{path!r}: layer {name!r} is in the file but not in the model")
        new_modules[name] = _replacement(name, modules[name], objects[name], path)
    # the modules the file's convs had fused (BatchNorm, ReLU): an unfused float skeleton
    # still holds them; they become nn.Identity as in the saved model
    fused = _fused_modules(layers, objects, modules, path)
    prefixes = tuple(key_prefix(n) for n in list(layers) + fused)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    extra = {k: v for k, v in non_persistent_buffers(model).items()
             if not (prefixes and k.startswith(prefixes)) and k not in state}
    # the file's non-persistent buffers are optional: a skeleton without one skips it
    floats = {k: v for k, v in objects.items()
              if k not in layers and (k not in buffers or k in state or k in extra)}
    for key, value in floats.items():
        have = state.get(key, extra.get(key))
        if have is None:
            raise ValueError(f"{path!r}: tensor {key!r} is in the file but not in the model")
        if tuple(have.shape) != tuple(value.shape):
            raise ValueError(f"{path!r}: tensor {key!r} has shape {tuple(value.shape)} in the "
                             f"file and {tuple(have.shape)} in the model")
    missing = sorted(set(state) - set(floats))
    if missing:
        raise ValueError(f"{path!r}: the model has state the file lacks: {missing[:8]}"
                         + (" ..." if len(missing) > 8 else ""))
    if "" in new_modules:
        if len(new_modules) > 1 or floats:
            raise ValueError(f"{path!r}: a layer saved on its own cannot sit beside other layers "
                             "or tensors")
        return new_modules[""]
    _check_meta(model, prefixes, floats, path)
    for name, new in new_modules.items():
        set_submodule(model, name, new)
    for name in fused:
        set_submodule(model, name, nn.Identity())
    loaded = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in floats.items()}
    # A skeleton built on the meta device has no storage to copy into (load_state_dict's copy
    # would be a no-op with a warning): its tensors are replaced by the loaded ones (assign),
    # keeping each Parameter's requires_grad; tensors with storage are copied into as usual.
    on_meta = {k for k, t in state.items() if isinstance(t, torch.Tensor) and t.is_meta}
    model.load_state_dict({k: v for k, v in loaded.items() if k in on_meta}, strict=False,
                          assign=True)
    model.load_state_dict({k: v for k, v in loaded.items() if k not in on_meta and k in state},
                          strict=False)
    for key, buffer in extra.items():   # non-persistent buffers: no state_dict route
        if key not in loaded:
            continue
        parent, _, leaf = key.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        if buffer.is_meta:
            owner._buffers[leaf] = loaded[key].to(buffer.dtype)
        else:
            with torch.no_grad():
                buffer.copy_(loaded[key])
    finish(model)
    chain(model)   # the integer chains of lowbit.torch.convert, linked again
    return model


def _check_meta(model: nn.Module, prefixes: tuple[str, ...], floats: dict[str, Any],
                path: str) -> None:
    """Refuses, before the model is touched, a skeleton with meta-device tensors the file
    cannot fill: non-persistent buffers (not in any state_dict, so not in the file, e.g.
    Hugging Face's position_ids) or tensors of a module that is not in the file."""
    named = list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False))
    left = sorted({k for k, t in named if t.is_meta and k not in floats
                   and not (prefixes and k.startswith(prefixes))})
    if left:
        raise ValueError(
            f"{path!r}: the model has tensors on the meta device that the file does not hold: "
            f"{left[:8]}{' ...' if len(left) > 8 else ''} (buffers registered with "
            "persistent=False are not in a state_dict, so no saved file has them). Build the "
            "skeleton on the CPU, or materialize and fill those tensors first (e.g. "
            "model.to_empty(device='cpu'), then set them); nothing was loaded")


class TorchIO:
    """lowbit.io's adapter for PyTorch modules (registered by lowbit.torch)."""

    kind = "torch.nn.Module"

    @staticmethod
    def claims(obj: Any) -> bool:
        return isinstance(obj, nn.Module)

    module_objects = staticmethod(module_objects)
    numpy_objects = staticmethod(numpy_objects)
    restore_module = staticmethod(restore_module)
