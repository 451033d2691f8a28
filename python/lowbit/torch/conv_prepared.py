"""The convolution layers of static calibration and QAT, until `convert`: ObservedConv
(`prepare`: computes in float and records its input's range) and FakeQuantConv (`prepare_qat`:
trains with the rounding the converted layer applies, a BatchNorm after the conv folded as
torch.ao's ConvBn modules fold it). Both keep the conv's weight and bias Parameters and, where
the model had them, the BatchNorm (as `norm`) and the fused activation."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..quant.config import QuantConfig
from ..quant.plan import LayerPlan
from ..qtensor import QTensor
from . import fake_quant as fq
from ._kinds import prepared_layer
from ._ops import like_channels_last
from .conv import CONV_MODULES, QuantizedConv2d, conv_geometry
from .fuse import fold_norm, torch_activation
from .layers import float_weight


class _PreparedConv(nn.Module):
    """What both prepared conv layers share: the conv's Parameters and geometry, the folded
    BatchNorm and the activation."""

    def __init__(self, conv: nn.Module, config: QuantConfig, name: str,
                 norm: Optional[nn.Module], activation: Optional[str]) -> None:
        super().__init__()
        self.lowbit_name = name
        self.weight = conv.weight
        self.bias = conv.bias
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = tuple(conv.kernel_size)
        self.geometry = conv_geometry(conv)
        self.spatial = 1 if isinstance(conv, nn.Conv1d) else 2
        self._conv_type = type(conv)
        self.config = config
        self.norm = norm
        self.activation = activation
        self._conv_fn = F.conv1d if self.spatial == 1 else F.conv2d

    @property
    def out_features(self) -> int:   # what convert's summary reads
        return self.out_channels

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
        g = self.geometry
        return self._conv_fn(x, w, b, g["stride"], g["padding"], g["dilation"], g["groups"])

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.device.type != "cpu":
            got = f"{x.dtype} on {x.device}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"{type(self).__name__} {self.lowbit_name!r} takes CPU float32 "
                            f"inputs, got {got}")

    def folded_float(self, name: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """The float weight and bias the converted layer quantizes: the conv's, with the
        BatchNorm folded in (running statistics)."""
        w, b = float_weight(self, name)
        if self.norm is not None:
            w, b = fold_norm(w, b, self.norm)
        return w, b

    def _build(self, qt: QTensor, bias: Optional[np.ndarray], name: str,
               input_qparams: Optional[tuple[Any, Any]]) -> QuantizedConv2d:
        cls = CONV_MODULES[self.spatial]
        layer = cls.numpy_type.from_quantized(qt, bias, self.config, input_qparams=input_qparams,
                                              activation=self.activation, **self.geometry)
        return cls(layer, self.config.describe_conv(), name, dtype=self.weight.dtype,
                   channels_last=like_channels_last(self.weight))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"{self.geometry}, config={self.config.describe_conv()}, "
                f"activation={self.activation}")


@prepared_layer
class ObservedConv(_PreparedConv):
    """The conv's float computation (then its folded BatchNorm and activation) plus an
    activation observer fed with every input. Made by `lowbit.torch.prepare`; `convert`
    replaces it by a static lowbit QuantizedConv2d / Conv1d.

    Parameters
    ----------
    conv
        The nn.Conv1d / nn.Conv2d whose Parameters it takes over.
    config
        The layer's Int8StaticConfig (its observer is cloned).
    name
        The qualified name, for errors.
    norm, activation
        The BatchNorm folded at convert (computed here as the model did) and the activation
        fused into the kernel.

    Raises
    ------
    None
        prepare has checked the layer and the config.
    """

    def __init__(self, conv: nn.Module, config: QuantConfig, name: str = "",
                 norm: Optional[nn.Module] = None, activation: Optional[str] = None) -> None:
        super().__init__(conv, config, name, norm, activation)
        self.observer = config.observer.clone()  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The float conv (BatchNorm, activation) after the observer has seen x.

        Parameters
        ----------
        x
            A CPU float32 tensor.

        Returns
        -------
        torch.Tensor
            What the float modules computed.

        Raises
        ------
        TypeError
            x is not a CPU float32 tensor.
        ValueError
            NaN/Inf in x (the message names the layer).
        """
        self._check(x)
        try:
            self.observer.observe(x.detach().contiguous().numpy())
        except (TypeError, ValueError) as e:
            raise type(e)(f"ObservedConv {self.lowbit_name!r}: {e}") from None
        y = self._conv(x, self.weight, self.bias)
        if self.norm is not None:
            y = self.norm(y)
        return torch_activation(self.activation, y)

    def to_quantized(self, name: str) -> QuantizedConv2d:
        """The static lowbit conv layer: weight (BatchNorm folded) quantized by the config,
        the activation scale and zero point frozen from the observer.

        Parameters
        ----------
        name
            The layer's qualified name.

        Returns
        -------
        QuantizedConv2d (or QuantizedConv1d)

        Raises
        ------
        ValueError
            The observer saw no data; NaN/Inf weights.
        """
        if not self.observer.observed:
            raise ValueError(f"layer {name!r} observed no data: run representative inputs "
                             "through the prepared model before convert()")
        w, b = self.folded_float(name)
        m = w.shape[0]
        plan = self.config.conv_plan(m, int(np.prod(w.shape[1:])))
        flat = self.config.quantize_conv_weight(np.ascontiguousarray(w.reshape(m, -1)), plan)
        qt = QTensor(flat.data.reshape(w.shape), flat.scale, flat.zero_point, flat.dtype,
                     flat.axis, None)
        return self._build(qt, b, name, self.observer.calculate_qparams())


