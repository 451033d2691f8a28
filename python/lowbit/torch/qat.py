"""Quantization-aware training: `prepare_qat` swaps nn.Linear layers for FakeQuantLinear, which
trains in float with the rounding the converted layer will apply; `convert` then builds the
same lowbit layers post-training quantization builds, from the fake-quantized values."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn.linear import QuantizedLinear as NumpyQuantizedLinear
from .._core.checks import QTYPES, check_bool
from ..quant.plan import LayerPlan, UnsupportedLayer
from ..quant.config import QuantConfig, check_config
from ..quant.config import ConfigSpec, config_for
from ..qtensor import QTensor
from . import fake_quant as fq
from ._modules import (FilterFn, find, handled_ids, kept_float, linear_skip_reason,
                       named_modules_all, swap_modules)
from .layers import QuantizedLinear, float_weight
from ..quant.summary import ConversionSummary, Replaced, Skipped
from ._kinds import prepared_layer
from .calibrate import prepared_conv_plan
from .conv_prepared import FakeQuantConv
from .fuse import CONVS, ConvPattern, conv_patterns, remove_fused

TINY_SCALE = 1e-12   # a learnable scale is kept above this (lowbit scales must be > 0)


# The activation quantization of each config (QuantConfig.activation) as QAT simulates it; a
# calibrated ("static") config's is the observer path of FakeQuantLinear.fake_input.
FAKE_ACTIVATIONS = {
    "float": lambda x: x,
    "rows_uint8": fq.fake_quantize_rows_dynamic,
    "rows_int8_symmetric": fq.fake_quantize_rows_symmetric,
}


@prepared_layer
class FakeQuantLinear(nn.Module):
    """nn.Linear with fake-quantized weights (PTQ's rule, QuantConfig.quantize_weight: per channel
    for 8-bit configs or a static config's weight_observer, per group for 4-bit ones) and
    activations (per row for dynamic configs, per tensor for Int8StaticConfig,
    none for weight-only). Shares the original layer's weight and bias Parameters.

    learnable_scales=True (symmetric weights only) makes the weight scales Parameters trained
    with LSQ gradients (grad scale 1 / sqrt(elements per scale * qmax)), initialized to PTQ's
    rule; for Int8StaticConfig the activation scale is learnable too, initialized from
    the observer after the first training batch (its zero point then stays fixed).

    Made by `lowbit.torch.prepare_qat`; `convert` replaces it by a lowbit QuantizedLinear.

    Parameters
    ----------
    linear
        The float32 nn.Linear whose weight and bias Parameters it shares.
    config
        The layer's lowbit config.
    plan
        `config.plan(out_features, in_features)` (its group size, for 4-bit configs).
    learnable_scales
        Whether the scales are Parameters (see above).

    Raises
    ------
    TypeError
        learnable_scales is not a bool; the weight is not float32 (learnable_scales).
    ValueError
        learnable_scales with asymmetric weights; NaN/Inf in the weight (learnable_scales).
    """

    input_zero_point: torch.Tensor
    input_initialized: torch.Tensor

    def __init__(self, linear: nn.Linear, config: QuantConfig, plan: LayerPlan,
                 learnable_scales: bool = False) -> None:
        super().__init__()
        learnable_scales = check_bool(learnable_scales, "learnable_scales")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.config = config
        self.plan = plan
        self.learnable_scales = learnable_scales
        # 4-bit configs plan a group; 8-bit weights are one group per output channel
        self.group = plan.group_size if plan.group_size is not None else self.in_features
        self.weight_dtype, self.symmetric = config.weight_format()
        self.weight_scale: Optional[nn.Parameter] = None
        if learnable_scales:
            if not self.symmetric:
                raise ValueError("learnable_scales needs symmetric weights (the zero point is not "
                                 "learned)")
            scale, _ = self._rule_qparams()
            self.weight_scale = nn.Parameter(scale.clone())
        self.observer = config.observer.clone() if config.calibrated else None
        self.input_scale: Optional[nn.Parameter] = None
        if self.observer is not None and learnable_scales:
            self.input_scale = nn.Parameter(torch.ones(()))
            self.register_buffer("input_zero_point", torch.zeros(()))
            self.register_buffer("input_initialized", torch.zeros((), dtype=torch.bool))

    # -- weights ---------------------------------------------------------------------------
    def rule_weight(self) -> QTensor:
        """The current weight quantized by PTQ's rule (QuantConfig.quantize_weight).

        Returns
        -------
        QTensor
            As `config.quantize_weight(weight, plan)` gives it.

        Raises
        ------
        TypeError
            The weight is not float32.
        ValueError
            NaN/Inf in the weight (after a diverged training step, say).
        """
        w = self.weight.detach().contiguous().numpy()
        return self.config.quantize_weight(w, self.plan)

    def _rule_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """rule_weight()'s scale and zero point as float32 (N, G) tensors (8-bit: G = 1, a
        per-tensor scale repeated per row), constants for the gradient."""
        qt = self.rule_weight()
        n = self.out_features

        def per_group(a: np.ndarray) -> torch.Tensor:
            a = np.asarray(a, np.float32)
            if a.ndim < 2:
                a = np.broadcast_to(a.reshape(-1, 1), (n, 1))
            return torch.from_numpy(np.array(a, np.float32))   # a writable copy
        return per_group(qt.scale), per_group(qt.zero_point)

    def weight_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights' scale and zero point now: the learned scale (kept above TINY_SCALE)
        with the symmetric zero point, else PTQ's rule on the current weight.

        Returns
        -------
        tuple of (torch.Tensor, torch.Tensor)
            float32 scale and zero point of shape (out_features, groups) (8-bit: groups = 1);
            the learned scale carries its gradient, the rule's are constants.

        Raises
        ------
        TypeError, ValueError
            As `rule_weight` (without learned scales).
        """
        if self.weight_scale is not None:
            scale = self.weight_scale.clamp_min(TINY_SCALE)
            zero = torch.full_like(scale, float(fq.SYMMETRIC_ZERO[self.weight_dtype])).detach()
            return scale, zero
        return self._rule_qparams()

    def weight_range(self) -> tuple[int, int]:
        """The integers weights round to. PTQ's rule saturates to the type's full range, as
        quantize_linear does (max|w| scales never reach its ends; a weight observer's clipped
        range does). A learned scale may shrink below max|w| / qmax, so symmetric learnable
        weights keep the restricted range [-qmax, qmax] around the zero point that
        quantized_weight() converts with.

        Returns
        -------
        tuple of (int, int)
            (qmin, qmax).

        Raises
        ------
        None
            It reads the layer's settings.
        """
        return fq.clamp_range(self.weight_dtype, self.weight_scale is not None)

    def fake_weight(self) -> torch.Tensor:
        """The weight rounded to the integers conversion will store, and back to float
        (straight-through gradient; LSQ gradient for learned scales).

        Returns
        -------
        torch.Tensor
            float32 (out_features, in_features).

        Raises
        ------
        TypeError, ValueError
            As `weight_qparams`.
        """
        scale, zero = self.weight_qparams()
        qmin, qmax = self.weight_range()
        grad_scale = 1.0 / math.sqrt(self.group * fq.SYMMETRIC_MAX[self.weight_dtype])
        return fq.fake_quantize_weight(self.weight, scale, zero, self.group, qmin, qmax,
                                       grad_scale)

    def quantized_weight(self) -> QTensor:
        """The integer weight the fake-quantized one rounds to, as a lowbit QTensor: PTQ's own
        (rule_weight()) unless the scales are learned.

        Returns
        -------
        QTensor
            8-bit: per channel along axis 0; 4-bit: grouped along axis 1.

        Raises
        ------
        TypeError, ValueError
            As `rule_weight` (without learned scales).
        """
        if self.weight_scale is None:
            return self.rule_weight()
        with torch.no_grad():
            scale, zero = self.weight_qparams()
            q = fq.quantize_weight_values(self.weight, scale, zero, self.group,
                                          *self.weight_range())
        storage = QTYPES[self.weight_dtype][0]
        data = q.numpy().astype(storage)
        s = np.ascontiguousarray(scale.detach().numpy(), np.float32)
        z = zero.numpy().astype(storage)
        if self.plan.group_size is None:   # per output channel
            return QTensor(data, s.reshape(-1), z.reshape(-1), self.weight_dtype, 0, None)
        return QTensor(data, s, z, self.weight_dtype, 1, self.group)

    # -- activations -----------------------------------------------------------------------
    def input_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The activations' scale and zero point of an Int8StaticConfig layer: the learned
        scale (with the zero point fixed at initialization), else the observer's.

        Returns
        -------
        tuple of (torch.Tensor, torch.Tensor)
            0-d scale and zero point (float32 values).

        Raises
        ------
        ValueError
            Nothing observed yet: no training batch has run (module.train()).
        """
        assert self.observer is not None
        if self.input_scale is not None:
            if not bool(self.input_initialized):
                raise ValueError("the learnable activation scale is not initialized: run a "
                                 "training batch first")
            return self.input_scale.clamp_min(TINY_SCALE), self.input_zero_point
        if not self.observer.observed:
            raise ValueError("the activation observer has seen no data: run training batches "
                             "(module.train()) first")
        scale, zero = self.observer.calculate_qparams()
        return torch.tensor(float(scale)), torch.tensor(float(zero))

    def fake_input(self, x: torch.Tensor) -> torch.Tensor:
        """x as the converted layer's kernel quantizes it (the config's `activation`: per row
        for dynamic configs, per tensor with the observed or learned parameters for a
        calibrated config, unchanged for weight-only ones), and back to float. In training
        mode a calibrated layer's observer sees x first.

        Parameters
        ----------
        x
            A float32 tensor of shape (..., in_features).

        Returns
        -------
        torch.Tensor
            float32, x's shape.

        Raises
        ------
        ValueError
            A calibrated layer: no data observed yet (evaluated before any training batch), or
            NaN/Inf in x while observing.
        """
        simulate = FAKE_ACTIVATIONS.get(self.config.activation)
        if simulate is not None:
            return simulate(x)
        assert self.observer is not None   # "static": a calibrated per-tensor scale
        if self.training and (self.input_scale is None or not bool(self.input_initialized)):
            self.observer.observe(x.detach().contiguous().numpy())
            if self.input_scale is not None:
                s0, z0 = self.observer.calculate_qparams()
                with torch.no_grad():
                    self.input_scale.fill_(float(s0))
                    self.input_zero_point.fill_(float(z0))
                    self.input_initialized.fill_(True)
        scale, zero = self.input_qparams()
        qmin, qmax = fq.clamp_range(self.observer.dtype, False)
        grad_scale = 1.0 / math.sqrt(max(x.numel(), 1) * qmax)
        return fq.FakeQuantize.apply(x, scale, zero, qmin, qmax, grad_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F.linear(fake_input(x), fake_weight(), bias): the converted layer's rounding, in
        float and with gradients.

        Parameters
        ----------
        x
            A float32 tensor of shape (..., in_features).

        Returns
        -------
        torch.Tensor
            float32 (..., out_features).

        Raises
        ------
        TypeError
            x is not float32 (the message names the layer).
        ValueError
            As `fake_input` and `weight_qparams`.
        """
        if x.dtype != torch.float32:
            name = getattr(self, "lowbit_name", "")
            raise TypeError(f"FakeQuantLinear{f' {name!r}' if name else ''} takes float32 "
                            f"inputs, got {x.dtype}")
        return F.linear(self.fake_input(x), self.fake_weight(), self.bias)

    # -- conversion ------------------------------------------------------------------------
    def to_quantized(self, name: str) -> QuantizedLinear:
        """The lowbit layer that computes what this layer simulates, assembled as PTQ assembles
        its layers (lowbit.nn.QuantizedLinear.from_quantized).

        Parameters
        ----------
        name
            The layer's qualified name, for errors.

        Returns
        -------
        QuantizedLinear
            A lowbit.torch.QuantizedLinear of the config's scheme.

        Raises
        ------
        ValueError
            A static layer that observed no data (the message names the layer); NaN/Inf in
            the weight or bias, or a weight not on the CPU.
        TypeError
            The weight is not float32.
        """
        cfg = self.config
        _, bias = float_weight(self, name)
        input_qparams = None
        if cfg.calibrated:
            try:
                scale, zero = self.input_qparams()
            except ValueError as e:
                raise ValueError(f"layer {name!r}: {e}") from None
            zdtype = np.dtype(QTYPES[cfg.observer.dtype][0])
            input_qparams = (np.float32(scale.item()), np.asarray(int(zero.item()), zdtype))
        layer = NumpyQuantizedLinear.from_quantized(self.quantized_weight(), bias, cfg,
                                                   input_qparams=input_qparams)
        return QuantizedLinear(layer, cfg.describe(), dtype=self.weight.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"config={self.config.describe()}, learnable_scales={self.learnable_scales}")


