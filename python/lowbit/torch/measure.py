"""The measurements behind lowbit.report for PyTorch models: module hooks find each lowbit
layer's input; the rows, timing and model call are lowbit._measure's, shared with NumPy
models."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from .._measure import LayerCase, assemble, call, describe_inputs, layer_kind
from .._runtime import get_num_threads, set_num_threads
from ..report import Report
from .embedding import QuantizedEmbedding
from .layers import QuantizedLinear
from .quantize import model_nbytes, module_nbytes


def _tensor_leaf(out: Any) -> Optional[np.ndarray]:
    if isinstance(out, torch.Tensor):
        return out.detach().float().numpy() if out.is_floating_point() else None
    return None


def _capture(model: nn.Module, names: list[str], inputs: Any) -> tuple[dict[str, Any], Any]:
    """Runs the model once; returns the first input and output of each named module."""
    seen: dict[str, Any] = {}
    hooks = []
    for name in names:
        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            seen.setdefault(name, (args[0], out))
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        out = call(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen, out


def measure(float_model: nn.Module, quantized_model: nn.Module, example_inputs: Any,
            threads: Optional[int], repeats: int) -> Report:
    pairs: list[tuple[str, nn.Module]] = [
        (n, m) for n, m in quantized_model.named_modules()
        if isinstance(m, (QuantizedLinear, QuantizedEmbedding))]
    if not pairs:
        raise ValueError("the quantized model has no lowbit layers (run quantize_ or convert)")
    for name, _ in pairs:
        try:
            float_model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"layer {name!r} of the quantized model is not in the float "
                             "model") from None
    old_torch, old_lowbit = torch.get_num_threads(), get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        set_num_threads(threads)
    try:
        with torch.inference_mode():
            return _measure(float_model, quantized_model, example_inputs, pairs, repeats)
    finally:
        torch.set_num_threads(old_torch)
        set_num_threads(old_lowbit)


def _measure(float_model: nn.Module, quantized_model: nn.Module, inputs: Any,
             pairs: list[tuple[str, nn.Module]], repeats: int) -> Report:
    captured, out_float = _capture(float_model, [n for n, _ in pairs], inputs)
    out_quantized = call(quantized_model, inputs)
    cases = []
    for name, qmod in pairs:
        fmod = float_model.get_submodule(name)
        cases.append(LayerCase(name, layer_kind(qmod), module_nbytes(fmod), module_nbytes(qmod),
                               fmod, qmod, captured.get(name)))
    return assemble(cases, lambda: call(float_model, inputs),
                    lambda: call(quantized_model, inputs), out_float, out_quantized,
                    (model_nbytes(float_model), model_nbytes(quantized_model)),
                    describe_inputs(inputs), torch.get_num_threads(), repeats, _tensor_leaf)
