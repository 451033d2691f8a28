"""The PyTorch side of lowbit.save / lowbit.load: a module's lowbit layers and remaining state
to and from the NumPy objects lowbit.io encodes."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .. import nn as lnn
from ..io import decode, key_prefix
from ._modules import named_modules_all, set_submodule
from .embedding import QuantizedEmbedding
from .layers import QuantizedLinear

LOWBIT_MODULES = (QuantizedLinear, QuantizedEmbedding)


def tensor_to_numpy(t: torch.Tensor) -> Any:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return (t.view(torch.int16).numpy().view(np.uint16), "BF16")
    return t.numpy()


def numpy_objects(objects: dict[str, Any]) -> dict[str, Any]:
    """A user's dict with lowbit.torch layers or tensors in it -> NumPy-side objects."""
    out: dict[str, Any] = {}
    for name, obj in objects.items():
        if isinstance(obj, QuantizedLinear):
            out[name] = obj.numpy_layer()
        elif isinstance(obj, QuantizedEmbedding):
            out[name] = obj.table
        elif isinstance(obj, torch.Tensor):
            out[name] = tensor_to_numpy(obj)
        else:
            out[name] = obj
    return out


def module_objects(model: nn.Module) -> dict[str, Any]:
    """Each lowbit layer by its module name, and every other state_dict entry as an array. A
    lowbit layer saved on its own has the name '' (its tensors are then unprefixed, as in its
    state_dict)."""
    from .calibrate import ObservedLinear
    from .qat import FakeQuantLinear
    objects: dict[str, Any] = {}
    prefixes = []
    for name, module in named_modules_all(model):
        if isinstance(module, (ObservedLinear, FakeQuantLinear)):
            raise ValueError(f"layer {name!r} ({type(module).__name__}) was prepared but not "
                             "converted: call lowbit.torch.convert(model) before saving")
        if isinstance(module, LOWBIT_MODULES) and name not in objects:
            objects[name] = (module.numpy_layer() if isinstance(module, QuantizedLinear)
                             else module.table)
            prefixes.append(key_prefix(name))
    for key, value in model.state_dict().items():
        if not key.startswith(tuple(prefixes)):
            objects[key] = tensor_to_numpy(value)
    return objects


def _replacement(name: str, target: nn.Module, obj: Any, path: str) -> nn.Module:
    where = f"{path!r}: layer {name!r}" if name else f"{path!r}: the layer saved on its own"
    if isinstance(obj, lnn.QuantizedLinear):
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
        return QuantizedLinear(obj, "loaded")
    if isinstance(obj, lnn.QuantizedEmbedding):
        if not isinstance(target, (nn.Embedding, QuantizedEmbedding)):
            raise ValueError(f"{where} is a quantized embedding in the file but a "
                             f"{type(target).__name__} in the model")
        shape = (target.num_embeddings, target.embedding_dim)
        if shape != (obj.num_embeddings, obj.embedding_dim):
            raise ValueError(f"{where}: the file's table is {obj.num_embeddings} x "
                             f"{obj.embedding_dim}, the model's is {shape[0]} x {shape[1]}")
        return QuantizedEmbedding(obj, target.padding_idx)
    raise ValueError(f"{where}: a {type(obj).__name__} entry cannot be loaded into a model "
                     "(load it without a model)")


def restore_module(model: nn.Module, tensors: dict[str, np.ndarray], codes: dict[str, str],
                   layers: dict[str, Any], path: str) -> nn.Module:
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
    prefixes = tuple(key_prefix(n) for n in layers)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    floats = {k: v for k, v in objects.items() if k not in layers}
    for key, value in floats.items():
        if key not in state:
            raise ValueError(f"{path!r}: tensor {key!r} is in the file but not in the model")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(f"{path!r}: tensor {key!r} has shape {tuple(value.shape)} in the "
                             f"file and {tuple(state[key].shape)} in the model")
    missing = sorted(set(state) - set(floats))
    if missing:
        raise ValueError(f"{path!r}: the model has state the file lacks: {missing[:8]}"
                         + (" ..." if len(missing) > 8 else ""))
    if "" in new_modules:
        if len(new_modules) > 1 or floats:
            raise ValueError(f"{path!r}: a layer saved on its own cannot sit beside other layers "
                             "or tensors")
        return new_modules[""]
    for name, new in new_modules.items():
        set_submodule(model, name, new)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                           for k, v in floats.items()}, strict=False)
    return model
