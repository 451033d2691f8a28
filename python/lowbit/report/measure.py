"""The measurements behind lowbit.report: the part every kind of model shares (calling a model,
timing, the layer rows and the model row) and the NumPy side (lowbit.nn.Model, or a forward
function with its dict of layers). lowbit.torch.measure is the PyTorch side; it finds the
layers with module hooks where this module puts recording layers in the dict."""
from __future__ import annotations

import copy
import math
from collections import UserDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .._core.runtime import cpu_info, get_num_threads, set_num_threads
from .._core.timing import median_seconds
from ..nn.embedding import QuantizedEmbedding
from ..nn.models import Model, nbytes_of
from ..nn.linear import QuantizedLinear
from .types import Report, ReportRow, cosine, sqnr_db

Leaf = Callable[[Any], Optional[np.ndarray]]   # a model output leaf as float array, or None
Copy = Callable[[Any], Any]                    # copies one input leaf (an array, a tensor)
Output = Any   # report's output=: None, a key / index, or a callable (model output -> output)


def call(model: Callable[..., Any], inputs: Any) -> Any:
    """A dict of inputs is passed by keyword (HF-style models: model(input_ids=...,
    attention_mask=...)), a tuple or list positionally, anything else as the one argument."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def fresh_inputs(inputs: Any, copy_leaf: Optional[Copy] = None) -> Any:
    """A copy of example inputs for one model call: every dict, list and tuple anew, so a model
    that writes its outputs into the input dict (SentenceTransformer does) cannot hand them to
    the next model; with copy_leaf, every array or tensor copied too (a model may also change
    its input tensors in place)."""
    if isinstance(inputs, Mapping):
        values = {k: fresh_inputs(v, copy_leaf) for k, v in inputs.items()}
        if isinstance(inputs, UserDict):   # e.g. a tokenizer's BatchEncoding: keep the type
            copied = copy.copy(inputs)      # UserDict.__copy__ gives it a dict of its own
            copied.data = values
            return copied
        return values
    if isinstance(inputs, tuple):
        values_t = [fresh_inputs(v, copy_leaf) for v in inputs]
        return type(inputs)(*values_t) if hasattr(inputs, "_fields") else tuple(values_t)
    if isinstance(inputs, list):
        return [fresh_inputs(v, copy_leaf) for v in inputs]
    return inputs if copy_leaf is None else copy_leaf(inputs)


def numpy_copy(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value


def select_output(out: Any, output: Output) -> Any:
    """The part of a model's output the model row compares: all of it (output=None), the value
    of a key (a dict or Hugging Face ModelOutput) or index (a tuple), or output(out)."""
    if output is None:
        return out
    if callable(output):
        return output(out)
    if isinstance(out, Mapping):
        if output not in out:
            raise ValueError(f"output={output!r}: the model's output has no such key (it has "
                             f"{list(out)})")
        return out[output]
    if isinstance(out, (tuple, list)) and isinstance(output, int) and not isinstance(output, bool):
        if not -len(out) <= output < len(out):
            raise ValueError(f"output={output!r}: the model returns {len(out)} outputs")
        return out[output]
    raise TypeError(f"output={output!r}: the model returns a {type(out).__name__}; output= "
                    "takes a key of a dict output, an index of a tuple output, or a function "
                    "of the output")


def output_names(out: Any, leaf: Leaf, path: str = "") -> list[str]:
    """The names of the floating-point leaves float_outputs() returns, in the same order:
    'sentence_embedding', '[0]', 'hidden[1]' ('output' for a single array)."""
    if leaf(out) is not None:
        return [path or "output"]
    if isinstance(out, Mapping):
        return [n for k, v in out.items()
                for n in output_names(v, leaf, f"{path}.{k}" if path else str(k))]
    if isinstance(out, (tuple, list)):
        return [n for i, v in enumerate(out) for n in output_names(v, leaf, f"{path}[{i}]")]
    return []


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median of `repeats` timed calls after two untimed ones, in ms (lowbit._core.timing)."""
    return median_seconds(fn, repeats, warmup=2) * 1e3


