"""The measurements behind lowbit.report for PyTorch models."""
from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from .._runtime import cpu_info, get_num_threads, set_num_threads
from ..report import Report, ReportRow, cosine, sqnr_db
from .quantize import model_nbytes, module_nbytes
from .embedding import QuantizedEmbedding
from .layers import QuantizedLinear


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def float_outputs(out: Any) -> list[np.ndarray]:
    """Every floating-point tensor in a model's output (tensor, tuple/list, dict or HF
    ModelOutput), in order."""
    if isinstance(out, torch.Tensor):
        return [out.detach().float().numpy()] if out.is_floating_point() else []
    if isinstance(out, Mapping):
        return [a for v in out.values() for a in float_outputs(v)]
    if isinstance(out, (tuple, list)):
        return [a for v in out for a in float_outputs(v)]
    return []


def _call(model: nn.Module, inputs: Any) -> Any:
    return model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)


def _shape(inputs: Any) -> str:
    if isinstance(inputs, torch.Tensor):
        return "x".join(str(d) for d in inputs.shape) or "scalar"
    if isinstance(inputs, Mapping):
        return "{" + ", ".join(f"{k}: {_shape(v)}" for k, v in inputs.items()) + "}"
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(_shape(v) for v in inputs) + ")"
    return type(inputs).__name__


def _capture(model: nn.Module, names: list[str], inputs: Any) -> tuple[dict[str, Any], Any]:
    """Runs the model once; returns the first input and output of each named module."""
    seen: dict[str, Any] = {}
    hooks = []
    for name in names:
        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            seen.setdefault(name, (args[0], out))
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        out = _call(model, inputs)
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
    names = [n for n, _ in pairs]
    captured, out_float = _capture(float_model, names, inputs)
    out_quant = _call(quantized_model, inputs)
    rows = []
    for name, qmod in pairs:
        fmod = float_model.get_submodule(name)
        kind = (f"int{qmod.bits} {qmod.scheme}" if isinstance(qmod, QuantizedLinear)
                else f"int{qmod.bits} embedding")
        if name not in captured:
            rows.append(ReportRow(name, kind + " (not called)", module_nbytes(fmod),
                                  module_nbytes(qmod), None, None, None, None))
            continue
        x, y_float = captured[name]
        y_quant = qmod(x)
        rows.append(ReportRow(
            name, kind, module_nbytes(fmod), module_nbytes(qmod),
            _median_ms(lambda: fmod(x), repeats), _median_ms(lambda: qmod(x), repeats),
            sqnr_db(y_float.numpy(), y_quant.numpy()), cosine(y_float.numpy(), y_quant.numpy()),
            int(np.prod(x.shape[:-1])) if x.dim() else 1))
    ref = float_outputs(out_float)
    got = float_outputs(out_quant)
    if len(ref) != len(got) or any(a.shape != b.shape for a, b in zip(ref, got)):
        raise ValueError("the float and quantized models return outputs of different structure")
    ref_all = np.concatenate([a.reshape(-1) for a in ref]) if ref else np.zeros(0)
    got_all = np.concatenate([a.reshape(-1) for a in got]) if got else np.zeros(0)
    total = ReportRow("model", "end to end", model_nbytes(float_model),
                      model_nbytes(quantized_model),
                      _median_ms(lambda: _call(float_model, inputs), repeats),
                      _median_ms(lambda: _call(quantized_model, inputs), repeats),
                      sqnr_db(ref_all, got_all) if ref else None,
                      cosine(ref_all, got_all) if ref else None)
    other_f = total.bytes_float - sum(r.bytes_float for r in rows)
    other_q = total.bytes_quantized - sum(r.bytes_quantized for r in rows)
    rows.append(ReportRow("(other layers, float)", "unchanged", other_f, other_q, None, None,
                          None, None))
    notes = ["Layer rows: the layer alone, fed the float model's input to it (median of "
             f"{repeats} calls). Model row: all floating-point outputs of the model together."]
    return Report(rows, total, _shape(inputs), torch.get_num_threads(), str(cpu_info()["isa"]),
                  notes)