@prepared_layer
class FakeQuantConv(_PreparedConv):
    """nn.Conv with fake-quantized weights (per output channel, PTQ's rule:
    QuantConfig.quantize_conv_weight) and activations (uint8 per image for dynamic configs,
    per tensor with the observed parameters for Int8StaticConfig), straight-through gradients.
    With a BatchNorm after the conv (`norm`), the weight is scaled by gamma / sqrt(running_var
    + eps) before it is fake-quantized, the conv's output divided back and the BatchNorm
    applied as usual (batch statistics in training, updating the running ones): torch.ao's
    ConvBn scheme, so that in eval mode the layer computes exactly the folded conv that
    `convert` quantizes. Made by `lowbit.torch.prepare_qat`.

    Parameters
    ----------
    conv
        The float32 nn.Conv1d / nn.Conv2d whose Parameters it shares.
    config
        The layer's lowbit config (with a convolution kernel).
    plan
        config.conv_plan's answer.
    name
        The qualified name, for errors.
    norm, activation
        The BatchNorm folded in (kept as a submodule, trained as usual) and the activation.

    Raises
    ------
    None
        prepare_qat has checked the layer and the config.
    """

    def __init__(self, conv: nn.Module, config: QuantConfig, plan: LayerPlan, name: str = "",
                 norm: Optional[nn.Module] = None, activation: Optional[str] = None) -> None:
        super().__init__(conv, config, name, norm, activation)
        self.plan = plan
        self.weight_dtype, self.symmetric = config.weight_format()
        self.observer = config.observer.clone() if config.calibrated else None  # type: ignore[attr-defined]

    def _factor(self) -> Optional[torch.Tensor]:
        """gamma / sqrt(running_var + eps) of the folded BatchNorm (None without one)."""
        if self.norm is None:
            return None
        norm = self.norm
        std = torch.sqrt(norm.running_var + norm.eps)
        gamma = norm.weight if norm.weight is not None else torch.ones_like(std)
        return gamma / std

    def _scaled_weight(self) -> torch.Tensor:
        factor = self._factor()
        if factor is None:
            return self.weight
        return self.weight * factor.reshape((-1,) + (1,) * (self.weight.dim() - 1))

    def _rule(self, w: torch.Tensor) -> QTensor:
        flat = w.detach().reshape(w.shape[0], -1).contiguous().numpy()
        return self.config.quantize_conv_weight(flat, self.plan)

    def fake_weight(self, w: torch.Tensor) -> torch.Tensor:
        """w rounded per output channel to the integers conversion stores, and back."""
        qt = self._rule(w)
        shape = (-1,) + (1,) * (w.dim() - 1)
        m = w.shape[0]
        scale = torch.from_numpy(np.broadcast_to(np.asarray(qt.scale, np.float32).reshape(-1),
                                                 (m,)).copy()).reshape(shape)
        zero = torch.from_numpy(np.broadcast_to(np.asarray(qt.zero_point, np.float32)
                                                .reshape(-1), (m,)).copy()).reshape(shape)
        qmin, qmax = fq.clamp_range(self.weight_dtype, False)
        grad = 1.0 / math.sqrt(max(w[0].numel(), 1) * fq.SYMMETRIC_MAX[self.weight_dtype])
        return fq.FakeQuantize.apply(w, scale, zero, qmin, qmax, grad)

    def fake_input(self, x: torch.Tensor) -> torch.Tensor:
        """x as the converted layer's kernel quantizes it (per image, or per tensor with the
        observed parameters; a static layer's observer sees x first in training mode)."""
        if self.observer is None:
            return fq.fake_quantize_images_dynamic(x)
        if self.training:
            self.observer.observe(x.detach().contiguous().numpy())
        if not self.observer.observed:
            raise ValueError(f"FakeQuantConv {self.lowbit_name!r}: the activation observer has "
                             "seen no data: run training batches (module.train()) first")
        scale, zero = self.observer.calculate_qparams()
        qmin, qmax = fq.clamp_range(self.observer.dtype, False)
        return fq.FakeQuantize.apply(x, torch.tensor(float(scale)), torch.tensor(float(zero)),
                                     qmin, qmax, 1.0 / math.sqrt(max(x.numel(), 1) * qmax))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fake-quantized conv (BatchNorm folded as described), then the activation.

        Parameters
        ----------
        x
            A CPU float32 tensor.

        Returns
        -------
        torch.Tensor
            float32.

        Raises
        ------
        TypeError
            x is not a CPU float32 tensor.
        ValueError
            A static layer evaluated before any training batch; NaN/Inf.
        """
        self._check(x)
        xq = self.fake_input(x)
        factor = self._factor()
        if factor is None:
            y = self._conv(xq, self.fake_weight(self.weight), self.bias)
        else:
            y = self._conv(xq, self.fake_weight(self._scaled_weight()), None)
            y = y / factor.reshape((1, -1) + (1,) * self.spatial)
            if self.bias is not None:
                y = y + self.bias.reshape((1, -1) + (1,) * self.spatial)
            y = self.norm(y)
        return torch_activation(self.activation, y)

    def to_quantized(self, name: str) -> QuantizedConv2d:
        """The lowbit conv layer computing what this layer simulates in eval mode.

        Parameters
        ----------
        name
            The layer's qualified name.

        Returns
        -------
        QuantizedConv2d (or QuantizedConv1d)

        Raises
        ------
        ValueError
            A static layer that observed no data; NaN/Inf weights.
        """
        with torch.no_grad():
            w = self._scaled_weight().detach().float().contiguous()
            factor = self._factor()
            bias = None if self.bias is None else self.bias.detach().float()
            if factor is not None:
                norm = self.norm
                beta = norm.bias.detach() if norm.bias is not None else torch.zeros_like(factor)
                b0 = torch.zeros_like(factor) if bias is None else bias
                bias = (b0 - norm.running_mean) * factor + beta
        if not torch.isfinite(w).all() or (bias is not None and not torch.isfinite(bias).all()):
            raise ValueError(f"layer {name!r}: weight or bias holds NaN or Inf")
        qt = self._rule(w)
        qt = QTensor(qt.data.reshape(w.shape), qt.scale, qt.zero_point, qt.dtype, qt.axis, None)
        input_qparams = None
        if self.observer is not None:
            if not self.observer.observed:
                raise ValueError(f"layer {name!r}: the activation observer has seen no data")
            scale, zero = self.observer.calculate_qparams()
            input_qparams = (scale, zero)
        b = None if bias is None else bias.contiguous().numpy().astype(np.float32)
        return self._build(qt, b, name, input_qparams)


__all__ = ["ObservedConv", "FakeQuantConv"]
