"""Hugging Face saves of a lowbit-quantized model: allowed where lowbit's Hugging Face quantizer
made the model, refused elsewhere.

`PreTrainedModel.save_pretrained` and `SentenceTransformer.save` write `model.state_dict()`:
for lowbit layers that is `qweight` / `scale` / `zero_point` / `format` under each layer's
name. A model that `from_pretrained(..., quantization_config=lowbit.hf.LowbitConfig(...))`
loaded carries lowbit's quantizer (`model.hf_quantizer`, quant_method "lowbit"), so the saved
config.json says how to read those keys, and `from_pretrained` of the folder (with lowbit.hf
imported) rebuilds the layers. A model converted by quantize_, convert or lowbit.load has no
such quantizer: transformers would reload its folder with randomly initialised weights and only
a "missing / unexpected keys" log (cosine -0.08 on all-MiniLM-L6-v2). So those conversions
replace the save methods of the Hugging Face / sentence-transformers modules holding lowbit
layers that no lowbit quantizer covers by a refusal that says what to do instead, before
anything is written.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ._kinds import lowbit_types

SAVE_METHODS = ("save_pretrained", "push_to_hub", "save", "save_to_hub")
HF_PACKAGES = ("transformers", "sentence_transformers")
# The quant_method lowbit.hf registers with transformers (config.json's quantization_config).
QUANT_METHOD = "lowbit"


class RefusedSave:
    """Stands in for a Hugging Face save method on a model holding lowbit layers."""

    def __init__(self, cls: str, method: str) -> None:
        self.cls = cls
        self.method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # RuntimeError, not TypeError: SentenceTransformer.save retries a module's save
        # without arguments on TypeError
        raise RuntimeError(
            f"lowbit: {self.cls}.{self.method} cannot save a lowbit-quantized model that was "
            "converted outside transformers (quantize_, convert or lowbit.load): it would write "
            "lowbit's quantized tensors (qweight, scale, zero_point) with no quantization_config "
            "saying how to read them, and loading that folder would give randomly initialised "
            "weights with only a 'missing / unexpected keys' log. To save the Hugging Face way, "
            "quantize while loading: import lowbit.hf, then AutoModel.from_pretrained(path, "
            "quantization_config=lowbit.hf.LowbitConfig(format='int8_dynamic')) (or "
            "SentenceTransformer(path, model_kwargs={'quantization_config': ...})); that "
            "model's save_pretrained / save writes a folder from_pretrained loads quantized. "
            "Or use lowbit.save(model, 'model.safetensors'), and to load: build the float model "
            "(from_pretrained / SentenceTransformer(...)) and call lowbit.load(path, model)")

    def __repr__(self) -> str:
        return f"<{self.cls}.{self.method}: refused by lowbit (the model holds lowbit layers)>"


def _is_hf(module: nn.Module) -> bool:
    return any(c.__module__.split(".")[0] in HF_PACKAGES for c in type(module).__mro__)


def has_lowbit_quantizer(module: nn.Module) -> bool:
    """Whether transformers loaded `module` with lowbit's quantizer (its save_pretrained then
    writes a folder that from_pretrained reads back into lowbit layers)."""
    quantizer = getattr(module, "hf_quantizer", None)
    config = getattr(quantizer, "quantization_config", None)
    return getattr(config, "quant_method", None) == QUANT_METHOD


def guard_hf_saves(model: nn.Module) -> None:
    """Replaces the Hugging Face save methods of every transformers / sentence-transformers
    module of `model` (the model itself included) that contains a lowbit layer outside every
    model loaded with lowbit's quantizer by RefusedSave (an instance attribute: the class, and
    models without such layers, are untouched)."""
    lowbit = lowbit_types()
    covered = {id(m) for _, module in model.named_modules() if has_lowbit_quantizer(module)
               for m in module.modules() if isinstance(m, lowbit)}
    for _, module in model.named_modules():
        methods = [m for m in SAVE_METHODS if callable(getattr(type(module), m, None))]
        if not methods or not _is_hf(module):
            continue
        if not any(isinstance(m, lowbit) and id(m) not in covered for m in module.modules()):
            continue
        for method in methods:
            object.__setattr__(module, method, RefusedSave(type(module).__name__, method))
