"""What lowbit's PyTorch layers refuse, loudly, until lowbit registers torch custom ops.

The layers compute through NumPy and lowbit's C++ library, outside PyTorch's dispatcher. A
tracer (torch.jit.trace, the TorchScript ONNX exporter) cannot see such a computation and
records its output as a constant: the traced model returns the example's output for every
input, with only a TracerWarning. torch.export and torch.jit.script fail deep inside PyTorch
with messages about tensor subclasses or type annotations. So each lowbit layer checks, on
every call, whether it is being traced, exported or compiled, and says what is supported.

Also here: `WeightInfo`, the `.weight` a lowbit layer shows to code written for nn.Linear /
nn.Embedding (Hugging Face reads `module.weight.dtype`, `.device`, `.shape`).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import torch

SUPPORTED = ("Supported: eager calls (also under torch.no_grad / torch.inference_mode) and "
             "torch.compile(model) without fullgraph, which runs each lowbit layer eagerly "
             "between compiled graphs (a graph break per layer). Not supported until lowbit "
             "registers torch custom ops: torch.jit.trace, torch.jit.script, torch.export, "
             "torch.onnx.export and torch.compile(fullgraph=True). To export, keep the layers "
             "in float (export the float model) or use lowbit's NumPy API")


def layer_label(kind: str, name: Optional[str], details: str) -> str:
    """'lowbit QuantizedLinear 'encoder.0.fc' (in_features=...)': the module's qualified name
    (set when a conversion or lowbit.load put it into a model) comes first, so an error in a
    model of many lowbit layers says which one failed."""
    where = f" {name!r} " if name else ""
    return f"lowbit {kind}{where}({details})"


def _is_compiling() -> bool:
    check = getattr(torch.compiler, "is_compiling", None)   # torch >= 2.3
    return bool(check()) if check is not None else False


def _is_exporting() -> bool:
    check = getattr(torch.compiler, "is_exporting", None)   # torch >= 2.5
    return bool(check()) if check is not None else False


def refuse_tracing(label: Callable[[], str]) -> None:
    """Raises (or, inside Dynamo, forces a graph break) when the caller is a tracer or an
    exporter that would record a lowbit layer wrongly. Cheap in eager mode: two flag reads."""
    if torch.jit.is_tracing():
        raise RuntimeError(
            f"{label()} cannot be traced: torch.jit.trace (and torch.onnx.export with "
            "dynamo=False, which traces) would record this layer's output as a constant, so "
            f"the traced model would return the same output for every input. {SUPPORTED}")
    if _is_compiling():
        exporting = _is_exporting()
        if exporting:
            msg = (f"{label()} cannot be exported: torch.export (also under torch.onnx.export) "
                   "needs every operation to be a torch operator, and this layer computes in "
                   f"lowbit's C++ kernels through NumPy. {SUPPORTED}")
        else:
            msg = (f"{label()} runs outside PyTorch (lowbit's C++ kernels through NumPy), so "
                   f"Dynamo cannot put it into a graph. {SUPPORTED}")
        dynamo = sys.modules.get("torch._dynamo")   # loaded: we are being compiled
        if dynamo is not None:
            # torch.compile: a graph break, the layer then runs eagerly; fullgraph=True and
            # strict torch.export turn the graph break into an error carrying this message
            dynamo.graph_break(msg=msg)
        if exporting:
            raise RuntimeError(msg)   # non-strict torch.export runs this code on fake tensors


def refuse_script(label: str) -> RuntimeError:
    return RuntimeError(f"{label} cannot be compiled by torch.jit.script: TorchScript cannot "
                        f"represent a call into lowbit's C++ kernels through NumPy. {SUPPORTED}")


class WeightInfo:
    """What a lowbit layer's `.weight` is: the shape, dtype and device code written for
    nn.Linear / nn.Embedding reads (Hugging Face casts inputs to `module.weight.dtype` and
    places them on `module.weight.device`), not a tensor. The weight itself is packed int8 or
    int4 in lowbit's memory; `dequantize()` returns a float32 copy of what the layer
    computes with. Reading any other attribute raises AttributeError saying this."""

    __slots__ = ("_label", "_shape", "_dequantize")

    def __init__(self, label: Callable[[], str], shape: tuple[int, int],
                 dequantize: Callable[[], torch.Tensor]) -> None:
        self._label = label   # formatted only for a message: HF code reads .dtype per call
        self._shape = torch.Size(shape)
        self._dequantize = dequantize

    shape = property(lambda self: self._shape)
    dtype = property(lambda self: torch.float32,
                     doc="The dtype the layer takes and returns (its weight is int8 / int4).")
    device = property(lambda self: torch.device("cpu"))
    ndim = property(lambda self: len(self._shape))
    requires_grad = property(lambda self: False)
    is_quantized = property(lambda self: True)

    def size(self, dim: Optional[int] = None) -> Any:
        return self._shape if dim is None else self._shape[dim]

    def dim(self) -> int:
        return len(self._shape)

    def numel(self) -> int:
        return self._shape.numel()

    def dequantize(self) -> torch.Tensor:
        """A float32 tensor of the layer's quantized weight, dequantized (a new copy)."""
        return self._dequantize()

    def __getattr__(self, attr: str) -> Any:
        # only reached for attributes this object does not have; private and dunder names
        # (copy, pickle and hasattr probes, unset slots) get a plain AttributeError
        if attr.startswith("_"):
            raise AttributeError(attr)
        raise AttributeError(
            f"{self._label()}.weight is not a tensor: the weight is quantized and packed in "
            f"lowbit's memory, and .weight only describes it (shape {tuple(self._shape)}, "
            f"dtype float32 in and out, device cpu). {attr!r} is not available; "
            ".weight.dequantize() (or the layer's dequantized_weight()) gives a float32 copy")

    def __repr__(self) -> str:
        return (f"<quantized weight of {self._label()}: shape {tuple(self._shape)}, computes in "
                "float32 on cpu; .dequantize() gives a float32 copy>")
