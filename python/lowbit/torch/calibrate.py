"""Static post-training quantization, step 1: `prepare` swaps nn.Linear layers for
ObservedLinear, which computes in float and records its input's range."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import nn as lnn
from .._plan import UnsupportedLayer, plan_linear
from ..config import Int8StaticConfig
from ._modules import FilterFn, find, linear_skip_reason, named_modules_all, set_submodule
from .layers import QuantizedLinear, float_weight
from ..summary import ConversionSummary, Replaced, Skipped


class ObservedLinear(nn.Module):
    """nn.Linear's computation (same weight and bias Parameters, so state_dict names and any
    optimizer keep working) plus an activation observer fed with every input."""

    def __init__(self, linear: nn.Linear, config: Int8StaticConfig) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.config = config
        self.observer = config.observer.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise TypeError(f"ObservedLinear takes CPU float32 inputs, got {x.dtype} on "
                            f"{x.device}")
        self.observer.observe(x.detach().contiguous().numpy())
        return F.linear(x, self.weight, self.bias)

    def to_quantized(self, name: str) -> QuantizedLinear:
        if not self.observer.observed:
            raise ValueError(f"layer {name!r} observed no data: run representative inputs "
                             "through the prepared model before convert()")
        w, b = float_weight(self, name)
        layer = lnn.QuantizedLinear.from_config(w, b, self.config,
                                                input_qparams=self.observer.calculate_qparams())
        return QuantizedLinear(layer, self.config.describe())

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"observer={self.observer!r}")


def prepare(model: nn.Module, config: Int8StaticConfig, filter_fn: Optional[FilterFn] = None
            ) -> ConversionSummary:
    """Inserts observers on the inputs of the model's nn.Linear layers (in place). Then run
    representative data through the model (in float: outputs do not change) and call
    `convert(model)` to freeze each layer's activation scale and zero point."""
    if not isinstance(config, Int8StaticConfig):
        raise TypeError(f"prepare takes an Int8StaticConfig, got {type(config).__name__} (use "
                        "quantize_ for dynamic and weight-only configs)")
    linears = find(model, (nn.Linear,), filter_fn)
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layers to prepare")
    parents = dict(named_modules_all(model))
    summary = ConversionSummary("prepare")
    done: dict[int, nn.Module] = {}
    for name, module in linears:
        if id(module) in done:
            set_submodule(model, name, done[id(module)])
            continue
        assert isinstance(module, nn.Linear)
        reason = linear_skip_reason(name, module, parents)
        if reason is None:
            float_weight(module, name)   # the dtype/device errors, now rather than at convert
            try:
                plan_linear(config, module.out_features, module.in_features)
            except UnsupportedLayer as e:
                reason = str(e)
        if reason:
            summary.skipped.append(Skipped(name, reason))
            continue
        observed = ObservedLinear(module, config)
        set_submodule(model, name, observed)
        done[id(module)] = observed
        size = module.weight.nbytes + (0 if module.bias is None else module.bias.nbytes)
        summary.replaced.append(Replaced(name, "observed", (module.out_features,
                                                            module.in_features),
                                         config.describe(), size, size))
    return summary
