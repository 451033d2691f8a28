"""Static post-training quantization, step 1: `prepare` swaps nn.Linear layers for
ObservedLinear, which computes in float and records its input's range."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.linear import QuantizedLinear as NumpyQuantizedLinear
from ..quant.plan import UnsupportedLayer
from ..quant.config import Int8StaticConfig
from ..quant.config import ConfigSpec, config_for
from ._modules import (FilterFn, find, handled_ids, kept_float, linear_skip_reason,
                       named_modules_all, swap_modules)
from .layers import QuantizedLinear, float_weight
from ..quant.summary import ConversionSummary, Replaced, Skipped
from ._kinds import prepared_layer
from .conv import conv_skip_reason
from .fuse import CONVS, ConvPattern, conv_patterns, remove_fused


@prepared_layer
class ObservedLinear(nn.Module):
    """nn.Linear's computation (same weight and bias Parameters, so state_dict names and any
    optimizer keep working) plus an activation observer fed with every input.

    Made by `lowbit.torch.prepare`; `convert` replaces it by a lowbit QuantizedLinear.

    Parameters
    ----------
    linear
        The nn.Linear whose Parameters it takes over.
    config
        The layer's Int8StaticConfig: its observer is cloned for this layer.
    name
        The module's qualified name, for errors.

    Raises
    ------
    None
        prepare has checked the layer and the config.
    """

    def __init__(self, linear: nn.Linear, config: Int8StaticConfig, name: str = "") -> None:
        super().__init__()
        self.lowbit_name = name   # the qualified name, for errors
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.config = config
        self.observer = config.observer.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F.linear(x, weight, bias) in float, after the observer has seen x.

        Parameters
        ----------
        x
            A CPU float32 tensor of shape (..., in_features).

        Returns
        -------
        torch.Tensor
            nn.Linear's output, unchanged by the observation.

        Raises
        ------
        TypeError
            x is not a CPU float32 tensor.
        ValueError
            NaN/Inf in x, or (a per-channel observer) another number of channels than
            before; the message names the layer.
        """
        where = f" {self.lowbit_name!r}" if getattr(self, "lowbit_name", "") else ""
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise TypeError(f"ObservedLinear{where} takes CPU float32 inputs, got {x.dtype} on "
                            f"{x.device}")
        try:
            self.observer.observe(x.detach().contiguous().numpy())
        except (TypeError, ValueError) as e:
            raise type(e)(f"ObservedLinear{where}: {e}") from None
        return F.linear(x, self.weight, self.bias)

    def to_quantized(self, name: str) -> QuantizedLinear:
        """The lowbit layer of static PTQ: the weight quantized by the config, the activation
        scale and zero point frozen from the observer (what `convert` puts in its place).

        Parameters
        ----------
        name
            The layer's qualified name, for errors.

        Returns
        -------
        QuantizedLinear
            A lowbit.torch.QuantizedLinear of scheme "static".

        Raises
        ------
        ValueError
            The observer saw no data; the weight or bias holds NaN/Inf, or is not on the CPU.
        TypeError
            The weight is not float32 (changed since prepare).
        """
        if not self.observer.observed:
            raise ValueError(f"layer {name!r} observed no data: run representative inputs "
                             "through the prepared model before convert()")
        w, b = float_weight(self, name)
        layer = NumpyQuantizedLinear.from_config(w, b, self.config,
                                                input_qparams=self.observer.calculate_qparams())
        return QuantizedLinear(layer, self.config.describe(), dtype=self.weight.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"observer={self.observer!r}")


def _static_config(name: str, spec: ConfigSpec) -> tuple[Optional[Int8StaticConfig], str]:
    cfg, why = config_for(name, spec)
    if cfg is not None and not cfg.calibrated:
        if isinstance(spec, Mapping):
            where = f" for layer {name!r}"
            todo = ("map those layers to None here and convert them with quantize_ (before or "
                    "after prepare / convert), or train them with prepare_qat")
        else:
            where, todo = "", "use quantize_(model, config), or prepare_qat to train with it"
        raise TypeError(f"prepare calibrates Int8StaticConfig layers; the config{where} is "
                        f"{type(cfg).__name__}, which needs no calibration: {todo}")
    return cfg, why