def float_outputs(out: Any, leaf: Leaf) -> list[np.ndarray]:
    """Every floating-point leaf of a model's output (array or tensor, tuple/list, dict or HF
    ModelOutput), in order."""
    a = leaf(out)
    if a is not None:
        return [a]
    if isinstance(out, Mapping):
        return [x for v in out.values() for x in float_outputs(v, leaf)]
    if isinstance(out, (tuple, list)):
        return [x for v in out for x in float_outputs(v, leaf)]
    return []


def describe_inputs(inputs: Any) -> str:
    """The shapes of example inputs, e.g. '3x5' or '{input_ids: 1x8, attention_mask: 1x8}'."""
    if isinstance(inputs, Mapping):
        return "{" + ", ".join(f"{k}: {describe_inputs(v)}" for k, v in inputs.items()) + "}"
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(describe_inputs(v) for v in inputs) + ")"
    shape = getattr(inputs, "shape", None)
    if shape is not None:
        return "x".join(str(d) for d in shape) or "scalar"
    return type(inputs).__name__


def layer_kind(layer: Any) -> str:
    """How a lowbit layer (NumPy or PyTorch) quantizes: 'int4 dynamic', 'int8 embedding'."""
    scheme = getattr(layer, "scheme", None)
    return f"int{layer.bits} {scheme}" if scheme else f"int{layer.bits} embedding"


@dataclass
class LayerCase:
    """One lowbit layer of the quantized model and its float counterpart."""
    name: str
    kind: str
    bytes_float: int
    bytes_quantized: int
    float_layer: Callable[[Any], Any]
    quantized_layer: Callable[[Any], Any]
    # (first input, float output) in the float model's run; None: the run never called it
    seen: Optional[tuple[Any, Any]]


def assemble(cases: list[LayerCase], run_float: Callable[[], Any],
             run_quantized: Callable[[], Any], out_float: Any, out_quantized: Any,
             model_bytes: tuple[int, int], batch: str, threads: int, repeats: int,
             leaf: Leaf, output: Output = None) -> Report:
    """The report rows: each layer alone on the input the float model fed it, the float layers
    left, and the whole model (on the part of its output `output` selects)."""
    out_float = select_output(out_float, output)
    out_quantized = select_output(out_quantized, output)
    rows = []
    for c in cases:
        if c.seen is None:
            rows.append(ReportRow(c.name, c.kind + " (not called)", c.bytes_float,
                                  c.bytes_quantized, None, None, None, None))
            continue
        x, y_float = c.seen
        y_quant = c.quantized_layer(x)
        ref, got = leaf(y_float), leaf(y_quant)
        assert ref is not None and got is not None
        shape = tuple(getattr(x, "shape", ()))
        rows.append(ReportRow(
            c.name, c.kind, c.bytes_float, c.bytes_quantized,
            median_ms(lambda: c.float_layer(x), repeats),
            median_ms(lambda: c.quantized_layer(x), repeats),
            sqnr_db(ref, got), cosine(ref, got), math.prod(shape[:-1]) if shape else 1))
    ref_out = float_outputs(out_float, leaf)
    got_out = float_outputs(out_quantized, leaf)
    if len(ref_out) != len(got_out) or any(a.shape != b.shape for a, b in zip(ref_out, got_out)):
        raise ValueError("the float and quantized models return outputs of different structure")
    ref_all = np.concatenate([a.reshape(-1) for a in ref_out]) if ref_out else np.zeros(0)
    got_all = np.concatenate([a.reshape(-1) for a in got_out]) if got_out else np.zeros(0)
    total = ReportRow("model", "end to end", model_bytes[0], model_bytes[1],
                      median_ms(run_float, repeats), median_ms(run_quantized, repeats),
                      sqnr_db(ref_all, got_all) if ref_out else None,
                      cosine(ref_all, got_all) if ref_out else None)
    other_f = total.bytes_float - sum(r.bytes_float for r in rows)
    other_q = total.bytes_quantized - sum(r.bytes_quantized for r in rows)
    rows.append(ReportRow("(other layers, float)", "unchanged", other_f, other_q, None, None,
                          None, None))
    names = output_names(out_float, leaf,
                         "" if output is None or callable(output) else str(output))
    compared = ", ".join(names) if names else "none (no floating-point output)"
    if output is None:
        what = (f"the model's floating-point outputs ({compared}) together"
                + ("; output= picks one" if len(names) > 1 else ""))
    else:
        what = f"output={output!r} ({compared})"
    notes = ["Layer rows: the layer alone, fed the float model's input to it (median of "
             f"{repeats} calls). Model row: {what}."]
    per_output = {n: (sqnr_db(a, b), cosine(a, b)) for n, a, b in zip(names, ref_out, got_out)}
    if len(per_output) > 1:
        notes.append("Per output: " + "; ".join(
            f"{n} SQNR {q:.1f} dB, cosine {c:.6f}" for n, (q, c) in per_output.items()) + ".")
    if not cases:
        notes.append("Nothing quantized: the quantized model has no lowbit layers (e.g. "
                     "quantize_(skip_slower=True) kept every layer float; print its summary "
                     "for the reasons).")
    return Report(rows, total, batch, threads, str(cpu_info()["isa"]), notes, compared,
                  per_output)


