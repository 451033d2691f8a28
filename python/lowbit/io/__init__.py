"""`save` / `load`: quantized models and layers in a safetensors file (the format: lowbit.io.format;
the container: lowbit.io.safetensors). PyTorch modules go through the adapter lowbit.torch
registers (lowbit._core.adapters): nothing here imports PyTorch."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._core import adapters
from . import safetensors as _safetensors
from ..nn.models import Model
from .format import (FORMAT, FORMAT_VERSION, LAYER_FIELDS, LAYER_TYPES, _metadata, build_model,
                     check_layer_meta, decode, decode_layer, encode, encode_linear, key_prefix,
                     model_objects, read)


def save(obj: Any, path: "os.PathLike[str] | str") -> None:
    """Writes a model or layers to `path` (safetensors), atomically.

    Parameters
    ----------
    obj
        - a PyTorch module: its lowbit layers plus the rest of its state_dict and its
          non-persistent buffers (in no state_dict, but a skeleton built on the meta device
          needs them; listed in the metadata, optional on load); a lowbit layer on its own is
          stored under the name '', its tensors unprefixed;
        - a NumPy model (lowbit.nn.Sequential or Model, nested ones included): its layers
          (lowbit layers, float lowbit.nn.Linear / Embedding, arrays) and its structure, with
          lowbit's own functions (lowbit.nn.relu) by name; `load` gives the model back;
        - a dict name -> lowbit.nn.QuantizedLinear / QuantizedEmbedding / PackedWeight / float
          lowbit.nn.Linear / Embedding / NumPy array (what `lowbit.quantize_weights` returns),
          or such a dict with lowbit.torch layers and tensors.
    path
        The file to write; it is replaced only once the whole file is written.

    Raises
    ------
    TypeError
        obj is none of the above, or a NumPy model holds an entry a file cannot store (a
        function that is not lowbit's own, any other object): the message names the entry.
    ValueError
        Two entries would be stored under one name, or a model is still prepared (not
        converted). Nothing is written when save raises.
    """
    model = None
    buffers: tuple[str, ...] = ()
    adapter = adapters.find("io", obj)
    if adapter is not None:
        objects, buffers = adapter.module_objects(obj)
    elif isinstance(obj, Model):
        objects, model = model_objects(obj)
    elif isinstance(obj, Mapping):
        objects, buffers = dict(obj), ()
        for value in objects.values():   # loads the adapters of a library whose objects are in it
            adapters.find("io", value)
        for each in adapters.adapters("io"):
            objects = each.numpy_objects(objects)
    else:
        raise TypeError(f"save takes a torch.nn.Module, a lowbit.nn model or a dict, got "
                        f"{type(obj).__name__}")
    tensors, codes, layers = encode(objects)
    metadata = _metadata(tensors, layers, model, buffers)
    _safetensors.atomic_write(os.fspath(path),
                              lambda f: _safetensors.write(f, tensors, metadata, codes))


def load(path: "os.PathLike[str] | str", model: Any = None) -> Any:
    """Reads a file written by `save`.

    Parameters
    ----------
    path
        The file.
    model
        None, a PyTorch module, or a lowbit.nn model (see Returns).

    Returns
    -------
    - model=None: for a file of layers, a dict name -> lowbit.nn.QuantizedLinear /
      QuantizedEmbedding / PackedWeight (re-packed for this CPU) / float lowbit.nn.Linear /
      Embedding / NumPy array; for a saved lowbit.nn.Sequential, the Sequential (its entries
      in order, lowbit's functions included).
    - model=a lowbit.nn.Model or Sequential with the same entries as the saved one (the float
      model it was quantized from, say): a new model with that model's forward over the loaded
      layers (a Model's forward is code, which a file cannot hold). `model` is not modified.
    - model=a PyTorch module with the same structure as the saved one, in float (e.g. freshly
      built): its nn.Linear / nn.Embedding layers named in the file are replaced by lowbit
      layers, the other tensors are loaded into it, and the model is returned. A file holding
      a single lowbit layer saved on its own (`save(QuantizedLinear...)`: the name '') loads
      into a skeleton nn.Linear / nn.Embedding of the same shape (or a lowbit layer) and
      returns the new lowbit layer, since a module cannot change its class in place.
      The skeleton may be built on the meta device (`with torch.device("meta"): ...`): its
      tensors are replaced by the file's (assign semantics, Parameters keep requires_grad)
      rather than copied into. Non-persistent buffers in the file are filled in where the
      model has them. The loaded model's Hugging Face save methods refuse, as after quantize_.

    Raises
    ------
    ValueError
        A truncated, corrupted or other-version file; a file that is not lowbit's (one written
        from a quantized model's state_dict by save_pretrained / SentenceTransformer.save says
        so); a layer missing from the model, or an entry or shape that differs from it
        (named); a saved lowbit.nn.Model loaded without a model to take its forward from; a
        meta-device tensor of the model that the file cannot fill (before anything changes).
    IsADirectoryError
        path is a directory (a Hugging Face model folder, say).
    TypeError
        model is of another type.
    """
    tensors, codes, layers, structure, buffers = read(path)
    where = os.fspath(path)
    if model is None or isinstance(model, Model):
        objects = decode(tensors, codes, layers, where)
        if structure is None:
            if model is not None:
                raise ValueError(f"{where!r} holds layers, not a lowbit.nn model: load it "
                                 "without a model and build one with model.with_layers")
            return objects
        return build_model(structure, objects, model, where)
    adapter = adapters.find("io", model)
    if adapter is None:
        raise TypeError(f"model must be a torch.nn.Module, a lowbit.nn model or None, got "
                        f"{type(model).__name__}")
    return adapter.restore_module(model, tensors, codes, layers, where, buffers)


__all__ = ["save", "load", "LAYER_FIELDS", "FORMAT", "FORMAT_VERSION", "decode", "decode_layer",
           "encode", "encode_linear", "key_prefix", "read", "check_layer_meta", "build_model",
           "LAYER_TYPES", "model_objects"]
