"""Saving a lowbit-quantized model the Hugging Face way, refused until lowbit has a Hugging
Face quantizer.

`PreTrainedModel.save_pretrained` and `SentenceTransformer.save` write `model.state_dict()`:
for lowbit layers that is `qweight` / `scale` / `zero_point` / `format` under each layer's
name, keys transformers does not know. Reloading the folder with `from_pretrained` fills those
layers with randomly initialised weights and only logs "missing / unexpected keys" (cosine
-0.08 on all-MiniLM-L6-v2). So quantize_, convert and lowbit.load replace these methods, on the
Hugging Face / sentence-transformers modules of the model that contain lowbit layers, by a
refusal that says what to do instead, before anything is written.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ._kinds import lowbit_types

SAVE_METHODS = ("save_pretrained", "push_to_hub", "save", "save_to_hub")
HF_PACKAGES = ("transformers", "sentence_transformers")


class RefusedSave:
    """Stands in for a Hugging Face save method on a model holding lowbit layers."""

    def __init__(self, cls: str, method: str) -> None:
        self.cls = cls
        self.method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # RuntimeError, not TypeError: SentenceTransformer.save retries a module's save
        # without arguments on TypeError
        raise RuntimeError(
            f"lowbit: {self.cls}.{self.method} cannot save a lowbit-quantized model: it would "
            "write lowbit's quantized tensors (qweight, scale, zero_point) under names "
            "transformers does not know, and loading that folder would give randomly "
            "initialised weights with only a 'missing / unexpected keys' log. Saving the "
            "Hugging Face way is not supported until lowbit's Hugging Face quantizer lands. "
            "Use lowbit.save(model, 'model.safetensors'), and to load: build the float model "
            "(from_pretrained / SentenceTransformer(...)) and call lowbit.load(path, model); "
            "or save the float model before quantizing it")

    def __repr__(self) -> str:
        return f"<{self.cls}.{self.method}: refused by lowbit (the model holds lowbit layers)>"


def _is_hf(module: nn.Module) -> bool:
    return any(c.__module__.split(".")[0] in HF_PACKAGES for c in type(module).__mro__)


def guard_hf_saves(model: nn.Module) -> None:
    """Replaces the Hugging Face save methods of every transformers / sentence-transformers
    module of `model` (the model itself included) that contains a lowbit layer by RefusedSave
    (an instance attribute: the class, and models without lowbit layers, are untouched)."""
    lowbit = lowbit_types()
    for _, module in model.named_modules():
        methods = [m for m in SAVE_METHODS if callable(getattr(type(module), m, None))]
        if not methods or not _is_hf(module):
            continue
        if not any(isinstance(m, lowbit) for m in module.modules()):
            continue
        for method in methods:
            object.__setattr__(module, method, RefusedSave(type(module).__name__, method))