# ---- NumPy models ---------------------------------------------------------------------------
def as_model(obj: Any) -> Optional[Model]:
    """A lowbit.nn.Model as it is, a (forward, layers) pair as Model(forward, layers); None for
    anything else."""
    if isinstance(obj, Model):
        return obj
    if (isinstance(obj, tuple) and len(obj) == 2 and callable(obj[0])
            and isinstance(obj[1], Mapping)):
        return Model(obj[0], obj[1])
    return None


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value


class _Recording:
    """Stands in for a layer in the float model's dict: calls it and keeps its first input and
    output (a forward hook, for NumPy models). Other attributes are the layer's."""

    def __init__(self, layer: Callable[[Any], Any], name: str,
                 seen: dict[str, tuple[Any, Any]]) -> None:
        self._layer, self._name, self._seen = layer, name, seen

    def __call__(self, x: Any) -> Any:
        y = self._layer(x)
        if self._name not in self._seen:
            # copies: the forward may go on to change either array in place
            self._seen[self._name] = (_copy(x), _copy(y))
        return y

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._layer, attr)


def _numpy_leaf(out: Any) -> Optional[np.ndarray]:
    if isinstance(out, (np.ndarray, np.floating)) and np.asarray(out).dtype.kind == "f":
        return np.asarray(out, np.float32)
    return None


def measure_numpy(float_model: Model, quantized_model: Model, example_inputs: Any,
                  threads: Optional[int], repeats: int, output: Output = None) -> Report:
    """lowbit.report for NumPy models: the quantized model's lowbit layers, each against the
    float model's layer of the same name (none: a report with nothing quantized)."""
    names = [n for n, layer in quantized_model.layers.items()
             if isinstance(layer, (QuantizedLinear, QuantizedEmbedding))]
    missing = [n for n in names if n not in float_model.layers]
    if missing:
        raise ValueError(f"layer {missing[0]!r} of the quantized model is not in the float "
                         "model's dict")
    not_callable = [n for n in names if not callable(float_model.layers[n])]
    if not_callable:
        raise ValueError(f"the float model's {not_callable[0]!r} is not a layer (callable): "
                         "report compares layers of the same name (lowbit.nn.Linear / "
                         "Embedding hold float weights as layers)")
    old = get_num_threads()
    if threads is not None:
        set_num_threads(threads)
    try:
        seen: dict[str, tuple[Any, Any]] = {}
        recording = Model(float_model.forward,
                          {n: _Recording(layer, n, seen) if n in names else layer
                           for n, layer in float_model.layers.items()})
        batch = describe_inputs(example_inputs)   # before any model could add to them
        out_float = call(recording, fresh_inputs(example_inputs, numpy_copy))
        out_quantized = call(quantized_model, fresh_inputs(example_inputs, numpy_copy))
        cases = [LayerCase(n, layer_kind(quantized_model.layers[n]),
                           nbytes_of(float_model.layers[n]), nbytes_of(quantized_model.layers[n]),
                           float_model.layers[n], quantized_model.layers[n], seen.get(n))
                 for n in names]
        return assemble(cases, lambda: call(float_model, fresh_inputs(example_inputs)),
                        lambda: call(quantized_model, fresh_inputs(example_inputs)), out_float,
                        out_quantized, (float_model.nbytes, quantized_model.nbytes), batch,
                        get_num_threads(), repeats, _numpy_leaf, output)
    finally:
        set_num_threads(old)
