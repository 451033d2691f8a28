"""Labels, refusals and the `.weight` stand-in of lowbit's PyTorch layers.

The layers compute with torch custom operators (lowbit/torch/_ops.py), so eager calls,
torch.compile (fullgraph too), torch.export and torch.jit.trace all work. torch.jit.script
does not: TorchScript would have to compile the layers' Python, which calls lowbit's C++
kernels through pybind11, so the layers refuse it with a message saying what works instead.

Also here: `WeightInfo`, the `.weight` a lowbit layer shows to code written for nn.Linear /
nn.Embedding (Hugging Face reads `module.weight.dtype`, `.device`, `.shape`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch


def layer_label(kind: str, name: Optional[str], details: str) -> str:
    """'lowbit QuantizedLinear 'encoder.0.fc' (in_features=...)': the module's qualified name
    (set when a conversion or lowbit.load put it into a model) comes first, so an error in a
    model of many lowbit layers says which one failed."""
    where = f" {name!r} " if name else ""
    return f"lowbit {kind}{where}({details})"


def refuse_script(label: str) -> RuntimeError:
    return RuntimeError(f"{label} cannot be compiled by torch.jit.script: TorchScript cannot "
                        "compile a layer whose Python calls lowbit's C++ kernels. Use "
                        "torch.jit.trace, torch.export.export or torch.compile instead: they "
                        "record the layer as one lowbit operator (torch.ops.lowbit.*)")


class WeightInfo:
    """What a lowbit layer's `.weight` is: the shape, dtype and device code written for
    nn.Linear / nn.Embedding reads (Hugging Face casts inputs to `module.weight.dtype` and
    places them on `module.weight.device`), not a tensor. The weight itself is packed int8 or
    int4 in lowbit's memory; `dequantize()` returns a float32 copy of what the layer
    computes with. Reading any other attribute raises AttributeError saying this."""

    __slots__ = ("_label", "_shape", "_dequantize", "_dtype")

    def __init__(self, label: Callable[[], str], shape: tuple[int, int],
                 dequantize: Callable[[], torch.Tensor],
                 dtype: torch.dtype = torch.float32) -> None:
        self._label = label   # formatted only for a message: HF code reads .dtype per call
        self._shape = torch.Size(shape)
        self._dequantize = dequantize
        self._dtype = dtype

    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype,
                     doc="The float model's dtype, which the layer returns for inputs of it "
                         "(its weight is int8 / int4).")
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
            f"dtype {self._dtype}, device cpu). {attr!r} is not available; "
            ".weight.dequantize() (or the layer's dequantized_weight()) gives a float32 copy")

    def __repr__(self) -> str:
        return (f"<quantized weight of {self._label()}: shape {tuple(self._shape)}, computes in "
                "float32 on cpu; .dequantize() gives a float32 copy>")
