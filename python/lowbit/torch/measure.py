"""The measurements behind lowbit.report for PyTorch models: module hooks find each lowbit
layer's input; the rows, timing and model call are lowbit.report.measure's, shared with NumPy
models."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..report.measure import (LayerCase, Output, assemble, call, describe_inputs, fresh_inputs,
                              layer_kind)
from .._core.runtime import get_num_threads, set_num_threads
from ..report.types import Report
from .embedding import QuantizedEmbedding
from .layers import QuantizedLinear
from .quantize import model_nbytes, module_nbytes


def _tensor_leaf(out: Any) -> Optional[np.ndarray]:
    if isinstance(out, torch.Tensor):
        return out.detach().float().numpy() if out.is_floating_point() else None
    return None


def _clone(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def _capture(model: nn.Module, names: list[str], inputs: Any) -> tuple[dict[str, Any], Any]:
    """Runs the model once; returns the first input and output of each named module (copies:
    the forward may go on to change either in place, e.g. a residual `x += ...`)."""
    seen: dict[str, Any] = {}
    hooks = []
    for name in names:
        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            if name not in seen:
                seen[name] = (_clone(args[0]), _clone(out))
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        out = call(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen, out


def measure(float_model: nn.Module, quantized_model: nn.Module, example_inputs: Any,
            threads: Optional[int], repeats: int, output: Output = None) -> Report:
    if float_model is quantized_model:
        raise ValueError("report compares two models, got the same one twice: quantize a "
                         "copy (copy.deepcopy(model)) and pass the float original and the copy")
    pairs: list[tuple[str, nn.Module]] = [
        (n, m) for n, m in quantized_model.named_modules()
        if isinstance(m, (QuantizedLinear, QuantizedEmbedding))]
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
            return _measure(float_model, quantized_model, example_inputs, pairs, repeats, output)
    finally:
        torch.set_num_threads(old_torch)
        set_num_threads(old_lowbit)


def _measure(float_model: nn.Module, quantized_model: nn.Module, inputs: Any,
             pairs: list[tuple[str, nn.Module]], repeats: int, output: Output) -> Report:
    # Each model gets its own copy of the inputs: a SentenceTransformer writes its outputs into
    # the input dict and returns that dict, so with one shared dict both models would return
    # the same object (SQNR inf, cosine 1) and the inputs would list the outputs.
    batch = describe_inputs(inputs)
    captured, out_float = _capture(float_model, [n for n, _ in pairs],
                                   fresh_inputs(inputs, _clone))
    out_quantized = call(quantized_model, fresh_inputs(inputs, _clone))
    cases = []
    for name, qmod in pairs:
        fmod = float_model.get_submodule(name)
        cases.append(LayerCase(name, layer_kind(qmod), module_nbytes(fmod), module_nbytes(qmod),
                               fmod, qmod, captured.get(name)))
    return assemble(cases, lambda: call(float_model, fresh_inputs(inputs)),
                    lambda: call(quantized_model, fresh_inputs(inputs)), out_float, out_quantized,
                    (model_nbytes(float_model), model_nbytes(quantized_model)), batch,
                    torch.get_num_threads(), repeats, _tensor_leaf, output)


class TorchReport:
    """lowbit.report's adapter for PyTorch models (registered by lowbit.torch)."""

    kind = "torch.nn.Module"

    @staticmethod
    def claims(obj: Any) -> bool:
        return isinstance(obj, nn.Module)

    measure = staticmethod(measure)