def prepare_qat(model: nn.Module, config: ConfigSpec, filter_fn: Optional[FilterFn] = None, *,
                learnable_scales: bool = False, progress: Optional[bool] = None
                ) -> ConversionSummary:
    """Swaps the model's nn.Linear layers for FakeQuantLinear (in place). Train as usual (the
    layers keep the original weight/bias Parameters, so an existing optimizer still holds them;
    with learnable_scales=True add the new scale Parameters to it), then `convert(model)`.

    Parameters
    ----------
    model
        The nn.Module to prepare, in place.
    config
        As in quantize_: one config or a dict {fnmatch pattern: config or None}.
    filter_fn
        filter_fn(module, name) -> bool narrows the layers considered.
    learnable_scales
        Train the weight scales (symmetric weights only) and a static config's activation
        scale with LSQ gradients.
    progress
        As in quantize_.

    Returns
    -------
    ConversionSummary
        The "fake_quant" layers, the skipped ones with the reason, and in `kept` the other
        weight-holding modules that stay float.

    Raises
    ------
    TypeError
        model is not an nn.Module; a config is not a lowbit config; learnable_scales is not a
        bool; progress is not a bool or None.
    ValueError
        The model has no nn.Linear layers; learnable_scales with asymmetric weights.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare_qat takes an nn.Module, got {type(model).__name__}")
    learnable_scales = check_bool(learnable_scales, "learnable_scales")
    linears = find(model, (nn.Linear,), filter_fn)
    convs = find(model, CONVS, filter_fn)
    if not linears and not convs:
        raise ValueError(f"{type(model).__name__} has no nn.Linear, nn.Conv1d or nn.Conv2d "
                         "layers to prepare for QAT")
    patterns = conv_patterns(model) if convs else {}
    fused: list[ConvPattern] = []
    parents = dict(named_modules_all(model))
    summary = ConversionSummary("prepare_qat")

    def build(name: str, module: nn.Module) -> Optional[nn.Module]:
        if isinstance(module, CONVS):
            cfg, why = config_for(name, config)
            plan, pattern = prepared_conv_plan(model, name, module, cfg, why, summary,
                                               patterns.get(name))
            if plan is None:
                return None
            if module.weight.dtype != torch.float32:
                raise TypeError(f"layer {name!r}: QAT trains float32 weights, got "
                                f"{module.weight.dtype}")
            norm = model.get_submodule(pattern.norm) if pattern.norm else None
            size = module.weight.nbytes + (0 if module.bias is None else module.bias.nbytes)
            note = "; ".join(filter(None, [pattern.note(model), "learnable_scales apply to "
                                           "linears only" if learnable_scales else ""]))
            summary.replaced.append(Replaced(name, "fake_quant", tuple(module.weight.shape),
                                             cfg.describe_conv(), size, size, note))
            fused.append(pattern)
            return FakeQuantConv(module, cfg, plan, name, norm, pattern.activation)
        assert isinstance(module, nn.Linear)
        reason = linear_skip_reason(name, module, parents)
        cfg, why = (None, reason) if reason else config_for(name, config)
        if cfg is None:
            summary.skipped.append(Skipped(name, why or "no config"))
            return None
        cfg = check_config(cfg)
        float_weight(module, name)
        try:
            plan = cfg.plan(module.out_features, module.in_features)
        except UnsupportedLayer as e:
            summary.skipped.append(Skipped(name, str(e)))
            return None
        new = FakeQuantLinear(module, cfg, plan, learnable_scales)
        new.lowbit_name = name   # for errors
        size = module.weight.nbytes + (0 if module.bias is None else module.bias.nbytes)
        summary.replaced.append(Replaced(name, "fake_quant", (module.out_features,
                                                              module.in_features),
                                         cfg.describe(), size, size, plan.note))
        return new

    swap_modules(model, linears + convs, build, progress, "lowbit prepare_qat")
    for pattern in fused:   # trained inside the FakeQuantConv now
        remove_fused(model, pattern)
    summary.kept = kept_float(model, handled_ids(model, linears + convs),
                              "an nn.Embedding: prepare_qat converts nn.Linear layers only")
    return summary
