"""QuantizedLinear: a drop-in nn.Module for nn.Linear, computed by lowbit's kernels.

Tensors cross into NumPy through the buffer protocol: a contiguous CPU float32 input is viewed,
not copied (`x.detach().contiguous().numpy()`), and the output array lowbit allocates becomes the
returned tensor (`torch.from_numpy`), so a call makes no copies of its own.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from .. import nn as lnn
from ..config import QuantConfig
from ..packed import PackedWeight


def check_input(x: torch.Tensor, layer: str) -> None:
    """The conditions under which a lowbit layer can take x: a float32 tensor on the CPU."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer} takes a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise TypeError(f"{layer} computes in float32; got a {x.dtype} input (call .float() on "
                        "the input, or keep this layer in float)")
    if x.device.type != "cpu":
        raise ValueError(f"{layer} runs on the CPU; got an input on {x.device}")


class _NoBackward(torch.autograd.Function):
    """Runs a lowbit kernel inside an autograd graph. The forward is the kernel itself; the
    backward raises, because a quantized, packed weight has no gradient to give. This lets a
    plain `model(x)` work when float layers before this one (a LayerNorm, say) make x require
    grad, as torch's quantized dynamic Linear does; but where that one only warns and leaves the
    earlier layers without gradients, asking this one for gradients fails loudly."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor],
                label: Callable[[], str]) -> torch.Tensor:
        ctx.label = label   # the layer's name, formatted only if backward is reached
        return compute(x)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> Any:
        raise RuntimeError(f"{ctx.label()} is inference-only and has no gradient: backward() "
                           "reached it because its input requires grad. Run the model under "
                           "torch.no_grad() or torch.inference_mode() when you do not need "
                           "gradients, or train with lowbit.torch.prepare_qat (fake "
                           "quantization) and convert afterwards")


def float_weight(linear: nn.Module, name: str = "") -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A Linear-like module's weight and bias as float32 NumPy arrays (copies: the layer may
    change after conversion)."""
    label = f"layer {name!r}" if name else type(linear).__name__
    w = linear.weight
    assert isinstance(w, torch.Tensor)
    if w.dtype != torch.float32:
        raise TypeError(f"{label}: weight dtype is {w.dtype}; lowbit quantizes float32 weights "
                        "(call model.float() first)")
    if w.device.type != "cpu":
        raise ValueError(f"{label}: weight is on {w.device}; lowbit layers run on the CPU")
    wn = w.detach().contiguous().numpy().copy()
    b = linear.bias
    assert b is None or isinstance(b, torch.Tensor)
    bn = None if b is None else b.detach().to(torch.float32).contiguous().numpy().copy()
    if not np.isfinite(wn).all() or (bn is not None and not np.isfinite(bn).all()):
        raise ValueError(f"{label}: weight or bias holds NaN or Inf")
    return wn, bn


class QuantizedLinear(nn.Module):
    """Same call as nn.Linear: (..., in_features) float32 -> (..., out_features) float32.

    Holds a `lowbit.nn.QuantizedLinear` (the packed weight lives in lowbit's own aligned memory,
    not in a torch tensor; `nbytes` counts it) and the float32 bias as a buffer. Inference only:
    an input that requires grad (grad mode on) gives an output whose backward raises
    RuntimeError."""

    bias: Optional[torch.Tensor]

    def __init__(self, layer: lnn.QuantizedLinear, config: str = "") -> None:
        super().__init__()
        self.layer = layer
        self.in_features = layer.in_features
        self.out_features = layer.out_features
        self.config = config
        bias = None if layer.bias is None else torch.from_numpy(layer.bias)
        self.register_buffer("bias", bias)

    @classmethod
    def from_float(cls, linear: nn.Linear, config: Optional[QuantConfig] = None, *,
                   input_qparams: Optional[tuple[Any, Any]] = None) -> "QuantizedLinear":
        """Quantizes an nn.Linear as `config` says (default Int8DynamicConfig). Int8StaticConfig
        takes `input_qparams=(scale, zero_point)` (or use prepare/convert)."""
        from ..config import Int8DynamicConfig
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_float takes an nn.Linear, got {type(linear).__name__}")
        cfg = Int8DynamicConfig() if config is None else config
        w, b = float_weight(linear)
        layer = lnn.QuantizedLinear.from_config(w, b, cfg, input_qparams=input_qparams)
        return cls(layer, cfg.describe())

    @property
    def scheme(self) -> str:
        return self.layer.scheme

    @property
    def bits(self) -> int:
        return self.layer.bits

    @property
    def nbytes(self) -> int:
        """Bytes held: the quantized weight (packed, with scales and zero points) + bias."""
        return self.layer.nbytes

    @property
    def hidden_nbytes(self) -> int:
        """Bytes held outside torch tensors (not counted by parameters() or buffers())."""
        return self.layer.weight_nbytes

    def numpy_layer(self) -> lnn.QuantizedLinear:
        """The NumPy layer with this module's current bias (for saving)."""
        bias = None if self.bias is None else self.bias.detach().cpu().numpy()
        if bias is self.layer.bias or (bias is not None and self.layer.bias is not None
                                       and np.shares_memory(bias, self.layer.bias)):
            return self.layer
        layer = self.layer
        return lnn.QuantizedLinear(layer.weight, bias, input_scale=layer.input_scale,
                                   input_zero_point=layer.input_zero_point)

    def dequantized_weight(self) -> torch.Tensor:
        return torch.from_numpy(self.layer.dequantized_weight())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "lowbit QuantizedLinear")
        if x.requires_grad and torch.is_grad_enabled():
            # autograd records this call: the output carries a backward that refuses, rather
            # than no graph at all (which would silently drop the earlier layers' gradients)
            out = _NoBackward.apply(x, self._compute, self._label)
            assert isinstance(out, torch.Tensor)
            return out
        return self._compute(x)

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.detach().numpy()
        y = self.layer.compute(x.detach().contiguous().numpy(), bias)
        return torch.from_numpy(y)

    def _label(self) -> str:
        return (f"lowbit QuantizedLinear(in_features={self.in_features}, "
                f"out_features={self.out_features}, bits={self.bits}, scheme={self.scheme})")

    def extra_repr(self) -> str:
        w = self.layer.weight
        detail = (f", group_size={w.group_size}, mode={w.mode}"
                  if isinstance(w, PackedWeight) and w.bits == 4 else "")
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, bits={self.bits}, scheme={self.scheme}{detail}")