def prepare(model: nn.Module, config: ConfigSpec, filter_fn: Optional[FilterFn] = None, *,
            progress: Optional[bool] = None) -> ConversionSummary:
    """Inserts observers on the inputs of the model's nn.Linear layers (in place). Then run
    representative data through the model (in float: outputs do not change) and call
    `convert(model)` to freeze each layer's activation scale and zero point.

    Parameters
    ----------
    model
        The nn.Module to prepare, in place.
    config
        An Int8StaticConfig or, as for quantize_ and prepare_qat, a dict {fnmatch pattern:
        Int8StaticConfig or None} over module names (first match wins; None or no match keeps
        the layer float).
    filter_fn
        filter_fn(module, name) -> bool narrows the layers considered.
    progress
        A tqdm bar (if installed) for 16 layers or more; True/False forces it.

    Returns
    -------
    ConversionSummary
        The "observed" layers, the skipped ones with the reason, and in `kept` the other
        weight-holding modules that stay float.

    Raises
    ------
    TypeError
        model is not an nn.Module; the config (or a pattern's config) is not an
        Int8StaticConfig (dynamic and weight-only configs need no calibration: quantize_);
        progress is not a bool or None.
    ValueError
        The model has no nn.Linear layers.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare takes an nn.Module, got {type(model).__name__}")
    if not isinstance(config, Mapping):
        _static_config("", config)   # a wrong config fails before anything is looked at
    linears = find(model, (nn.Linear,), filter_fn)
    convs = find(model, CONVS, filter_fn)
    if not linears and not convs:
        raise ValueError(f"{type(model).__name__} has no nn.Linear, nn.Conv1d or nn.Conv2d "
                         "layers to prepare")
    plans = [(name, module, *_static_config(name, config)) for name, module in linears + convs]
    patterns = conv_patterns(model) if convs else {}
    fused: list[ConvPattern] = []
    parents = dict(named_modules_all(model))
    summary = ConversionSummary("prepare")
    configs = {name: (cfg, why) for name, _, cfg, why in plans}

    def build(name: str, module: nn.Module) -> Optional[nn.Module]:
        if isinstance(module, CONVS):
            return _prepare_conv(model, name, module, *configs[name], summary,
                                 patterns.get(name), fused)
        assert isinstance(module, nn.Linear)
        cfg, why = configs[name]
        reason = linear_skip_reason(name, module, parents)
        if reason is None and cfg is None:
            reason = why or "no config"
        if reason is None:
            assert cfg is not None
            float_weight(module, name)   # the dtype/device errors, now rather than at convert
            try:
                cfg.plan(module.out_features, module.in_features)
            except UnsupportedLayer as e:
                reason = str(e)
        if reason:
            summary.skipped.append(Skipped(name, reason))
            return None
        assert cfg is not None
        size = module.weight.nbytes + (0 if module.bias is None else module.bias.nbytes)
        summary.replaced.append(Replaced(name, "observed", (module.out_features,
                                                            module.in_features),
                                         cfg.describe(), size, size))
        return ObservedLinear(module, cfg, name)

    swap_modules(model, linears + convs, build, progress, "lowbit prepare")
    for pattern in fused:   # computed inside the ObservedConv now
        remove_fused(model, pattern)
    summary.kept = kept_float(model, handled_ids(model, linears + convs),
                              "an nn.Embedding: prepare converts nn.Linear layers only")
    return summary


def prepared_conv_plan(model: nn.Module, name: str, module: nn.Module, cfg: Any, why: str,
                       summary: ConversionSummary, pattern: Optional[ConvPattern]
                       ) -> tuple[Optional[Any], ConvPattern]:
    """The plan of one conv for prepare / prepare_qat (None: skipped, the reason recorded in
    `summary`), and its fusion pattern."""
    import numpy as np
    reason = conv_skip_reason(module) or (None if cfg is not None else (why or "no config"))
    plan = None
    if reason is None:
        float_weight(module, name)
        w = module.weight
        try:
            plan = cfg.conv_plan(int(w.shape[0]), int(np.prod(w.shape[1:])))
        except UnsupportedLayer as e:
            reason = str(e)
    if reason:
        summary.skipped.append(Skipped(name, reason))
    return plan, pattern or ConvPattern(name)


def _prepare_conv(model: nn.Module, name: str, module: nn.Module, cfg: Any, why: str,
                  summary: ConversionSummary, pattern: Optional[ConvPattern],
                  fused: list[ConvPattern]) -> Optional[nn.Module]:
    from .conv_prepared import ObservedConv
    plan, pattern = prepared_conv_plan(model, name, module, cfg, why, summary, pattern)
    if plan is None:
        return None
    norm = model.get_submodule(pattern.norm) if pattern.norm else None
    size = module.weight.nbytes + (0 if module.bias is None else module.bias.nbytes)
    summary.replaced.append(Replaced(name, "observed", tuple(module.weight.shape),
                                     cfg.describe_conv(), size, size, pattern.note(model)))
    fused.append(pattern)
    return ObservedConv(module, cfg, name, norm, pattern.activation)
